"""The ``facebias_utkface`` TFDS builder (registered on import)."""

from facebias_jax.data.builders.utkface.utkface import (
    RACES, FacebiasUtkface, parse_filename, split_of)

__all__ = ["RACES", "FacebiasUtkface", "parse_filename", "split_of"]
