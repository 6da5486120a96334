"""Image files of the real datasets: decoding with corrupt/truncated detection, crops.

* :class:`ImageReader`: decode with OpenCV, detect corrupt *and truncated* files, skip
  and count them (or raise under ``strict``), and count other per-split events.
* :func:`list_images`, :func:`encode_jpeg`, :func:`decode_image`.
* Crops: :func:`center_square_box`, :func:`crop_resize`, :func:`resize`,
  :func:`resize_pad`, and :func:`face_crop` (the largest detected face plus a margin,
  centre-crop fallback; the detector is ``facebias_jax.faces``).

Images are RGB ``uint8`` everywhere; BGR only inside OpenCV calls.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from absl import logging
import cv2
from etils import epath
import numpy as np

from facebias_jax import faces
# File listing and crops are shared with prediction on folders (``facebias_jax.imaging``).
from facebias_jax.imaging import (IMAGE_EXTENSIONS, Box, center_square_box,  # noqa: F401
                                  crop_resize, decode_image, list_images, resize)
from facebias_jax.data.builders.errors import CorruptImageError, missing_path_error

JPEG_QUALITY = 95
# How many offending file names a warning lists before "...".
_MAX_EXAMPLES_LISTED = 5


def encode_jpeg(image_rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
  """JPEG bytes of an RGB uint8 image (OpenCV: far faster than TFDS's TF encoder)."""
  ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[..., ::-1]),
                         [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
  if not ok:
    raise RuntimeError(f"cv2.imencode failed on an image of shape {image_rgb.shape}.")
  return buf.tobytes()


class ImageReader:
  """Reads image files for one builder run, skipping (or raising on) corrupt ones.

  A corrupt or truncated file is skipped with a warning and counted; under
  ``strict=True`` it raises :class:`CorruptImageError` instead. A *missing* file is
  always an error (:func:`missing_path_error`): it means the layout is wrong, not
  that one download went bad. Other per-split events (e.g. "no face found") are
  counted with :meth:`note` and reported together by :meth:`log_summary`.
  """

  def __init__(self, dataset: str, *, strict: bool = False):
    self.dataset = dataset
    self.strict = bool(strict)
    self.skipped: list[str] = []
    self.notes: dict[str, list[str]] = {}

  def read(self, path: os.PathLike | str) -> np.ndarray | None:
    """RGB uint8 image at ``path``, or None for a corrupt file (when not strict)."""
    path = epath.Path(path)
    if not path.is_file():
      raise missing_path_error(path, dataset=self.dataset, what="an image file")
    return self.decode(path.read_bytes(), os.fspath(path))

  def decode(self, data: bytes, source: str) -> np.ndarray | None:
    """Decodes already-read bytes with the same skip/strict policy as :meth:`read`."""
    try:
      return decode_image(data, source)
    except CorruptImageError as err:
      if self.strict:
        raise CorruptImageError(f"{self.dataset}: {err} (strict=True; pass strict=False "
                                "to skip corrupt images with a warning).") from None
      logging.warning("%s: skipping corrupt image: %s", self.dataset, err)
      self.skipped.append(source)
      return None

  def note(self, event: str, source: str) -> None:
    """Counts a non-fatal event (e.g. ``"no face found, centre crop used"``)."""
    self.notes.setdefault(event, []).append(source)

  def log_summary(self, split: str, num_written: int) -> str:
    """Logs (and returns) one line with the counts of this split, then resets them."""
    parts = [f"{self.dataset} split {split!r}: wrote {num_written} examples"]
    if self.skipped:
      parts.append(f"skipped {len(self.skipped)} corrupt image(s) "
                   f"({_examples(self.skipped)})")
    for event, sources in self.notes.items():
      parts.append(f"{event}: {len(sources)} image(s) ({_examples(sources)})")
    line = "; ".join(parts)
    (logging.warning if self.skipped or self.notes else logging.info)("%s", line)
    self.skipped, self.notes = [], {}
    return line


def _examples(items: Sequence[str]) -> str:
  names = [os.path.basename(str(s)) for s in items[:_MAX_EXAMPLES_LISTED]]
  return ", ".join(names) + (", ..." if len(items) > _MAX_EXAMPLES_LISTED else "")


def resize_pad(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
  """Resizes keeping the aspect ratio so the long side is ``size``, pads to size².

  Returns:
    ``(image, scale, (x_offset, y_offset))``: a point ``(x, y)`` of the input lands
    at ``(x * scale + x_offset, y * scale + y_offset)`` in the output.
  """
  h, w = image.shape[:2]
  scale = size / max(h, w)
  new_h, new_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
  small = resize(image, (new_h, new_w))
  out = np.zeros((size, size, 3), np.uint8)
  y_off, x_off = (size - new_h) // 2, (size - new_w) // 2
  out[y_off:y_off + new_h, x_off:x_off + new_w] = small
  return out, scale, (x_off, y_off)


def face_crop(image_rgb: np.ndarray, size: int, *, margin: float = 0.2,
              detector: Callable[[np.ndarray], Box | None] = faces.detect_largest_face,
              ) -> tuple[np.ndarray, bool]:
  """Crops the largest detected face with a margin and resizes it to size².

  Args:
    image_rgb: RGB uint8 image.
    size: output side.
    margin: extra context on each side, as a fraction of the face box side.
    detector: returns the face box or None (``faces.detect_largest_face`` with
      ``faces.DEFAULT_DETECTOR`` by default).

  Returns:
    ``(crop, found)``; when no face is found the largest centred square is used
    and ``found`` is False (callers count these).
  """
  box = detector(image_rgb)
  if box is None:
    return crop_resize(image_rgb, center_square_box(*image_rgb.shape[:2]), size), False
  return crop_resize(image_rgb, faces.square_around(box, margin), size), True
