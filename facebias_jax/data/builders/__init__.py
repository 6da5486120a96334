"""TFDS builders, one sub-package per dataset; importing this registers them all.

Add one import line per builder sub-package below.
"""

from facebias_jax.data.builders import synthetic_faces  # noqa: F401
from facebias_jax.data.builders import celeba  # noqa: F401
from facebias_jax.data.builders import ppb  # noqa: F401
from facebias_jax.data.builders import utkface  # noqa: F401
from facebias_jax.data.builders import fairface  # noqa: F401
from facebias_jax.data.builders import image_folder  # noqa: F401
from facebias_jax.data.builders import face_mixture  # noqa: F401
