"""How faithful is a saliency map to the model? Perturbation and localisation metrics.

* Deletion / insertion (Petsiuk et al., RISE 2018): pixels are removed from the image
  (replaced by a baseline) or inserted into the baseline in decreasing order of map
  value; the target-class probability is recorded at each step and summarised by the
  area under the curve (deletion: lower is better; insertion: higher is better).
* Average drop and increase in confidence (Chattopadhay et al., Grad-CAM++ 2018): the
  model sees ``image * map`` (map min-max normalised to ``[0, 1]``).
* Pointing game and energy inside a mask (Zhang et al. 2016; Wang et al., Score-CAM
  2020): does the map's maximum / positive mass fall on the object (the synthetic
  benchmark's face masks)?

Model-based metrics run a jit-compiled eval-mode copy of the model (the caller's model
is untouched); probabilities and targets follow :mod:`facebias_jax.cam.methods`.
"""

from __future__ import annotations

from typing import Any

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from facebias_jax import models
from facebias_jax.cam import compute, methods, render

BASELINES = ("blur", "zero")


def _resized_maps(maps: Any, count: int, size_hw: tuple[int, int]) -> np.ndarray:
  """Validates ``count`` maps ``[B, h, w]`` and resizes them bilinearly to ``size_hw``."""
  maps = np.asarray(maps, np.float32)
  if maps.ndim != 3 or len(maps) != count:
    raise ValueError(f"maps must be [B, h, w] with B={count} (one per image), got "
                     f"shape {maps.shape}")
  height, width = size_hw
  if maps.shape[1:] != (height, width):
    maps = np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
                     for m in maps])
  if not np.isfinite(maps).all():
    raise ValueError("maps contain NaN or inf values")
  return maps


def baseline_images(images: Any, baseline: str | float = "blur", *,
                    blur_sigma: float | None = None) -> np.ndarray:
  """The "pixels removed" image of each input.

  Args:
    images: ``[B, H, W, C]`` float model inputs.
    baseline: ``"blur"`` (Gaussian blur, RISE's insertion baseline), ``"zero"``, or a
      constant fill value.
    blur_sigma: blur standard deviation in pixels; default ``max(1, 0.025 * max(H, W))``
      (RISE used 5 px at 224 px).

  Returns:
    float32 array shaped like ``images``.
  """
  images = np.asarray(images, np.float32)
  if isinstance(baseline, str):
    if baseline == "zero":
      return np.zeros_like(images)
    if baseline != "blur":
      raise ValueError(f"Unknown baseline {baseline!r}; use one of {BASELINES} or a number")
    sigma = blur_sigma or max(1.0, 0.025 * max(images.shape[1:3]))
    return np.stack([cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)
                     .reshape(img.shape) for img in images])
  return np.full_like(images, float(baseline))


def _probabilities(model, images, targets):
  """Target probabilities, resolved targets and the logits (whose shape gives K)."""
  logits = models.logits(model, images)
  targets = methods.resolve_targets(logits, targets)
  return methods.target_probabilities(logits, targets), targets, logits


def _curves(model, images, baseline, maps, targets, *, steps, mode, step_batch):
  _, targets, logits = _probabilities(model, images, targets)
  b, h, w = maps.shape
  # Rank of every pixel in decreasing map order (0 = most salient); stable for ties.
  order = jnp.argsort(-maps.reshape(b, h * w), axis=-1, stable=True)
  ranks = jnp.argsort(order, axis=-1).reshape(b, h, w)
  counts = jnp.round(jnp.linspace(0.0, 1.0, steps + 1) * (h * w)).astype(jnp.int32)

  def prob_at(count):
    top = (ranks < count)[..., None]
    start, end = (images, baseline) if mode == "deletion" else (baseline, images)
    x = jnp.where(top, end, start)
    return _probabilities(model, x, targets)[0]

  return jax.lax.map(prob_at, counts, batch_size=step_batch).T, targets, logits


def perturbation_curve(model: Any, images: Any, maps: Any, target: Any = None, *,
                       mode: str = "deletion", steps: int = 20, baseline: str | float = "blur",
                       blur_sigma: float | None = None, step_batch: int = 4) -> dict:
  """Deletion or insertion curve of each image and its area under the curve.

  Args:
    model: a facebias_jax model.
    images: ``[B, H, W, 3]`` float model inputs.
    maps: ``[B, h, w]`` saliency maps (resized to ``H x W`` if needed).
    target: ``None`` (predicted class), an int or ``[B]`` ints (see ``cam.compute``).
    mode: ``"deletion"`` (remove most salient pixels first from the image) or
      ``"insertion"`` (add them first to the baseline).
    steps: number of steps; step ``i`` perturbs ``round(i / steps * H * W)`` pixels.
    baseline: ``"blur"``, ``"zero"`` or a constant (see :func:`baseline_images`).
    blur_sigma: blur width for ``baseline="blur"``.
    step_batch: steps evaluated per vectorised forward pass (``step_batch * B`` images).

  Returns:
    dict with ``fractions`` ``[steps+1]``, ``curves`` ``[B, steps+1]`` target-class
    probabilities, ``auc`` ``[B]`` (trapezoidal, over fractions in ``[0, 1]``),
    ``mean_auc`` and ``targets`` ``[B]``.
  """
  if mode not in ("deletion", "insertion"):
    raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
  if int(steps) < 1:
    raise ValueError(f"steps must be >= 1, got {steps}")
  images = np.asarray(compute.as_model_images(images))
  maps = _resized_maps(maps, len(images), images.shape[1:3])
  targets = compute.as_targets(target, len(images))
  base = baseline_images(images, baseline, blur_sigma=blur_sigma)
  curves_fn = models.eval_fn(model, _curves, steps=int(steps), mode=mode,
                             step_batch=max(1, int(step_batch)))
  curves, used, logits = curves_fn(images, base, maps, targets)
  compute.check_targets_fit(targets, logits.shape[-1])
  curves = np.asarray(curves, np.float64)
  fractions = np.linspace(0.0, 1.0, int(steps) + 1)
  auc = np.trapezoid(curves, fractions, axis=-1)
  return {"fractions": fractions, "curves": curves, "auc": auc,
          "mean_auc": float(auc.mean()), "targets": np.asarray(used)}


def deletion_curve(model: Any, images: Any, maps: Any, target: Any = None, **kwargs) -> dict:
  """:func:`perturbation_curve` with ``mode="deletion"`` (lower AUC = more faithful)."""
  return perturbation_curve(model, images, maps, target, mode="deletion", **kwargs)


def insertion_curve(model: Any, images: Any, maps: Any, target: Any = None, **kwargs) -> dict:
  """:func:`perturbation_curve` with ``mode="insertion"`` (higher AUC = more faithful)."""
  return perturbation_curve(model, images, maps, target, mode="insertion", **kwargs)


def average_drop_increase(model: Any, images: Any, maps: Any, target: Any = None) -> dict:
  """Average drop and increase in confidence (Chattopadhay et al. 2018).

  With ``Y`` the target probability on the image and ``O`` on ``image * map`` (map
  min-max normalised per image to ``[0, 1]``): average drop
  ``= 100 * mean(max(0, Y - O) / Y)`` (lower is better) and increase in confidence
  ``= 100 * mean(O > Y)`` (higher is better).

  Args:
    model: a facebias_jax model.
    images: ``[B, H, W, 3]`` float model inputs.
    maps: ``[B, h, w]`` maps.
    target: ``None`` (predicted class), an int or ``[B]`` ints.

  Returns:
    dict with ``average_drop`` and ``increase_in_confidence`` (percent), per-image
    ``drop`` ``[B]`` (fraction), ``increase`` bool ``[B]``, ``prob_full``, ``prob_masked``.
  """
  images = np.asarray(compute.as_model_images(images))
  maps = render.normalize(_resized_maps(maps, len(images), images.shape[1:3]), "per_image")
  targets = compute.as_targets(target, len(images))
  probabilities = models.eval_fn(model, _probabilities)
  full, used, logits = probabilities(images, targets)
  compute.check_targets_fit(targets, logits.shape[-1])
  masked, _, _ = probabilities(images * maps[..., None], used)
  full, masked = np.asarray(full, np.float64), np.asarray(masked, np.float64)
  drop = np.maximum(0.0, full - masked) / np.maximum(full, 1e-12)
  increase = masked > full
  return {"average_drop": float(100.0 * drop.mean()),
          "increase_in_confidence": float(100.0 * increase.mean()),
          "drop": drop, "increase": increase, "prob_full": full, "prob_masked": masked}


def _maps_like_masks(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
  masks = np.asarray(masks).astype(bool)
  if masks.ndim == 2:
    masks = masks[None]
  maps = np.asarray(maps, np.float32)
  if maps.ndim == 2:
    maps = maps[None]
  if masks.ndim != 3:
    raise ValueError(f"masks must be [B, H, W] bool, got shape {masks.shape}")
  return _resized_maps(maps, len(masks), masks.shape[1:]), masks


def pointing_game(maps: Any, masks: Any, *, tolerance: int = 0) -> np.ndarray:
  """Whether each map's maximum falls inside its mask.

  Args:
    maps: ``[B, h, w]`` maps (resized to the mask size if needed).
    masks: ``[B, H, W]`` bool object masks (e.g. ``synthetic.generate(...)["mask"]``).
    tolerance: a hit also counts within this many pixels of the mask (Zhang et al.
      used 15 px at 224 px); the mask is dilated by a square of that radius.

  Returns:
    bool ``[B]`` hits (``.mean()`` is the pointing-game accuracy).
  """
  maps, masks = _maps_like_masks(maps, masks)
  if tolerance > 0:
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    masks = np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])
  flat = maps.reshape(len(maps), -1).argmax(axis=1)
  return masks.reshape(len(masks), -1)[np.arange(len(masks)), flat]


def energy_in_mask(maps: Any, masks: Any) -> np.ndarray:
  """Share of each map's positive mass inside its mask: ``sum(relu(M) * mask) / sum(relu(M))``.

  Args:
    maps: ``[B, h, w]`` maps (resized to the mask size if needed).
    masks: ``[B, H, W]`` bool masks.

  Returns:
    float64 ``[B]`` in ``[0, 1]`` (0 for a map with no positive value).
  """
  maps, masks = _maps_like_masks(maps, masks)
  positive = np.maximum(maps.astype(np.float64), 0.0)
  total = positive.reshape(len(maps), -1).sum(-1)
  inside = (positive * masks).reshape(len(maps), -1).sum(-1)
  return np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)
