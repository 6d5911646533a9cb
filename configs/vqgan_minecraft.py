"""VQ-GAN tokenizer for Minecraft-style 128x128 frames -> 16x16 codes (8x down-sampling).

Presets: "" (full size, for accelerators), "tiny" (CPU-sized; same 8x down-sampling).
"""

import importlib.util
import pathlib

from teco_jax import config_base

_spec = importlib.util.spec_from_file_location("vqgan_dmlab", pathlib.Path(__file__).with_name("vqgan_dmlab.py"))
vqgan_dmlab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vqgan_dmlab)


def get_config(arg: str = ""):
    preset = config_base.check_preset(arg, ("", "tiny"))
    c = vqgan_dmlab.vqgan_config(resolution=128, channel_mult=(1, 1, 2, 2))
    c.data.batch_size = 32
    if preset == "tiny":
        c = vqgan_dmlab.tiny(c)
    c.lock()
    return c
