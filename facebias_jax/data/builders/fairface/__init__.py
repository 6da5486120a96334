"""The ``facebias_fairface`` TFDS builder (registered on import)."""

from facebias_jax.data.builders.fairface.fairface import (
    AGE_BINS, RACES, FacebiasFairface, read_labels)

__all__ = ["AGE_BINS", "RACES", "FacebiasFairface", "read_labels"]
