"""CAM export study: where does a trained model look, and does it differ between groups?

``export_cam(config, workdir)`` (``config`` = ``experiments/configs/export_cam.py``)
runs a trained run over a dataset split and writes into ``workdir``:

* ``overlays/<group>/<index>.<fmt>``: each image next to its CAM overlay, captioned
  with group, true label, prediction and probability;
* ``grids/<group>.<fmt>``: one grid of overlays per group;
* ``group_mean_cam.<fmt>`` (aligned datasets: CelebA, synthetic): the pixel-wise mean
  map per group on one colour scale, over the mean face;
* ``face_energy.md`` / ``face_energy.json`` / ``face_energy.png``: the share of CAM
  energy inside the face region per group (synthetic: the exact face mask; CelebA: an
  ellipse fitted to the 5 landmarks, :func:`landmark_face_mask`);
* ``cam_export.json``: settings and per-image predictions.

Images are chosen balanced over groups (up to ``max_images`` in all), so the rare
groups of a biased dataset are not drowned out.
"""

from __future__ import annotations

import math
import os
from typing import Any

import cv2
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from facebias_jax import cam, imaging, runs
from facebias_jax.cam import predictor as cam_predictor
from facebias_jax.data import groups as groups_lib
from facebias_jax.data import pipeline, sources
from facebias_jax.eval import report

IMAGE_FORMATS = ("png", "jpg")
UNKNOWN_GROUP = "unknown"
# Datasets whose images are aligned (same face position), where a pixel-wise mean map
# per group is meaningful.
ALIGNED_DATASETS = ("celeba", "synthetic")
# Face ellipse around the 5 CelebA landmarks, in units of the landmark geometry: the
# half-width is this multiple of the inter-ocular distance, the half-height this
# multiple of the eyes-to-mouth distance (covers brows/forehead and chin).
_ELLIPSE_WIDTH_PER_IOD = 1.05
_ELLIPSE_HEIGHT_PER_EYE_MOUTH = 1.6


# ------------------------------------------------------------------------ face regions


def landmark_face_mask(landmarks: Any, image_hw: tuple[int, int]) -> np.ndarray:
  """Face region as a filled ellipse around CelebA's 5 landmarks.

  The ellipse is centred between the eye centre and the mouth centre, rotated with the
  eye line, ``1.05 x`` the inter-ocular distance wide (half-axis) and ``1.6 x`` the
  eyes-to-mouth distance high (half-axis): it covers brows, cheeks and chin but not the
  hair or background.

  Args:
    landmarks: ``[5, 2]`` or ``[N, 5, 2]`` x,y of left eye, right eye, nose, left and
      right mouth corner, in pixels of an ``image_hw`` image.
    image_hw: ``(height, width)``.

  Returns:
    bool ``[H, W]`` (or ``[N, H, W]``).

  Raises:
    ValueError: wrong shape or missing landmarks (negative coordinates mark them).
  """
  pts = np.asarray(landmarks, np.float64)
  if pts.ndim == 3:
    return np.stack([landmark_face_mask(p, image_hw) for p in pts]) if len(pts) else \
        np.zeros((0, *image_hw), bool)
  if pts.shape != (5, 2):
    raise ValueError(f"landmarks must be [5, 2] (or [N, 5, 2]), got shape {pts.shape}")
  if (pts < 0).any():
    raise ValueError("landmarks are missing (-1): the dataset was prepared without "
                     "list_landmarks_align_celeba.txt")
  eyes = (pts[0] + pts[1]) / 2
  mouth = (pts[3] + pts[4]) / 2
  iod = float(np.linalg.norm(pts[1] - pts[0]))
  eye_mouth = float(np.linalg.norm(mouth - eyes))
  centre = (eyes + mouth) / 2
  angle = math.degrees(math.atan2(pts[1][1] - pts[0][1], pts[1][0] - pts[0][0]))
  axes = (max(1, int(round(_ELLIPSE_WIDTH_PER_IOD * iod))),
          max(1, int(round(_ELLIPSE_HEIGHT_PER_EYE_MOUTH * eye_mouth))))
  mask = np.zeros(image_hw, np.uint8)
  cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), axes, angle, 0, 360, 1, -1)
  return mask.astype(bool)


# --------------------------------------------------------------------------- selection


def select_indices(group_names: np.ndarray, *, max_images: int, group: str | None = None,
                   seed: int = 0) -> np.ndarray:
  """Example indices balanced over groups (round robin), ``unknown`` excluded.

  Args:
    group_names: ``[N]`` group name per example.
    max_images: most images in all (0 = all of the chosen groups).
    group: keep only this group.
    seed: order within each group.

  Returns:
    int64 indices, sorted.

  Raises:
    ValueError: ``group`` is not one of the dataset's groups (the message lists them).
  """
  names = np.asarray(group_names).astype(str)
  available = sorted(set(names) - {UNKNOWN_GROUP})
  if group is not None:
    if group not in set(names):
      raise ValueError(f"--config.group={group!r} is not a group of this split; groups: "
                       f"{', '.join(available)}")
    chosen = [group]
  else:
    chosen = available
  if not chosen:
    raise ValueError("no example with a known group in this split (every example is "
                     f"{UNKNOWN_GROUP!r}): check --config.groups")
  rng = np.random.default_rng(seed)
  pools = [rng.permutation(np.flatnonzero(names == g)) for g in chosen]
  total = sum(len(p) for p in pools)
  limit = total if max_images <= 0 else min(max_images, total)
  picked, depth = [], 0
  while len(picked) < limit:
    for pool in pools:
      if depth < len(pool) and len(picked) < limit:
        picked.append(pool[depth])
    depth += 1
  return np.sort(np.asarray(picked, np.int64))


# ----------------------------------------------------------------------------- helpers


def _upscale(size: int, at_least: int) -> int:
  """Integer upscaling that makes ``size`` px tiles at least ``at_least`` px (captions fit)."""
  return max(1, -(-at_least // int(size)))


def _landmarks_of(source: Any, indices: np.ndarray, image_size: int | None) -> np.ndarray:
  """``[n, 5, 2]`` landmarks of records, scaled to the batch image size."""
  out = np.empty((len(indices), 5, 2), np.float32)
  for row, index in enumerate(indices):
    record = source[int(index)]
    pts = np.asarray(record["landmarks"], np.float32).reshape(5, 2)
    stored_h, stored_w = np.asarray(record["image"]).shape[:2]
    if image_size and (pts >= 0).all():
      pts = pts * [image_size / stored_w, image_size / stored_h]
    out[row] = pts
  return out


def _has_feature(source: Any, name: str) -> bool:
  info = getattr(source, "dataset_info", None)
  features = getattr(info, "features", None)
  return features is not None and name in features


# ------------------------------------------------------------------------------ export


def _check(config: Any) -> None:
  if config.image_format not in IMAGE_FORMATS:
    raise ValueError(f"--config.image_format={config.image_format!r} is not one of "
                     f"{IMAGE_FORMATS}")
  if int(config.max_images) < 0:
    raise ValueError(f"--config.max_images must be >= 0, got {config.max_images}")
  for field in ("batch_size", "grid_size"):
    if int(config[field]) <= 0:
      raise ValueError(f"--config.{field} must be positive, got {config[field]}")
  if config.method != "auto":
    cam.methods.check_method(config.method)
  if not config.run:
    raise ValueError("No run to explain: give --run=WORKDIR (a training workdir)")


def export_cam(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True,
               builder_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
  """Writes CAM overlays, per-group grids, mean maps and face-energy statistics.

  Args:
    config: ``experiments/configs/export_cam.py``'s ConfigDict, filled in.
    workdir: output folder.
    progress: show a tqdm bar.
    builder_kwargs: extra ``tfds.builder`` arguments (e.g. a custom synthetic config),
      passed to ``sources.load_source``.

  Returns:
    Summary dict (also written as ``cam_export.json``): settings, the checkpoint
    ``step``, ``groups`` (counts), ``face_energy`` (per group, or None when the dataset
    has no face region), paths.
  """
  _check(config)
  run = runs.load_run(config.run, step=config.step)
  pick = lambda field, dotted, default=None: runs.option_or_run(config.get(field), run.config,
                                                                dotted, default)
  predict = cam_predictor.make_predictor(run.model, config.method, target=config.target)
  dataset = pick("dataset", "data.name")
  split = pick("split", "data.eval_split", "test")
  group_spec = pick("groups", "eval.groups", "skin,Male")
  image_size = int(runs.config_value(run.config, "data.image_size"))
  normalize = str(runs.config_value(run.config, "data.normalize", "unit"))
  label_key = str(pick("label_key", "data.label_key", "label"))
  aligned = config.aligned
  if aligned is None:
    aligned = any(key in str(dataset) for key in ALIGNED_DATASETS)
  names = runs.class_names(run.config)

  source = sources.load_source(dataset, split=split, data_dir=pick("data_dir", "data.data_dir"),
                               manual_dir=pick("manual_dir", "data.manual_dir"),
                               builder_kwargs=builder_kwargs)
  attributes = sources.read_attributes(source)
  group_names = groups_lib.assign_groups(attributes, group_spec,
                                         value_names=sources.value_names(source)).astype(str)
  indices = select_indices(group_names, max_images=int(config.max_images), group=config.group,
                           seed=int(config.seed))
  use_landmarks = _has_feature(source, "landmarks")
  logging.info("Exporting %s maps of %d images of %s/%s to %s", predict.method, len(indices),
               dataset, split, workdir)
  image_format, grid_size = config.image_format, int(config.grid_size)
  os.makedirs(workdir, exist_ok=True)
  all_maps, all_images, all_groups, masks, records = [], [], [], [], []
  stream = pipeline.batches(source, indices, batch_size=int(config.batch_size),
                            image_size=image_size, train=False, normalize=normalize,
                            flip=False, label_key=label_key, process_index=0, process_count=1)
  bar = tqdm(total=len(indices), desc=f"{predict.method} maps", unit="img",
             disable=not progress)
  for batch in stream:
    real = np.asarray(batch["mask"])
    predicted, probability, maps, _ = predict(batch["image"])
    images = imaging.to_uint8_images(batch["image"][real], normalize)
    maps, predicted, probability = maps[real], predicted[real], probability[real]
    index = np.asarray(batch["index"])[real]
    labels = np.asarray(batch["label"])[real]
    if "face_mask" in batch:
      masks.append(np.asarray(batch["face_mask"])[real])
    elif use_landmarks:
      pts = _landmarks_of(source, index, image_size)
      if (pts >= 0).all():
        masks.append(landmark_face_mask(pts, images.shape[1:3]))
    for i in range(len(index)):
      g = group_names[index[i]]
      truth = names[labels[i]] if 0 <= labels[i] < len(names) else str(labels[i])
      caption = cam_predictor.prediction_label(names, int(predicted[i]), float(probability[i]))
      pair = imaging.tile_grid(np.stack([images[i], cam.overlay(images[i], maps[i])]),
                               [f"true: {truth}", caption], ncols=2,
                               scale=_upscale(images.shape[1], 128))
      imaging.save_image(os.path.join(workdir, "overlays", imaging.slug(g, "group"),
                                      f"{int(index[i]):06d}.{image_format}"), pair)
      records.append({"index": int(index[i]), "group": str(g), "label": int(labels[i]),
                      "predicted": int(predicted[i]), "probability": float(probability[i])})
    all_maps.append(maps)
    all_images.append(images)
    all_groups.extend(group_names[index])
    bar.update(len(index))
  bar.close()

  maps = np.concatenate(all_maps)
  images = np.concatenate(all_images)
  groups_arr = np.asarray(all_groups)
  paths = {"overlays": os.path.join(workdir, "overlays")}
  scale = _upscale(images.shape[1], 96)
  counts = {}
  for g in sorted(set(groups_arr)):
    members = np.flatnonzero(groups_arr == g)
    counts[g] = int(len(members))
    shown = members[:grid_size]
    captions = [cam_predictor.prediction_label(names, records[j]["predicted"],
                                            records[j]["probability"]) for j in shown]
    paths.setdefault("grids", []).append(cam.save_grid(
        os.path.join(workdir, "grids", f"{imaging.slug(g, 'group')}.{image_format}"),
        images[shown], maps[shown],
        captions, scale=scale))

  if aligned:
    means, mean_counts = cam.group_mean_maps(maps, groups_arr, normalization="per_image")
    background = images.mean(axis=0).round().astype(np.uint8)
    # Top row: bare heatmaps; bottom row: the same over the mean image (one scale).
    big = _upscale(images.shape[1], 192)
    grid = np.concatenate([
        cam.group_mean_grid(means, mean_counts, scale=big, ncols=len(means)),
        cam.group_mean_grid(means, mean_counts, background=background, scale=big,
                            ncols=len(means))], axis=0)
    paths["group_mean_cam"] = imaging.save_image(
        os.path.join(workdir, f"group_mean_cam.{image_format}"), grid)

  energy = None
  region = None
  if masks and sum(len(m) for m in masks) == len(maps):
    region = "synthetic face mask" if not use_landmarks else "ellipse around the 5 landmarks"
    energy = cam.group_energy(maps, np.concatenate(masks), groups_arr)
    energy = {str(g): v for g, v in energy.items()}
    with open(os.path.join(workdir, "face_energy.md"), "w") as f:
      f.write(cam_predictor.energy_markdown(energy, method=predict.method, region=region))
    report.write_json(os.path.join(workdir, "face_energy.json"),
                      {"method": predict.method, "region": region, "groups": energy})
    paths["face_energy"] = cam_predictor.plot_energy(
        energy, os.path.join(workdir, "face_energy.png"),
        title=f"{predict.method}: share of map energy on the face ({dataset}/{split})")
  else:
    logging.info("No face region for %s (no face masks or landmarks): face-energy table "
                 "skipped", dataset)

  summary = {
      "run": config.run, "step": run.step, "dataset": dataset, "split": split,
      "method": predict.method, "group_spec": group_spec, "group": config.group,
      "target": config.target, "num_images": len(maps),
      "groups": counts, "face_region": region, "face_energy": energy, "aligned": bool(aligned),
      "class_names": list(names), "paths": paths, "images": records,
  }
  report.write_json(os.path.join(workdir, "cam_export.json"), summary)
  return summary
