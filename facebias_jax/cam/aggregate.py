"""Per-group summaries of class activation maps over aligned images.

Where does the classifier look, on average, for each demographic group? With aligned
faces (same size, roughly the same position), the pixel-wise mean map of a group and
the share of map energy on the face region compare groups directly. Group labels are
any hashable values, e.g. the strings of ``facebias_jax.data.groups.assign_groups``
(``"darker_female"``); this module does not import ``data``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import numpy as np

from facebias_jax.cam import faithfulness
from facebias_jax.cam.render import normalize


class GroupMaps(NamedTuple):
  """Mean map and image count per group (unpacks as ``means, counts``)."""
  means: dict[Hashable, np.ndarray]
  counts: dict[Hashable, int]


def _group_index(groups: Any, n: int) -> tuple[list[Hashable], np.ndarray]:
  """Sorted distinct groups and each example's position among them."""
  # Lists are taken as they are so tuple labels stay tuples; arrays are flattened.
  raw = groups if isinstance(groups, (list, tuple)) else np.asarray(groups, object).reshape(-1)
  labels = [x.item() if isinstance(x, np.generic) else x for x in raw]
  if len(labels) != n:
    raise ValueError(f"Got {n} maps but {len(labels)} group labels; give one label per map.")
  distinct = sorted(set(labels), key=lambda g: (str(type(g)), str(g)))
  position = {g: i for i, g in enumerate(distinct)}
  return distinct, np.array([position[g] for g in labels], np.int64)


def group_mean_maps(maps: Any, groups: Sequence[Hashable] | np.ndarray, *,
                    normalization: str | None = None,
                    exclude: Sequence[Hashable] = ()) -> GroupMaps:
  """Pixel-wise mean map of each group.

  Args:
    maps: ``[N, H, W]`` maps of aligned images.
    groups: ``[N]`` hashable group labels.
    normalization: ``None`` averages the raw maps; ``"per_image"`` or ``"global"``
      normalises them first (see ``cam.normalize``). Per-image normalisation weighs every
      image equally; raw or global keeps confident maps heavier.
    exclude: labels to skip, e.g. ``("unknown",)``.

  Returns:
    :class:`GroupMaps` with ``means[group]`` float32 ``[H, W]`` and ``counts[group]``,
    groups in sorted order.
  """
  maps = np.asarray(maps, np.float32)
  if maps.ndim != 3:
    raise ValueError(f"maps must be [N, H, W], got shape {maps.shape}")
  if normalization is not None:
    maps = normalize(maps, normalization)
  distinct, index = _group_index(groups, len(maps))
  means, counts = {}, {}
  for i, group in enumerate(distinct):
    if group in exclude:
      continue
    members = maps[index == i]
    means[group] = members.mean(axis=0, dtype=np.float64).astype(np.float32)
    counts[group] = int(len(members))
  return GroupMaps(means, counts)


def group_energy(maps: Any, masks: Any, groups: Sequence[Hashable] | np.ndarray, *,
                 exclude: Sequence[Hashable] = ()) -> dict[Hashable, dict[str, float]]:
  """Share of positive map energy inside a region (e.g. the face mask), per group.

  Args:
    maps: ``[N, h, w]`` maps.
    masks: ``[N, H, W]`` bool region masks.
    groups: ``[N]`` hashable group labels.
    exclude: labels to skip.

  Returns:
    group -> ``{"mean", "std" (population), "sem", "n"}`` of
    ``faithfulness.energy_in_mask`` over the group's images, groups sorted.
  """
  energy = faithfulness.energy_in_mask(maps, masks)
  distinct, index = _group_index(groups, len(energy))
  out = {}
  for i, group in enumerate(distinct):
    if group in exclude:
      continue
    values = energy[index == i]
    std = float(values.std())
    out[group] = {"mean": float(values.mean()), "std": std,
                  "sem": std / float(np.sqrt(len(values))), "n": int(len(values))}
  return out
