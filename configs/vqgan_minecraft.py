"""VQ-GAN tokenizer for Minecraft-style 128x128 frames -> 16x16 codes (8x down-sampling).

Presets: "" (full size, for accelerators), "tiny" (CPU-sized; same 8x down-sampling).
"""

from teco_jax import config_base

vqgan_dmlab = config_base.load_sibling(__file__, "vqgan_dmlab")


def get_config(arg: str = ""):
    preset = config_base.check_preset(arg, ("", "tiny"))
    c = vqgan_dmlab.vqgan_config(resolution=128, channel_mult=(1, 1, 2, 2))
    c.data.batch_size = 32
    if preset == "tiny":
        c = vqgan_dmlab.tiny(c)
    c.lock()
    return c
