"""The long-range consistency benchmark suite."""
