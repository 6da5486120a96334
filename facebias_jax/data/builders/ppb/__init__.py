"""The ``facebias_ppb`` TFDS builder (registered on import)."""

from facebias_jax.data.builders.ppb.ppb import (
    FacebiasPpb, PpbConfig, process_image, read_metadata)

__all__ = ["FacebiasPpb", "PpbConfig", "process_image", "read_metadata"]
