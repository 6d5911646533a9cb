"""TECO on Minecraft-style 128x128 video (VQ-GAN codes 16x16), the paper's settings.

Presets: "" (paper size: ~271 M parameters excluding the VQ-GAN), "tiny" (2-core CPU).
As in the paper, no action dropout.
"""

from teco_jax import config_base

teco_dmlab = config_base.load_sibling(__file__, "teco_dmlab")


def get_config(arg: str = ""):
    preset = config_base.check_preset(arg, ("", "tiny"))
    c = teco_dmlab.teco_config()
    m = c.model
    m.action_dropout = 0.0
    m.encoder.blocks = 4
    m.decoder.blocks = 6
    m.embedding_dim = 128
    m.transformer.num_layers = 12
    m.maskgit.update(dict(width=768, mlp_dim=3072, num_heads=12, num_layers=6))
    c.data.batch_size = 8
    if preset == "tiny":
        c = teco_dmlab.tiny(c)
        c.model.action_dropout = 0.0
    c.lock()
    return c
