"""The demo's face detector: ``facebias_jax.faces``, under the name of the public contract.

DESIGN.md's public contract names ``facebias_jax.demo.face_detect.detect_faces``; the
detector itself lives in the leaf module ``facebias_jax.faces`` (the dataset builders
use it too).
"""

from facebias_jax.faces import (DEFAULT_CASCADE, DEFAULT_DETECTOR, DEFAULT_MIN_NEIGHBORS,  # noqa: F401
                                DEFAULT_MIN_SIZE, DEFAULT_SCALE_FACTOR, DETECTORS,
                                cascade_path, check_detector, cnn_weights_path, detect_faces,
                                detect_largest_face, load_cascade, load_dlib_detector,
                                sort_boxes, to_gray)
