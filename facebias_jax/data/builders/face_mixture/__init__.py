"""The ``facebias_face_mixture`` TFDS builder (registered on import)."""

from facebias_jax.data.builders.face_mixture.face_mixture import (
    FACE_SOURCES, FacebiasFaceMixture, MixtureConfig)

__all__ = ["FACE_SOURCES", "FacebiasFaceMixture", "MixtureConfig"]
