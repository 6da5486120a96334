"""Data: synthetic biased-faces benchmark, TFDS builders, grain pipelines, groups, samplers.

Importing ``facebias_jax.data`` registers every TFDS builder of the project
(``facebias_jax.data.builders``), so ``tfds.builder("facebias_synthetic_faces/...")``
and :func:`facebias_jax.data.pipeline.load_source` find them by name.
"""

from facebias_jax.data import builders  # noqa: F401  (registers the TFDS builders)
