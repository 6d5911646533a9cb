"""Models: VQ-GAN, TECO, MaskGIT prior."""
