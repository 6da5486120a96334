"""The ``facebias_image_folder`` TFDS builder (registered on import)."""

from facebias_jax.data.builders.image_folder.image_folder import (
    FacebiasImageFolder, assign_splits)

__all__ = ["FacebiasImageFolder", "assign_splits"]
