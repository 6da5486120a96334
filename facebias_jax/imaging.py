"""Small image utilities shared by every layer: normalisation, grids, files.

Kept outside ``data``/``cam`` so the pipeline, dataset analysis, CAM export, reports
and the demo can all use them without importing each other (data flows one way,
DESIGN.md):

* :func:`normalize_images` / :func:`to_uint8_images`: the model input normalisations
  (``NORMALIZATIONS``) and their inverse for display;
* :func:`tile_grid`: labelled tiles in one picture;
* :func:`save_image` / :func:`load_image`, :func:`slug` (a file-safe name).

Images are RGB ``uint8`` arrays ``[H, W, 3]`` everywhere in the library; OpenCV's
BGR order is confined to this module and the demo.
"""

from __future__ import annotations

import math
import os
import re
from typing import Sequence

import cv2
import numpy as np

NORMALIZATIONS = ("unit", "imagenet")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _check_normalization(normalize: str) -> None:
  if normalize not in NORMALIZATIONS:
    raise ValueError(f"normalize={normalize!r} is not one of {NORMALIZATIONS} (the "
                     "config.data.normalize the model was trained with).")


def normalize_images(images_uint8: np.ndarray, normalize: str) -> np.ndarray:
  """uint8 ``[..., 3]`` -> float32 model inputs: ``"unit"`` [0, 1]; ``"imagenet"`` mean/std."""
  _check_normalization(normalize)
  # In place on one float32 copy: big batches are memory-bound, not FLOP-bound.
  x = np.asarray(images_uint8).astype(np.float32)
  if normalize == "imagenet":
    x -= IMAGENET_MEAN * np.float32(255.0)
    x *= np.float32(1.0) / (IMAGENET_STD * np.float32(255.0))
  else:
    x *= np.float32(1.0 / 255.0)
  return x


def to_uint8_images(images: np.ndarray, normalize: str) -> np.ndarray:
  """Undoes :func:`normalize_images` for display: float model inputs -> uint8 RGB."""
  _check_normalization(normalize)
  x = np.asarray(images, np.float32)
  if normalize == "imagenet":
    x = x * IMAGENET_STD + IMAGENET_MEAN
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def slug(text: str, default: str = "item") -> str:
  """A file-safe name of ``text``: runs of other characters become one ``_``."""
  return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or default


def tile_grid(images: Sequence[np.ndarray] | np.ndarray, labels: Sequence[str] | None = None,
              *, ncols: int | None = None, pad: int = 2, scale: int = 1,
              background: int = 255) -> np.ndarray:
  """Tiles equally sized RGB images into one grid, each with an optional caption.

  Args:
    images: ``[N, H, W, 3]`` uint8 (or a list of such arrays of one shape).
    labels: optional caption per image, drawn in a strip under it.
    ncols: columns; defaults to ``ceil(sqrt(N))``.
    pad: pixels between tiles.
    scale: integer upscaling of every tile (nearest neighbour), for small images.
    background: grey level of the padding and caption strips.

  Returns:
    The grid as one uint8 RGB image.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"tile_grid expects images of shape [N, H, W, 3], got {images.shape}")
  if labels is not None and len(labels) != len(images):
    raise ValueError(f"tile_grid got {len(images)} images but {len(labels)} labels")
  n = len(images)
  if n == 0:
    raise ValueError("tile_grid needs at least one image")
  if scale > 1:
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
  h, w = images.shape[1:3]
  ncols = ncols or int(math.ceil(math.sqrt(n)))
  nrows = int(math.ceil(n / ncols))
  caption_h = 0
  font_scale = _caption_scale(labels, w) if labels is not None else 0.0
  if labels is not None:
    (_, text_h), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    caption_h = text_h + baseline + 4
  cell_h, cell_w = h + caption_h, w
  grid = np.full((nrows * cell_h + (nrows + 1) * pad, ncols * cell_w + (ncols + 1) * pad, 3),
                 background, np.uint8)
  for i in range(n):
    r, c = divmod(i, ncols)
    y0, x0 = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
    grid[y0:y0 + h, x0:x0 + w] = images[i]
    if labels is not None:
      cv2.putText(grid, _fit_text(str(labels[i]), w, font_scale), (x0 + 1, y0 + h + caption_h - 4),
                  cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
  return grid


def _caption_scale(labels: Sequence[str], width: int, *, largest: float = 0.6,
                   smallest: float = 0.3) -> float:
  """Largest font scale (within bounds) at which the longest caption fits ``width``."""
  widest = max(cv2.getTextSize(str(t), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0] for t in labels)
  fit = (width - 2) / max(widest, 1)
  return float(min(largest, max(smallest, fit)))


def _fit_text(text: str, width: int, font_scale: float) -> str:
  """Shortens ``text`` with an ellipsis until it fits ``width`` pixels."""
  while text:
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    if tw <= width - 2:
      return text
    text = text[:-2] + "~" if len(text) > 2 else ""
  return text


def save_image(path: str, image_rgb: np.ndarray, *, jpeg_quality: int = 95) -> str:
  """Writes an RGB uint8 image as PNG or JPEG (chosen by the extension).

  Creates the parent folder. Raises ValueError for other extensions and OSError
  when OpenCV cannot write the file.
  """
  ext = os.path.splitext(path)[1].lower()
  if ext not in (".png", ".jpg", ".jpeg"):
    raise ValueError(f"Unsupported image extension {ext!r} for {path}: use .png, .jpg or .jpeg")
  image_rgb = np.asarray(image_rgb)
  if image_rgb.dtype != np.uint8:
    raise ValueError(f"save_image expects uint8 pixels, got {image_rgb.dtype} for {path}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR) if image_rgb.ndim == 3 else image_rgb
  params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext != ".png" else []
  if not cv2.imwrite(path, bgr, params):
    raise OSError(f"OpenCV could not write {path}")
  return path


def load_image(path: str) -> np.ndarray:
  """Reads an image file as RGB uint8; raises FileNotFoundError / ValueError clearly."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"No image file at {path}")
  bgr = cv2.imread(path, cv2.IMREAD_COLOR)
  if bgr is None:
    raise ValueError(f"{path} is not a readable image (corrupt or unsupported format)")
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
