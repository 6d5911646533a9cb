"""Trainable tasks: one per model; the training loop only knows their small interface."""
