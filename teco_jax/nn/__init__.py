"""Shared neural-network layers (attention, transformer blocks, ResNet blocks, codebooks)."""
