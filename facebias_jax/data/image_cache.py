"""Decoded, resized images kept in memory between epochs, when the split fits.

Reading a record costs more than the train step can spare on a small machine: for the
demo's 64 px split, reading and decoding 32 records takes about 1.5 ms of a core
(ArrayRecord's chunk decompression, the proto, the zlib tensor), against an 8 ms step
that itself wants every core. Every later epoch reads the same images again, so a split
whose images fit in ``budget_mb`` at the model's input size keeps them, decoded and
resized, in one uint8 array that fills as the first epoch reads it (memory grows with
it; nothing is read ahead). Only what is a pure function of the stored image is kept:
random crops and flips are still drawn per epoch. CelebA at 224 px (24 GB) never fits
the default budget and reads as before.

Caches are per (source, image size) and live for the process; together they stay
within the largest budget asked for, the oldest going first.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable

import numpy as np

_lock = threading.Lock()
_caches: "collections.OrderedDict[tuple, ImageCache]" = collections.OrderedDict()


class ImageCache:
  """``images[i]`` of one split at one size, decoded on first request.

  Args:
    num_images: examples in the split.
    side: the square side images are resized to.
  """

  def __init__(self, num_images: int, side: int):
    # np.empty: pages are only committed as rows are written.
    self.images = np.empty((num_images, side, side, 3), np.uint8)
    self.filled = np.zeros(num_images, bool)

  @property
  def nbytes(self) -> int:
    return self.images.nbytes

  def get(self, ids: np.ndarray, load: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The images of ``ids`` ``[n, side, side, 3]``; ``load(missing_ids)`` decodes those
    not cached yet. Reader threads may race on one id: both write the same pixels."""
    ids = np.asarray(ids, np.int64)
    missing = np.unique(ids[~self.filled[ids]])
    if missing.size:
      self.images[missing] = load(missing)
      self.filled[missing] = True
    return self.images[ids]


def image_bytes(num_images: int, side: int) -> int:
  return int(num_images) * int(side) * int(side) * 3


def cache_for(key: tuple | None, num_images: int, side: int,
              budget_mb: float) -> ImageCache | None:
  """The cache of split ``key`` at ``side`` px, or None when there is no key (a source
  that is not a prepared dataset) or the images would not fit in ``budget_mb`` MiB."""
  budget = int(budget_mb * 2 ** 20)
  needed = image_bytes(num_images, side)
  if key is None or needed == 0 or needed > budget:
    return None
  full_key = (*key, int(side), int(num_images))
  with _lock:
    cache = _caches.get(full_key)
    if cache is None:
      while _caches and sum(c.nbytes for c in _caches.values()) + needed > budget:
        _caches.popitem(last=False)
      cache = _caches[full_key] = ImageCache(num_images, side)
    _caches.move_to_end(full_key)
    return cache


def clear() -> None:
  """Drops every cache (their memory goes back once no batch refers to it)."""
  with _lock:
    _caches.clear()
