"""Face detection, shared by the dataset builders (PPB crops), prediction and the demo.

Three offline detectors, none downloading anything at run time (``DETECTORS``):

* ``"cnn"`` (default): dlib's max-margin (MMOD) CNN face detector, run by the
  ``dlib-bin`` wheel with the weights file that the ``face-recognition-models`` package
  ships (``mmod_human_face_detector.dat``, 0.7 MB). The best recall, and the most even
  across skin tones, of the three on our measurements (``docs/face_detection.md``);
  about 0.3 s for a 256 px image on a 2-core CPU, so images are shrunk to
  ``CNN_MAX_SIDE`` first unless ``max_side`` says otherwise.
* ``"hog"``: dlib's HOG + linear SVM frontal detector (model compiled into dlib).
* ``"haar"``: OpenCV's Viola-Jones Haar cascade bundled in opencv-python 4.x (the XML
  files in ``cv2.data.haarcascades``; OpenCV 5 wheels no longer ship them, hence the
  ``<5`` pin in DESIGN.md). About 20-80x faster than ``cnn``: the live demo's default.

The detector is a measurement instrument: a face it misses is a face the classifier
never sees, so reports show detection rates per group (``face_found``).

Each model is loaded once per process and reused for every frame. A leaf module:
``data``, ``eval`` and ``demo`` use it without importing each other
(``facebias_jax.demo.face_detect`` re-exports it).

Usage::

  boxes = detect_faces(frame_bgr)                    # [(x, y, w, h), ...], largest first
  boxes = detect_faces(frame_bgr, detector="haar", min_neighbors=3, min_size=(24, 24))
  box = detect_largest_face(image_rgb)               # (x0, y0, x1, y1) or None
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Sequence

import cv2
import numpy as np

DETECTORS = ("cnn", "hog", "haar")
DEFAULT_DETECTOR = "cnn"
# The CNN's cost grows with the pixel count; faces in portraits stay above its ~80 px
# minimum after shrinking the longer side to this.
CNN_MAX_SIDE = 384
CNN_WEIGHTS = "mmod_human_face_detector.dat"
DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
# OpenCV's documented defaults are 1.1 / 3; 5 neighbours removes most false positives
# on cluttered webcam frames at little cost in recall on frontal faces.
DEFAULT_SCALE_FACTOR = 1.1
DEFAULT_MIN_NEIGHBORS = 5
DEFAULT_MIN_SIZE = (30, 30)
# dlib's HOG and CNN windows are about 80x80 px: each upsampling halves the smallest
# face found (1: about 40 px) at about 4x the cost. HOG upsamples once by default; the
# CNN does not (it runs on images shrunk to CNN_MAX_SIDE: faces of about a fifth of the
# longer side and more), so for small faces pass upsample=1 or a larger max_side.
DEFAULT_UPSAMPLE = {"hog": 1, "cnn": 0}

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


def _import_dlib():
  try:
    import dlib  # pylint: disable=g-import-not-at-top  (imported only when used)
  except ImportError as e:
    raise ImportError("the 'cnn' and 'hog' face detectors need the dlib-bin package (pip "
                      "install dlib-bin==20.0.1.post1), or use detector='haar'") from e
  return dlib


def cnn_weights_path() -> str:
  """Path of the MMOD CNN weights inside the installed ``face-recognition-models``.

  Found without importing the package (its ``__init__`` needs ``pkg_resources``,
  which recent setuptools no longer provide).

  Raises:
    FileNotFoundError: the package or the file is missing, with what to install.
  """
  spec = importlib.util.find_spec("face_recognition_models")
  folders = list(spec.submodule_search_locations or []) if spec else []
  for folder in folders:
    path = os.path.join(folder, "models", CNN_WEIGHTS)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"{CNN_WEIGHTS} not found: detector='cnn' needs the "
                          "face-recognition-models package (pip install "
                          "face-recognition-models==0.3.0), or use detector='hog' or 'haar'")


@functools.lru_cache(maxsize=None)
def load_dlib_detector(detector: str):
  """dlib's ``"cnn"`` or ``"hog"`` detector, loaded once per process (cached)."""
  dlib = _import_dlib()
  if detector == "cnn":
    return dlib.cnn_face_detection_model_v1(cnn_weights_path())
  return dlib.get_frontal_face_detector()


def check_detector(detector: str, flag: str = "detector") -> str:
  """Returns ``detector`` if it is one of ``DETECTORS``, else raises a ValueError that
  names ``flag`` (the option the user set)."""
  if detector not in DETECTORS:
    raise ValueError(f"{flag}={detector!r} is not a face detector; use one of "
                     f"{', '.join(DETECTORS)}")
  return detector


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
                 cascade: str = DEFAULT_CASCADE, detector: str = DEFAULT_DETECTOR,
                 upsample: int | None = None) -> list[Box]:
  """Frontal faces in an image, as ``(x, y, w, h)`` boxes, largest first.

  Args:
    image_bgr_uint8: BGR uint8 ``[H, W, 3]`` (OpenCV order, e.g. a video frame) or grey.
    scale_factor: (haar) image pyramid step (> 1); smaller finds more sizes, slower.
    min_neighbors: (haar) overlapping detections needed to keep a box; higher = fewer
      false positives.
    min_size: smallest face ``(w, h)`` in pixels (every detector: smaller boxes are
      dropped).
    max_size: largest face ``(w, h)``; ``None`` = no limit.
    max_faces: keep only the largest ``max_faces`` boxes (``None`` keeps all).
    max_side: detect on a copy shrunk so its longer side is at most this many pixels
      (boxes are mapped back to the input's pixels). The cascade's cost grows with the
      pixel count (320 halved the time on 640x480 frames in ``bench_live``), but faces
      smaller than about ``2 * 24 * longer_side / max_side`` pixels are then missed
      (for webcams, where faces are large). ``None`` = full size (``CNN_MAX_SIDE``
      for the CNN).
    equalize: histogram-equalise the grey image first.
    cascade: (haar) bundled cascade file name or path (see :func:`cascade_path`).
    detector: ``"cnn"``, ``"hog"`` or ``"haar"`` (``DETECTORS``).
    upsample: (cnn, hog) times the image is doubled before detection (>= 0);
      ``None`` = ``DEFAULT_UPSAMPLE``.

  Returns:
    List of ``(x, y, w, h)`` int tuples, largest area first.
  """
  check_detector(detector)
  upsample = DEFAULT_UPSAMPLE.get(detector, 0) if upsample is None else upsample
  if detector == "cnn" and max_side is None:
    max_side = CNN_MAX_SIDE
  if upsample < 0:
    raise ValueError(f"upsample must be >= 0, got {upsample}")
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
  if detector == "haar":
    kwargs = {"maxSize": tuple(max(1, int(v * factor)) for v in max_size)} if max_size else {}
    found = load_cascade(cascade).detectMultiScale(
        gray, scaleFactor=float(scale_factor), minNeighbors=int(min_neighbors),
        minSize=tuple(max(1, int(v * factor)) for v in min_size), **kwargs)
  else:
    found = _dlib_boxes(detector, gray if detector == "hog" else _as_rgb(image_bgr_uint8, factor),
                        int(upsample))
  if len(found) and factor != 1.0:
    found = np.round(np.asarray(found, np.float64) / factor).astype(np.int64)
  boxes = [b for b in (sort_boxes(found) if len(found) else [])
           if b[2] >= min_size[0] and b[3] >= min_size[1]
           and (max_size is None or (b[2] <= max_size[0] and b[3] <= max_size[1]))]
  return boxes if max_faces is None else boxes[:max_faces]


def _as_rgb(image: np.ndarray, factor: float) -> np.ndarray:
  """The CNN's input: RGB (it was trained on colour images), shrunk by ``factor``."""
  arr = np.asarray(image)
  rgb = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB if arr.ndim == 2 else cv2.COLOR_BGR2RGB)
  if factor != 1.0:
    hw = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    rgb = cv2.resize(rgb, hw, interpolation=cv2.INTER_AREA)
  return rgb


def _dlib_boxes(detector: str, image: np.ndarray, upsample: int) -> list[Box]:
  """dlib detections as ``(x, y, w, h)`` clipped to the image (dlib's may overhang)."""
  height, width = image.shape[:2]
  boxes = []
  for found in load_dlib_detector(detector)(np.ascontiguousarray(image), upsample):
    r = found.rect if detector == "cnn" else found
    x0, y0 = max(0, r.left()), max(0, r.top())
    x1, y1 = min(width, r.right() + 1), min(height, r.bottom() + 1)
    if x1 > x0 and y1 > y0:
      boxes.append((x0, y0, x1 - x0, y1 - y0))
  return boxes


def detect_largest_face(image_rgb: np.ndarray, *, min_size_fraction: float = 0.1,
                        detector: str = DEFAULT_DETECTOR
                        ) -> tuple[int, int, int, int] | None:
  """The largest frontal face of an RGB image as ``(x0, y0, x1, y1)``, or None.

  Args:
    image_rgb: RGB uint8 image.
    min_size_fraction: smallest face side accepted, as a fraction of the shorter
      image side (rejects the tiny false positives of cluttered backgrounds).
    detector: one of ``DETECTORS``.
  """
  min_side = max(12, int(min(image_rgb.shape[:2]) * min_size_fraction))
  # BGR for detect_faces: the CNN sees colour, the cascade the same grey image.
  image = image_rgb if image_rgb.ndim == 2 else np.ascontiguousarray(image_rgb[..., ::-1])
  boxes = detect_faces(image, min_size=(min_side, min_side), max_faces=1, detector=detector)
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
