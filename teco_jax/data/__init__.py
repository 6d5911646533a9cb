"""Data: episode readers, TFDS array_record datasets and the grain input pipeline."""
