"""The DB-VAE paper's full-image protocol (PPB): a face classifier used as a detector.

Amini et al. (AIES 2019) evaluate on the Pilot Parliaments Benchmark by sliding
square windows of several sizes over each full image, resizing every window to the
classifier's input size, and counting the image as a face when any window's logit
is above a threshold. Accuracy per group is then the detection rate.

Everything per image chunk is one jit-compiled function: the window crops are
``jax.image.scale_and_translate`` calls (a crop and a resize in one, with
antialiasing when shrinking) vmapped over precomputed window boxes and images, then
the model runs on all windows of the chunk at once. Chunks have a fixed size (the
last one padded) so each image size compiles once.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facebias_jax import models


def window_boxes(height: int, width: int, *, scales: Sequence[float],
                 stride_frac: float) -> np.ndarray:
  """Square sliding windows over an image.

  Args:
    height, width: image size.
    scales: window sides as fractions of ``min(height, width)`` (each in (0, 1]).
    stride_frac: stride as a fraction of the window side (in (0, 1]).

  Returns:
    int32 ``[K, 4]`` boxes ``(y0, x0, h, w)``, no duplicates; the last row/column of
    positions is moved flush with the image border so every pixel is covered.
  """
  if not scales:
    raise ValueError("detection needs at least one window scale")
  if not 0.0 < stride_frac <= 1.0:
    raise ValueError(f"stride_frac must be in (0, 1], got {stride_frac}")
  boxes = []
  for s in scales:
    if not 0.0 < s <= 1.0:
      raise ValueError(f"window scales must be in (0, 1] (fractions of the shorter image side), got {s}")
    side = max(1, int(round(s * min(height, width))))
    stride = max(1, int(round(stride_frac * side)))

    def starts(extent: int) -> list[int]:
      pos = list(range(0, extent - side + 1, stride))
      if pos[-1] != extent - side:
        pos.append(extent - side)
      return pos

    boxes += [(y, x, side, side) for y in starts(height) for x in starts(width)]
  return np.array(sorted(set(boxes), key=boxes.index), np.int32)


def crop_resize(image_hwc: jnp.ndarray, box: jnp.ndarray, size: int) -> jnp.ndarray:
  """Crops ``box`` = (y0, x0, h, w) from an image and resizes it to ``size x size``."""
  box = box.astype(jnp.float32)
  scale = jnp.array([size / box[2], size / box[3]])
  translation = -box[:2] * scale  # maps the box's top-left corner to output (0, 0).
  return jax.image.scale_and_translate(image_hwc, (size, size, image_hwc.shape[-1]), (0, 1),
                                       scale, translation, method="linear", antialias=True)


def crop_windows(images_bhwc: jnp.ndarray, boxes: jnp.ndarray, size: int) -> jnp.ndarray:
  """All windows of all images: ``[B, K, size, size, C]``."""
  per_image = jax.vmap(crop_resize, in_axes=(None, 0, None))
  return jax.vmap(per_image, in_axes=(0, None, None))(images_bhwc, boxes, size)


def _window_logits(model: nnx.Module, images_bhwc: jax.Array, boxes_k4: jax.Array, *,
                   input_size: int) -> jax.Array:
  """Positive-class logits ``[B, K]`` of every window of every image."""
  windows = crop_windows(images_bhwc, boxes_k4, input_size)
  b, k = windows.shape[:2]
  flat = windows.reshape((b * k,) + windows.shape[2:])
  return models.binary_logit(models.logits(model, flat)).reshape(b, k)


def _as_float_images(images: Any) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"detect expects images of shape [N, H, W, 3], got {images.shape}")
  if images.dtype == np.uint8:
    # Raw pixels: the "unit" normalisation; pass float images for any other one.
    return images.astype(np.float32) / 255.0
  return images.astype(np.float32)


def detect(model: nnx.Module, images_full: Any, *, input_size: int,
           scales: Sequence[float] = (1.0, 0.75, 0.5), stride_frac: float = 0.25,
           threshold: float = 0.0, batch_size: int = 256) -> dict[str, np.ndarray]:
  """Runs a face classifier as a sliding-window detector over full images.

  Args:
    model: a binary classifier or DB-VAE with 1 or 2 logits (run in eval mode).
    images_full: ``[N, H, W, 3]`` images, float in the model's input normalisation
      (uint8 is scaled to [0, 1]); or a list of such arrays / single images of
      different sizes (processed per size).
    input_size: the model's input side; every window is resized to it.
    scales: window sides as fractions of the shorter image side.
    stride_frac: window stride as a fraction of the window side.
    threshold: an image is a face when its best window's logit is ``> threshold``
      (0.0 = probability 0.5).
    batch_size: windows per model call (rounded to whole images; at least one image).

  Returns:
    ``{"max_logit": float32 [N], "is_face": bool [N], "best_box": int32 [N, 4]
    (y0, x0, h, w in image pixels), "num_windows": int32 [N]}``.
  """
  if isinstance(images_full, (list, tuple)):
    return _detect_mixed_sizes(model, list(images_full), input_size=input_size, scales=scales,
                               stride_frac=stride_frac, threshold=threshold, batch_size=batch_size)
  images = _as_float_images(images_full)
  n, h, w = images.shape[:3]
  boxes = window_boxes(h, w, scales=scales, stride_frac=stride_frac)
  per_call = max(1, batch_size // len(boxes))
  window_logits = models.eval_fn(model, _window_logits, input_size=int(input_size))
  boxes_dev = jnp.asarray(boxes)
  outputs = []
  for start in range(0, n, per_call):
    chunk = images[start:start + per_call]
    real = len(chunk)
    if real < per_call:  # pad to the fixed chunk shape: one compilation per image size.
      chunk = np.concatenate([chunk, np.zeros((per_call - real,) + chunk.shape[1:], chunk.dtype)])
    outputs.append(np.asarray(window_logits(jnp.asarray(chunk), boxes_dev))[:real])
  logits_nk = np.concatenate(outputs) if outputs else np.zeros((0, len(boxes)), np.float32)
  best = np.argmax(logits_nk, axis=1) if n else np.zeros((0,), np.int64)
  max_logit = logits_nk[np.arange(n), best].astype(np.float32)
  return {"max_logit": max_logit, "is_face": max_logit > threshold,
          "best_box": boxes[best].astype(np.int32),
          "num_windows": np.full((n,), len(boxes), np.int32)}


def _detect_mixed_sizes(model: nnx.Module, images: list, **kwargs: Any) -> dict[str, np.ndarray]:
  """``detect`` over images of different sizes: one batched run per distinct size."""
  images = [np.asarray(im) for im in images]
  images = [im[None] if im.ndim == 3 else im for im in images]
  sizes = sorted({im.shape[1:3] for im in images})
  flat = [(i, j) for i, im in enumerate(images) for j in range(len(im))]
  n = len(flat)
  out = {"max_logit": np.zeros((n,), np.float32), "is_face": np.zeros((n,), bool),
         "best_box": np.zeros((n, 4), np.int32), "num_windows": np.zeros((n,), np.int32)}
  for size in sizes:
    idx = [k for k, (i, _) in enumerate(flat) if images[i].shape[1:3] == size]
    stack = np.stack([images[flat[k][0]][flat[k][1]] for k in idx])
    res = detect(model, stack, **kwargs)
    for key in out:
      out[key][idx] = res[key]
  return out


def num_windows(height: int, width: int, *, scales: Sequence[float], stride_frac: float) -> int:
  """How many windows ``detect`` evaluates per image of this size (for planning batch sizes)."""
  return len(window_boxes(height, width, scales=scales, stride_frac=stride_frac))
