"""The public entry points of the CAM family: ``compute`` and ``compute_fn``.

``compute(model, images, method)`` validates the inputs, runs
``methods.maps_from_model`` on a compiled eval-mode copy of the model
(``models.eval_fn``: the caller's model and its mode are untouched) over fixed-size
batches, and returns float32 numpy maps. ``compute_fn`` prepares the model once for
repeated calls (video, demos). See ``cam.methods`` for the conventions (targets, signs,
ReLUs).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from facebias_jax import models
from facebias_jax.cam.methods import check_method, maps_from_model


def _maps(model, images, targets, *, method, upsample, chunk_size):
  return maps_from_model(model, images, targets, method=method, upsample=upsample,
                         chunk_size=chunk_size)


def as_model_images(images: Any) -> np.ndarray | jax.Array:
  """Validates model inputs: float ``[B, H, W, C]`` (a single ``[H, W, C]`` is batched)."""
  arr = images if isinstance(images, jax.Array) else np.asarray(images)
  if arr.ndim == 3:
    arr = arr[None]
  if arr.ndim != 4:
    raise ValueError(f"images must be [B, H, W, C] (or one [H, W, C]), got shape {arr.shape}")
  if not jnp.issubdtype(arr.dtype, jnp.floating):
    raise ValueError(f"images must be float model inputs, got dtype {arr.dtype}: convert "
                     "uint8 pixels the way the model was trained (e.g. images / 255.0).")
  return arr.astype(jnp.float32)


def as_targets(target: Any, batch: int) -> np.ndarray:
  """``None`` -> all ``-1`` (predicted class); an int or ``[B]`` ints -> int32 ``[B]``."""
  if target is None:
    return np.full((batch,), -1, np.int32)
  arr = np.asarray(target)
  if not np.issubdtype(arr.dtype, np.integer):
    raise ValueError(f"target must be an int class index or [B] ints, got dtype {arr.dtype}")
  if arr.ndim == 0:
    arr = np.full((batch,), int(arr))
  if arr.shape != (batch,):
    raise ValueError(f"target must be one int or one per image ({batch}), got shape {arr.shape}")
  if (arr < 0).any():
    raise ValueError(f"target must be >= 0 (class indices), got {arr.min()}")
  return arr.astype(np.int32)


def check_targets_fit(targets: np.ndarray, num_logits: int) -> None:
  """Raises ValueError when targets do not index the model's ``num_logits`` outputs."""
  valid = 2 if num_logits == 1 else num_logits
  if (targets >= valid).any():
    hint = ("single-logit binary model: use 1 (positive class) or 0 (negative class)"
            if num_logits == 1 else f"model has {num_logits} classes")
    raise ValueError(f"target {int(targets.max())} out of range: {hint}.")


def _batched(fn: Callable[[np.ndarray, np.ndarray], tuple], images: np.ndarray,
             targets: np.ndarray, batch_size: int | None) -> list[np.ndarray]:
  """Runs ``fn`` over fixed-size batches (last one edge-padded: one compilation)."""
  n = len(images)
  size = n if not batch_size else int(batch_size)
  if size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  outputs = []
  for start in range(0, n, size):
    img, tgt = images[start:start + size], targets[start:start + size]
    real = len(img)
    if real < size and n > size:
      img = np.pad(np.asarray(img), [(0, size - real)] + [(0, 0)] * 3, mode="edge")
      tgt = np.pad(tgt, (0, size - real), mode="edge")
    outputs.append([np.asarray(o)[:real] for o in fn(img, tgt)])
  return [np.concatenate(parts) for parts in zip(*outputs)]


def compute_fn(model: Any, method: str = "cam", *, batch_size: int | None = None,
               upsample: bool = True, chunk_size: int = 32, jit: bool = True,
               return_targets: bool = False) -> Callable[..., Any]:
  """:func:`compute` with the model split once, for repeated calls (video, demos).

  ``nnx.split`` walks the whole module graph (tens of ms for a ResNet on a small
  CPU); the returned function skips that. It sees in-place weight updates (optimizer
  steps, ``nnx.update``, checkpoint restores) because the split state holds the
  model's own Variables, but not structural changes (replaced submodules or
  Variables): call ``compute_fn`` again after those.

  Args:
    model, method, batch_size, upsample, chunk_size, jit, return_targets: as in
      :func:`compute`.

  Returns:
    ``fn(images, target=None)`` returning what :func:`compute` returns.
  """
  method = check_method(method)
  run = models.eval_fn(model, _maps, jit=jit, method=method, upsample=bool(upsample),
                       chunk_size=int(chunk_size))

  def fn(images: Any, target: Any = None):
    images = as_model_images(images)
    targets = as_targets(target, len(images))
    maps, logits, used = _batched(run, images, targets, batch_size)
    check_targets_fit(targets, logits.shape[-1])
    maps = maps.astype(np.float32)
    return (maps, used) if return_targets else maps

  return fn


def compute(model: Any, images: Any, method: str = "cam", target: Any = None, *,
            batch_size: int | None = None, upsample: bool = True, chunk_size: int = 32,
            jit: bool = True, return_targets: bool = False):
  """Class activation maps for a batch of images.

  Args:
    model: a facebias_jax model (``feature_map``, ``logits_from_feature_map``, and
      ``linear_head`` for ``method="cam"``). It is run as an eval-mode copy; the
      caller's model and its train/eval mode are left unchanged.
    images: float ``[B, H, W, 3]`` model inputs (normalised as in training).
    method: one of ``cam``, ``gradcam``, ``gradcam++``, ``hirescam``, ``xgradcam``,
      ``layercam``, ``scorecam``, ``eigencam``.
    target: ``None`` (predicted class), an int, or ``[B]`` ints. For single-logit binary
      models ``1`` is the positive class and ``0`` the negative class.
    batch_size: images per compiled call (``None``: the whole batch at once).
    upsample: resize maps bilinearly to ``H x W``; ``False`` returns the feature-map
      resolution.
    chunk_size: Score-CAM channels per forward pass (memory bound).
    jit: ``False`` runs the same function eagerly (debugging).
    return_targets: also return the ``[B]`` targets used (resolved predictions).

  Returns:
    float32 ``[B, H, W]`` raw maps (see the module docstring for signs and ReLUs), or
    ``(maps, targets)`` with ``return_targets``.
  """
  return compute_fn(model, method, batch_size=batch_size, upsample=upsample,
                    chunk_size=chunk_size, jit=jit, return_targets=return_targets)(images, target)
