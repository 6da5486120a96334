"""The demo's face detector: ``facebias_jax.faces``, under the name of the public contract.

DESIGN.md's public contract names ``facebias_jax.demo.face_detect.detect_faces``; the
detector itself lives in the leaf module ``facebias_jax.faces`` (the dataset builders
use it too).
"""

from facebias_jax.faces import (DEFAULT_CASCADE, DEFAULT_MIN_NEIGHBORS, DEFAULT_MIN_SIZE,  # noqa: F401
                                DEFAULT_SCALE_FACTOR, cascade_path, detect_faces,
                                detect_largest_face, load_cascade, sort_boxes, to_gray)
