"""Data: synthetic biased-faces benchmark, TFDS builders, sources, grain pipelines, groups.

* ``synthetic`` -- the built-in benchmark with known, adjustable bias (arrays).
* ``groups`` / ``sampling`` -- group names from attributes; epoch index plans.
* ``sources`` -- prepared TFDS splits as random-access sources (it registers the
  project's builders, ``data.builders``, so ``tfds.builder("facebias_...")`` finds them).
* ``pipeline`` -- batches of an epoch through grain.
* ``analysis`` -- group counts, imbalance tables and sample grids of a split.

Importing this package imports none of them, so ``from facebias_jax.data import
sampling`` does not load TensorFlow Datasets or OpenCV.
"""
