"""Data: synthetic biased-faces benchmark, TFDS builders, grain pipelines, groups, samplers."""
