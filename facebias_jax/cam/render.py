"""Drawing class activation maps: scaling to [0, 1], colour heatmaps, overlays, grids, files.

Images are RGB ``uint8`` (library convention); OpenCV's BGR order stays inside the
colormap call. Grids use :func:`facebias_jax.imaging.tile_grid` and files
:func:`facebias_jax.imaging.save_image`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from facebias_jax import imaging


def normalization_range(maps: Any, *, percentile: float | None = None) -> tuple[float, float]:
  """Shared ``(low, high)`` of a set of maps: min/max, or symmetric percentiles.

  Args:
    maps: any array of map values.
    percentile: e.g. ``99`` uses the 1st and 99th percentiles (robust to hot pixels).

  Returns:
    ``(low, high)`` floats.
  """
  values = np.asarray(maps, np.float64)
  if values.size == 0:
    raise ValueError("normalization_range got no map values")
  if percentile is None:
    return float(values.min()), float(values.max())
  if not 50.0 < percentile <= 100.0:
    raise ValueError(f"percentile must be in (50, 100], got {percentile}")
  return (float(np.percentile(values, 100.0 - percentile)),
          float(np.percentile(values, percentile)))


def normalize(maps: Any, mode: str = "per_image", *, percentile: float | None = None,
              value_range: tuple[float, float] | None = None) -> np.ndarray:
  """Scales maps to ``[0, 1]`` per image or with one range over the whole set.

  ``per_image`` shows where each image's map is high; ``global`` keeps magnitudes
  comparable across images and groups (pass ``value_range`` to reuse a range computed
  on another set, e.g. all groups together). Constant maps become all zeros.

  Args:
    maps: ``[H, W]`` or ``[B, H, W]`` maps.
    mode: ``"per_image"`` or ``"global"``.
    percentile: robust range (see :func:`normalization_range`); values outside are
      clipped.
    value_range: explicit ``(low, high)`` for ``mode="global"``.

  Returns:
    float32 maps of the input shape, in ``[0, 1]``.
  """
  arr = np.asarray(maps, np.float32)
  if arr.ndim not in (2, 3):
    raise ValueError(f"normalize expects [H, W] or [B, H, W] maps, got shape {arr.shape}")
  batched = arr if arr.ndim == 3 else arr[None]
  if mode == "per_image":
    if value_range is not None:
      raise ValueError("value_range applies to mode='global' only")
    ranges = [normalization_range(m, percentile=percentile) for m in batched]
    lo = np.array([r[0] for r in ranges], np.float32)[:, None, None]
    hi = np.array([r[1] for r in ranges], np.float32)[:, None, None]
  elif mode == "global":
    low, high = value_range or normalization_range(batched, percentile=percentile)
    lo, hi = np.float32(low), np.float32(high)
  else:
    raise ValueError(f"Unknown normalisation mode {mode!r}; use 'per_image' or 'global'")
  span = hi - lo
  safe = np.where(span > 0, span, 1.0)
  out = np.where(span > 0, np.clip((batched - lo) / safe, 0.0, 1.0), 0.0).astype(np.float32)
  return out if arr.ndim == 3 else out[0]


def as_uint8_image(image: Any) -> np.ndarray:
  """RGB uint8 ``[H, W, 3]`` from uint8, grey ``[H, W]``, or floats in ``[0, 1]``."""
  arr = np.asarray(image)
  if arr.ndim == 2:
    arr = np.repeat(arr[..., None], 3, axis=-1)
  if arr.ndim != 3 or arr.shape[-1] != 3:
    raise ValueError(f"Expected an RGB image [H, W, 3] (or grey [H, W]), got shape {arr.shape}")
  if arr.dtype == np.uint8:
    return arr
  if np.issubdtype(arr.dtype, np.floating) and arr.min() >= 0.0 and arr.max() <= 1.0:
    return np.round(arr * 255.0).astype(np.uint8)
  raise ValueError(f"Expected uint8 pixels or floats in [0, 1], got {arr.dtype} in "
                   f"[{arr.min()}, {arr.max()}]: undo the model's input normalisation first.")


def _unit_map(cam: Any, size_hw: tuple[int, int] | None, per_image: bool) -> np.ndarray:
  """A single map resized to ``size_hw`` and scaled to ``[0, 1]``."""
  m = np.asarray(cam, np.float32)
  if m.ndim != 2:
    raise ValueError(f"Expected one map [H, W], got shape {m.shape}")
  if size_hw is not None and m.shape != tuple(size_hw):
    m = cv2.resize(m, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)
  if per_image:
    return normalize(m, "per_image")
  if not np.isfinite(m).all() or m.min() < 0.0 or m.max() > 1.0:
    raise ValueError(f"normalize=False needs map values in [0, 1], got [{m.min()}, {m.max()}]; "
                     "use normalize=True or cam.normalize(maps, 'global') first.")
  return m


def heatmap(cam: Any, *, size_hw: tuple[int, int] | None = None,
            colormap: int = cv2.COLORMAP_JET, normalize: bool = True) -> np.ndarray:
  """Colours one map (JET by default) as an RGB uint8 image.

  Args:
    cam: ``[h, w]`` map.
    size_hw: output size (bilinear resize); ``None`` keeps the map's size.
    colormap: an OpenCV colormap id.
    normalize: per-map min-max to ``[0, 1]``; ``False`` requires values in ``[0, 1]``.

  Returns:
    ``[H, W, 3]`` uint8 RGB.
  """
  m = _unit_map(cam, size_hw, normalize)
  bgr = cv2.applyColorMap(np.round(m * 255.0).astype(np.uint8), colormap)
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image_uint8: Any, cam: Any, *, alpha: float = 0.5,
            colormap: int = cv2.COLORMAP_JET, normalize: bool = True) -> np.ndarray:
  """Blends a coloured map over an image: ``(1 - alpha) * image + alpha * heatmap``.

  Args:
    image_uint8: ``[H, W, 3]`` RGB uint8 (floats in ``[0, 1]`` are accepted).
    cam: ``[h, w]`` map; resized bilinearly to ``H x W`` if needed.
    alpha: heatmap weight in ``[0, 1]``.
    colormap: OpenCV colormap id (JET: red = high).
    normalize: per-map min-max; ``False`` uses values already in ``[0, 1]`` (e.g. from
      ``normalize(maps, "global")`` so several overlays share one scale).

  Returns:
    ``[H, W, 3]`` uint8 RGB.
  """
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1], got {alpha}")
  image = as_uint8_image(image_uint8)
  heat = heatmap(cam, size_hw=image.shape[:2], colormap=colormap, normalize=normalize)
  blended = (1.0 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32)
  return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def overlay_batch(images: Any, cams: Any, **kwargs) -> np.ndarray:
  """:func:`overlay` for ``[B, H, W, 3]`` images and ``[B, h, w]`` maps -> ``[B, H, W, 3]``."""
  images, cams = np.asarray(images), np.asarray(cams)
  if len(images) != len(cams):
    raise ValueError(f"overlay_batch got {len(images)} images but {len(cams)} maps")
  return np.stack([overlay(img, cam, **kwargs) for img, cam in zip(images, cams)])


def cam_grid(images: Any, cams: Any, labels: Sequence[str] | None = None, *,
             with_originals: bool = False, ncols: int | None = None, scale: int = 1,
             **overlay_kwargs) -> np.ndarray:
  """A labelled grid of overlays (optionally each preceded by its original image).

  Args:
    images: ``[B, H, W, 3]`` images.
    cams: ``[B, h, w]`` maps.
    labels: caption per image (e.g. group and probability).
    with_originals: put the plain image left of each overlay.
    ncols: grid columns (default: square-ish; doubled with originals).
    scale: integer upscaling of small tiles.
    **overlay_kwargs: passed to :func:`overlay`.

  Returns:
    uint8 RGB grid.
  """
  overlays = overlay_batch(images, cams, **overlay_kwargs)
  if not with_originals:
    return imaging.tile_grid(overlays, labels, ncols=ncols, scale=scale)
  originals = np.stack([as_uint8_image(img) for img in np.asarray(images)])
  tiles = np.stack([t for pair in zip(originals, overlays) for t in pair])
  tile_labels = None
  if labels is not None:
    tile_labels = [t for label in labels for t in (str(label), "CAM")]
  if ncols is None:
    ncols = 2 * int(np.ceil(np.sqrt(len(overlays))))
  return imaging.tile_grid(tiles, tile_labels, ncols=ncols, scale=scale)


def group_mean_grid(means: Mapping[Any, np.ndarray], counts: Mapping[Any, int] | None = None,
                    *, background: Any = None, shared_scale: bool = True, alpha: float = 0.5,
                    ncols: int | None = None, scale: int = 1,
                    colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
  """One tile per group mean map, captioned ``"<group> (n=<count>)"``.

  Args:
    means: group -> ``[H, W]`` mean map (``aggregate.group_mean_maps``).
    counts: group -> number of images, for the captions.
    background: optional ``[H, W, 3]`` image (e.g. the mean face) to overlay on;
      ``None`` draws the bare heatmaps.
    shared_scale: one colour scale for all groups (so tiles compare); ``False``
      stretches each tile to its own min-max.
    alpha: heatmap weight when ``background`` is given.
    ncols: grid columns.
    scale: integer upscaling of the tiles.
    colormap: OpenCV colormap id.

  Returns:
    uint8 RGB grid.
  """
  if not means:
    raise ValueError("group_mean_grid got no groups")
  keys = list(means)
  stack = np.stack([np.asarray(means[k], np.float32) for k in keys])
  if shared_scale:
    stack = normalize(stack, "global", value_range=normalization_range(stack))
  else:
    stack = normalize(stack, "per_image")
  if background is None:
    tiles = np.stack([heatmap(m, colormap=colormap, normalize=False) for m in stack])
  else:
    tiles = np.stack([overlay(background, m, alpha=alpha, colormap=colormap, normalize=False)
                      for m in stack])
  labels = [f"{k} (n={counts[k]})" if counts is not None and k in counts else str(k)
            for k in keys]
  return imaging.tile_grid(tiles, labels, ncols=ncols, scale=scale)


def save_overlays(directory: str, images: Any, cams: Any, names: Sequence[str] | None = None,
                  *, ext: str = "png", **overlay_kwargs) -> list[str]:
  """Writes one overlay file per image; returns the paths.

  Args:
    directory: output folder (created).
    images: ``[B, H, W, 3]`` images.
    cams: ``[B, h, w]`` maps.
    names: file stems (default ``cam_00000``...).
    ext: ``"png"`` or ``"jpg"``.
    **overlay_kwargs: passed to :func:`overlay`.

  Returns:
    The written paths.
  """
  overlays = overlay_batch(images, cams, **overlay_kwargs)
  if names is None:
    names = [f"cam_{i:05d}" for i in range(len(overlays))]
  if len(names) != len(overlays):
    raise ValueError(f"save_overlays got {len(overlays)} images but {len(names)} names")
  return [imaging.save_image(os.path.join(directory, f"{name}.{ext.lstrip('.')}"), ov)
          for name, ov in zip(names, overlays)]


def save_grid(path: str, images: Any, cams: Any, labels: Sequence[str] | None = None,
              **grid_kwargs) -> str:
  """Writes :func:`cam_grid` to ``path`` (PNG/JPG); returns the path."""
  return imaging.save_image(path, cam_grid(images, cams, labels, **grid_kwargs))
