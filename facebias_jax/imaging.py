"""Small image utilities shared by every layer: normalisation, grids, files.

Kept outside ``data``/``cam`` so the pipeline, dataset analysis, CAM export, reports
and the demo can all use them without importing each other (data flows one way,
DESIGN.md):

* :func:`normalize_images` / :func:`to_uint8_images`: the model input normalisations
  (``NORMALIZATIONS``) and their inverse for display;
* :func:`tile_grid`: labelled tiles in one picture;
* :func:`save_image` / :func:`load_image`, :func:`slug` (a file-safe name);
* :func:`list_images` (a folder tree's image files) and the crops every reader of
  arbitrary photographs uses: :func:`center_square_box`, :func:`crop_resize`,
  :func:`resize`.

Images are RGB ``uint8`` arrays ``[H, W, 3]`` everywhere in the library; OpenCV's
BGR order is confined to this module and the demo.
"""

from __future__ import annotations

import math
import os
import re
from typing import Sequence

import cv2
from etils import epath
import numpy as np

NORMALIZATIONS = ("unit", "imagenet")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive.


class CorruptImageError(ValueError):
  """An image file that cannot be decoded completely (empty, truncated, not an image)."""


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
    # Per-channel constants tiled along whole rows: numpy broadcasts a length-3 axis
    # about 4x slower than a row of W * 3 (660 vs 160 us for a 224 px image); same values.
    width = x.shape[-2] if x.ndim >= 2 else 1
    rows = x.reshape(*x.shape[:-2], width * 3) if x.ndim >= 2 else x
    rows -= np.tile(IMAGENET_MEAN * np.float32(255.0), width)
    rows *= np.tile(np.float32(1.0) / (IMAGENET_STD * np.float32(255.0)), width)
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
  font_scale = _caption_scale(labels, w) if labels is not None else 0.0
  lines = [wrap_text(str(t), w, font_scale) for t in labels] if labels is not None else []
  (_, text_h), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, max(font_scale, 0.3), 1)
  line_h = text_h + baseline + 2
  # The strip is as tall as the longest caption needs: text is wrapped, never cut.
  caption_h = max((len(t) for t in lines), default=0) * line_h + (2 if lines else 0)
  cell_h, cell_w = h + caption_h, w
  grid = np.full((nrows * cell_h + (nrows + 1) * pad, ncols * cell_w + (ncols + 1) * pad, 3),
                 background, np.uint8)
  for i in range(n):
    r, c = divmod(i, ncols)
    y0, x0 = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
    grid[y0:y0 + h, x0:x0 + w] = images[i]
    for k, text in enumerate(lines[i] if lines else []):
      cv2.putText(grid, text, (x0 + 1, y0 + h + (k + 1) * line_h - baseline),
                  cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
  return grid


def _caption_scale(labels: Sequence[str], width: int, *, largest: float = 0.6,
                   smallest: float = 0.3) -> float:
  """Largest font scale (within bounds) at which the longest caption fits ``width``."""
  widest = max(cv2.getTextSize(str(t), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0] for t in labels)
  fit = (width - 2) / max(widest, 1)
  return float(min(largest, max(smallest, fit)))


def _text_width(text: str, font_scale: float) -> int:
  return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0]


def wrap_text(text: str, width: int, font_scale: float) -> list[str]:
  """``text`` as lines that each fit ``width`` pixels: broken at spaces, and inside
  words that alone are too wide. Nothing is dropped (``"".join`` of the lines, spaces
  aside, is the text)."""
  lines: list[str] = []
  for word in text.split(" "):
    candidate = f"{lines[-1]} {word}" if lines else word
    if lines and _text_width(candidate, font_scale) <= width - 2:
      lines[-1] = candidate
      continue
    while len(word) > 1 and _text_width(word, font_scale) > width - 2:
      cut = len(word) - 1
      while cut > 1 and _text_width(word[:cut], font_scale) > width - 2:
        cut -= 1
      lines.append(word[:cut])
      word = word[cut:]
    lines.append(word)
  return [line for line in lines if line] or [""]


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


# ------------------------------------------------------------------------ files and crops


def _is_truncated(data: bytes) -> bool:
  """True when an encoded JPEG/PNG stops before its end marker.

  OpenCV decodes a truncated JPEG without error (it fills the rest with grey and
  prints a warning), so the end markers are checked here. For JPEG the end-of-image
  marker must follow the *last* start-of-scan marker: an EXIF thumbnail near the
  start carries its own EOI, and byte stuffing keeps both markers out of the
  entropy-coded data.
  """
  if data[:2] == b"\xff\xd8":
    last_scan = data.rfind(b"\xff\xda")
    return last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0
  if data[:8] == b"\x89PNG\r\n\x1a\n":
    return b"IEND" not in data[-32:]
  return False


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
  """Decodes JPEG/PNG bytes to RGB uint8 ``[H, W, 3]``.

  Args:
    data: the encoded image.
    source: where it came from, for the error message.

  Returns:
    The decoded image.

  Raises:
    CorruptImageError: undecodable or truncated data.
  """
  if not data:
    raise CorruptImageError(f"{source}: empty image file.")
  if _is_truncated(data):
    raise CorruptImageError(f"{source}: the image is truncated (no end marker).")
  bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if bgr is None:
    raise CorruptImageError(f"{source}: not a decodable JPEG/PNG image.")
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def folder_images(folder: str, names: Sequence[str] | None = None):
  """``(name relative to folder, RGB image or None, why not)`` of the image files ``names``
  (default: :func:`list_images` of ``folder``); unreadable files come with the reason."""
  if names is None:
    names = [os.path.relpath(str(p), folder) for p in list_images(folder)]
  for name in names:
    try:
      yield name, decode_image(epath.Path(folder, name).read_bytes(), name), None
    except (CorruptImageError, OSError) as err:
      yield name, None, str(err).split(": ", 1)[-1].rstrip(".")


def list_images(root: os.PathLike | str, *, recursive: bool = True) -> list[epath.Path]:
  """Image files (JPEG/PNG, any case) under ``root``, sorted, hidden files excluded."""
  # An explicit walk: epath's rglob refuses "**" on some backends.
  found, folders = [], [epath.Path(root)]
  while folders:
    for path in folders.pop().iterdir():
      if path.name.startswith("."):
        continue
      if path.is_dir():
        if recursive:
          folders.append(path)
      elif path.suffix.lower() in IMAGE_EXTENSIONS:
        found.append(path)
  return sorted(found)


def center_square_box(height: int, width: int) -> Box:
  """The largest centred square inside an image."""
  side = min(height, width)
  y0, x0 = (height - side) // 2, (width - side) // 2
  return x0, y0, x0 + side, y0 + side


def crop_resize(image: np.ndarray, box: Box, size: int) -> np.ndarray:
  """Crops ``box`` (padding with black where it leaves the image) and resizes to size².

  Uses area interpolation when shrinking (no aliasing) and bilinear when enlarging.
  """
  x0, y0, x1, y1 = (int(round(v)) for v in box)
  h, w = image.shape[:2]
  pad = max(0, -x0, -y0, x1 - w, y1 - h)
  if pad:
    image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
  crop = image[y0:y1, x0:x1]
  return resize(crop, (size, size))


def resize(image: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
  """Resizes to ``(height, width)``; area interpolation down, bilinear up."""
  h, w = image.shape[:2]
  if (h, w) == tuple(shape_hw):
    return np.ascontiguousarray(image)
  shrink = shape_hw[0] * shape_hw[1] < h * w
  return cv2.resize(image, (shape_hw[1], shape_hw[0]),
                    interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)



# ----------------------------------------------------------------------------- skin tone

# sRGB (D65) -> CIE XYZ, and the D65 reference white (IEC 61966-2-1; CIE 15).
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
# Skin pixels an ITA is computed from: at least this many, else it is unknown (NaN).
MIN_SKIN_PIXELS = 16


def srgb_to_lab(image_rgb: np.ndarray) -> np.ndarray:
  """CIELAB ``[..., 3]`` (L* in [0, 100]) of sRGB uint8 pixels, D65 white."""
  c = np.asarray(image_rgb, np.float64) / 255.0
  linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
  t = (linear @ _RGB_TO_XYZ.T) / _D65_WHITE
  delta = 6.0 / 29.0
  f = np.where(t > delta ** 3, np.cbrt(t), t / (3 * delta ** 2) + 4.0 / 29.0)
  return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                   200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def ita_degrees(image_rgb: np.ndarray, skin_mask: np.ndarray) -> float:
  """Individual Typology Angle of the skin pixels of an image, in degrees.

  ITA = arctan((L* - 50) / b*) (Chardon et al. 1991), computed per pixel in CIELAB
  (``arctan2``, so a pixel with b* <= 0 still gets an angle) and summarised by the
  median, which a few non-skin pixels inside the mask (eyes, brows, lips) do not move.
  Lighting, exposure and make-up change it too: it estimates the skin tone of the
  photograph, not of the person (docs/skin_tone.md).

  Args:
    image_rgb: uint8 ``[H, W, 3]``.
    skin_mask: bool ``[H, W]``, True on skin.

  Returns:
    The angle (larger = lighter: > 55 very light ... < -30 dark), or NaN with fewer
    than ``MIN_SKIN_PIXELS`` skin pixels.
  """
  mask = np.asarray(skin_mask, bool)
  if mask.shape != np.asarray(image_rgb).shape[:2]:
    raise ValueError(f"skin mask {mask.shape} does not match the image "
                     f"{np.asarray(image_rgb).shape[:2]}")
  if mask.sum() < MIN_SKIN_PIXELS:
    return float("nan")
  lab = srgb_to_lab(np.asarray(image_rgb)[mask])
  ita = np.degrees(np.arctan2(lab[:, 0] - 50.0, lab[:, 2]))
  return float(np.median(ita))


def central_face_mask(height: int, width: int) -> np.ndarray:
  """The skin region assumed on a face crop without landmarks or masks: the central box
  of cheeks and nose (x in [0.3, 0.7], y in [0.45, 0.7] of the crop), below the eyes and
  above the mouth."""
  mask = np.zeros((height, width), bool)
  mask[int(0.45 * height):int(0.7 * height), int(0.3 * width):int(0.7 * width)] = True
  return mask
