"""Checksums of saved pytrees: a checkpoint's fingerprint, checked on every restore.

A leaf module (jax and numpy only), used by ``runs`` (readers) and
``train.checkpoint`` (the writer).
"""

from __future__ import annotations

import zlib
from typing import Any

import jax
import numpy as np


def tree_crc(tree: Any) -> int:
  """CRC-32 of a pytree's leaves (dtype, shape and bytes, in tree order).

  A checkpoint's fingerprint: one flipped bit in a saved array gives another value.
  Replicated arrays are read from their first local copy.
  """
  crc = 0
  for leaf in jax.tree.leaves(tree):
    arr = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
    crc = zlib.crc32(f"{arr.dtype.str}{arr.shape}".encode(), crc)
    crc = zlib.crc32(np.ascontiguousarray(arr).view(np.uint8).reshape(-1), crc)
  return crc
