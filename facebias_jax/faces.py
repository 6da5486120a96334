"""Face detection, shared by the dataset builders (PPB crops) and the live demo.

The project's one face detector is OpenCV's Viola-Jones Haar cascade bundled in
opencv-python 4.x: fast on a CPU, no weights download (opencv-python 4.x ships the XML
files in ``cv2.data.haarcascades``; OpenCV 5 wheels no longer do, hence the ``<5`` pin
in DESIGN.md), good enough for frontal faces. Each cascade file is parsed once per
process and reused for every frame. A leaf module: ``data``, ``eval`` and ``demo`` use
it without importing each other (``facebias_jax.demo.face_detect`` re-exports it).

Usage::

  boxes = detect_faces(frame_bgr)            # [(x, y, w, h), ...], largest first
  boxes = detect_faces(frame_bgr, min_neighbors=3, min_size=(24, 24))
  box = detect_largest_face(image_rgb)       # (x0, y0, x1, y1) or None
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import cv2
import numpy as np

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
# OpenCV's documented defaults are 1.1 / 3; 5 neighbours removes most false positives
# on cluttered webcam frames at little cost in recall on frontal faces.
DEFAULT_SCALE_FACTOR = 1.1
DEFAULT_MIN_NEIGHBORS = 5
DEFAULT_MIN_SIZE = (30, 30)

Box = tuple[int, int, int, int]


def cascade_path(name: str = DEFAULT_CASCADE) -> str:
  """Absolute path of a cascade: a bundled file name or an existing path.

  Args:
    name: a file in ``cv2.data.haarcascades`` (e.g. ``haarcascade_frontalface_alt2.xml``)
      or a path to a cascade XML file.

  Returns:
    The path.

  Raises:
    FileNotFoundError: neither a bundled cascade nor an existing file.
  """
  if os.path.isfile(name):
    return name
  bundled_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
  if bundled_dir is None:
    raise FileNotFoundError(
        f"cv2.data.haarcascades is missing from OpenCV {cv2.__version__}: install "
        "opencv-python>=4.10,<5 (OpenCV 5 wheels no longer ship the Haar cascades) or pass "
        "a path to a cascade XML file.")
  path = os.path.join(bundled_dir, name)
  if not os.path.isfile(path):
    available = sorted(f for f in os.listdir(bundled_dir) if f.endswith(".xml"))
    raise FileNotFoundError(f"No Haar cascade {name!r} (looked in {bundled_dir}); bundled "
                            f"cascades: {', '.join(available)}")
  return path


@functools.lru_cache(maxsize=None)
def load_cascade(name: str = DEFAULT_CASCADE) -> cv2.CascadeClassifier:
  """The cascade classifier for ``name``, parsed once per process (cached).

  Raises:
    FileNotFoundError: see :func:`cascade_path`.
    ValueError: the file is not a cascade OpenCV can read.
  """
  path = cascade_path(name)
  cascade = cv2.CascadeClassifier(path)
  if cascade.empty():
    raise ValueError(f"OpenCV could not load a Haar cascade from {path}")
  return cascade


def to_gray(image: np.ndarray, *, equalize: bool = True) -> np.ndarray:
  """Grey uint8 image for the cascade (histogram-equalised: robust to exposure).

  Args:
    image: BGR uint8 ``[H, W, 3]`` or grey ``[H, W]``.
    equalize: apply ``cv2.equalizeHist``.

  Returns:
    ``[H, W]`` uint8.
  """
  arr = np.asarray(image)
  if arr.dtype != np.uint8:
    raise ValueError(f"detect_faces expects uint8 pixels, got dtype {arr.dtype}")
  if arr.ndim == 3 and arr.shape[-1] == 3:
    gray = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
  elif arr.ndim == 2:
    gray = arr
  else:
    raise ValueError(f"detect_faces expects a BGR image [H, W, 3] or grey [H, W], got shape "
                     f"{arr.shape}")
  return cv2.equalizeHist(gray) if equalize else gray


def sort_boxes(boxes: Sequence[Sequence[int]]) -> list[Box]:
  """Boxes as int tuples, largest area first (ties: top-left first, for determinism)."""
  out = [tuple(int(v) for v in box) for box in boxes]
  return sorted(out, key=lambda b: (-b[2] * b[3], b[1], b[0]))


def detect_faces(image_bgr_uint8: np.ndarray, *, scale_factor: float = DEFAULT_SCALE_FACTOR,
                 min_neighbors: int = DEFAULT_MIN_NEIGHBORS,
                 min_size: tuple[int, int] = DEFAULT_MIN_SIZE,
                 max_size: tuple[int, int] | None = None, max_faces: int | None = None,
                 max_side: int | None = None, equalize: bool = True,
                 cascade: str = DEFAULT_CASCADE) -> list[Box]:
  """Frontal faces in an image, as ``(x, y, w, h)`` boxes, largest first.

  Args:
    image_bgr_uint8: BGR uint8 ``[H, W, 3]`` (OpenCV order, e.g. a video frame) or grey.
    scale_factor: image pyramid step (> 1); smaller finds more sizes, slower.
    min_neighbors: overlapping detections needed to keep a box; higher = fewer false
      positives.
    min_size: smallest face ``(w, h)`` in pixels.
    max_size: largest face ``(w, h)``; ``None`` = no limit.
    max_faces: keep only the largest ``max_faces`` boxes (``None`` keeps all).
    max_side: detect on a copy shrunk so its longer side is at most this many pixels
      (boxes are mapped back to the input's pixels). The cascade's cost grows with the
      pixel count (320 halved the time on 640x480 frames in ``bench_live``), but faces
      smaller than about ``2 * 24 * longer_side / max_side`` pixels are then missed
      (for webcams, where faces are large). ``None`` = full size.
    equalize: histogram-equalise the grey image first.
    cascade: bundled cascade file name or path (see :func:`cascade_path`).

  Returns:
    List of ``(x, y, w, h)`` int tuples, largest area first.
  """
  if scale_factor <= 1.0:
    raise ValueError(f"scale_factor must be > 1 (e.g. 1.1), got {scale_factor}")
  if min_neighbors < 0:
    raise ValueError(f"min_neighbors must be >= 0, got {min_neighbors}")
  if max_faces is not None and max_faces < 0:
    raise ValueError(f"max_faces must be >= 0 or None, got {max_faces}")
  if max_side is not None and max_side < 24:
    raise ValueError(f"max_side must be >= 24 (the cascade's window) or None, got {max_side}")
  gray = to_gray(image_bgr_uint8, equalize=equalize)
  factor = 1.0
  if max_side is not None and max(gray.shape) > max_side:
    factor = max_side / max(gray.shape)
    small_hw = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
    gray = cv2.resize(gray, small_hw, interpolation=cv2.INTER_AREA)
  kwargs = {"maxSize": tuple(max(1, int(v * factor)) for v in max_size)} if max_size else {}
  found = load_cascade(cascade).detectMultiScale(
      gray, scaleFactor=float(scale_factor), minNeighbors=int(min_neighbors),
      minSize=tuple(max(1, int(v * factor)) for v in min_size), **kwargs)
  if len(found) and factor != 1.0:
    found = np.round(np.asarray(found, np.float64) / factor).astype(np.int64)
  boxes = sort_boxes(found) if len(found) else []
  return boxes if max_faces is None else boxes[:max_faces]


def detect_largest_face(image_rgb: np.ndarray, *, min_size_fraction: float = 0.1
                        ) -> tuple[int, int, int, int] | None:
  """The largest frontal face of an RGB image as ``(x0, y0, x1, y1)``, or None.

  Args:
    image_rgb: RGB uint8 image.
    min_size_fraction: smallest face side accepted, as a fraction of the shorter
      image side (rejects the tiny false positives of cluttered backgrounds).
  """
  gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
  min_side = max(12, int(min(gray.shape) * min_size_fraction))
  boxes = detect_faces(gray, min_size=(min_side, min_side), max_faces=1)
  if not boxes:
    return None
  x, y, w, h = boxes[0]
  return x, y, x + w, y + h


def square_around(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int, int]:
  """A square ``(x0, y0, x1, y1)`` centred on ``box`` (same format), ``1 + 2 * margin``
  times its longer side; it may extend past the image (crops pad it)."""
  x0, y0, x1, y1 = box
  side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
  cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
  return (int(round(cx - side / 2)), int(round(cy - side / 2)),
          int(round(cx + side / 2)), int(round(cy + side / 2)))
