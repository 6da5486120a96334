"""The ``facebias_synthetic_faces`` TFDS builder (registered on import)."""

from facebias_jax.data.builders.synthetic_faces.synthetic_faces import (
    DEFAULT_SIZES, FacebiasSyntheticFaces, SyntheticFacesConfig)

__all__ = ["DEFAULT_SIZES", "FacebiasSyntheticFaces", "SyntheticFacesConfig"]
