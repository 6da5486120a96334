"""The ``facebias_celeba`` TFDS builder (registered on import)."""

from facebias_jax.data.builders.celeba.celeba import (
    ATTRIBUTES, CelebaConfig, FacebiasCeleba, convert_stock_example, load_annotations)

__all__ = ["ATTRIBUTES", "CelebaConfig", "FacebiasCeleba", "convert_stock_example",
           "load_annotations"]
