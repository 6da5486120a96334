"""Class Activation Maps and the Grad-CAM family as pure functions, rendering, faithfulness.

Typical use::

  import facebias_jax.cam as cam
  maps = cam.compute(model, images, method="gradcam")   # float32 [B, H, W], raw
  shown = cam.overlay(image_uint8, maps[0])               # uint8 RGB, JET colormap
  unit = cam.normalize(maps, "global")                    # one scale for all images
"""

from facebias_jax.cam import aggregate, faithfulness, methods, predictor, render
from facebias_jax.cam.aggregate import GroupMaps, group_energy, group_mean_maps
from facebias_jax.cam.compute import compute, compute_fn
from facebias_jax.cam.methods import METHODS
from facebias_jax.cam.render import (cam_grid, group_mean_grid, heatmap, normalization_range,
                                     normalize, overlay, overlay_batch, save_grid, save_overlays)

__all__ = [
    "METHODS", "GroupMaps", "aggregate", "cam_grid", "compute", "compute_fn", "faithfulness",
    "group_energy", "group_mean_grid", "group_mean_maps", "heatmap", "methods",
    "normalization_range", "normalize", "overlay", "overlay_batch", "predictor", "render",
    "save_grid", "save_overlays",
]
