"""Predictions and class activation maps of a trained run on any images.

``run_prediction(config, workdir)`` (``config`` = ``experiments/configs/predict.py``)
takes one input -- a folder of images (recursive), a video, or a prepared dataset
split -- with or without labels, and writes into ``workdir``:

* ``predictions.csv`` / ``predictions.json``: one row per image (or per detected face
  with ``detect_faces``): the file name (a video's rows are ``clip.mp4#000012``, a
  split's ``test/000042`` or its ``filename`` feature), the face index and box, the
  probability of every class, the predicted class, and label, group and correctness
  when they are known;
* ``overlays/<file name>[_face<k>].<fmt>``: the crop next to its CAM overlay (``a.jpg``
  -> ``a.jpg.png``);
* ``grid.<fmt>``: the first ``grid_size`` overlays in one picture;
* ``probability_by_group.png``: a histogram of the probability of ``hist_class`` per
  group (one group, ``all``, when none are known);
* ``predict.json``: settings, counts, per-group summaries, and the files that could
  not be read (skipped, never fatal).

Each image is prepared as the model was trained: its centre square (or, with
``detect_faces``, each face box grown by ``margin`` and squared), resized to the
model's input size. Crops are classified in fixed-size batches (the last one padded),
so the predictor compiles once.

Labels for a folder come from a CSV (``labels``): a ``file`` column (path relative to
the folder) and optionally ``label`` (class name or index) and ``group``. The readers
of the three inputs are in ``facebias_jax.eval.predict_inputs``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np
from tqdm import tqdm

from facebias_jax import cam, faces, imaging, runs
from facebias_jax.cam import predictor as cam_predictor
from facebias_jax.data import groups as groups_lib
from facebias_jax.data import sources
from facebias_jax.eval import report
from facebias_jax.eval.predict_inputs import (Inputs, folder_inputs, read_labels,
                                              split_inputs, video_inputs)

IMAGE_FORMATS = ("png", "jpg")
ALL = "all"


# --------------------------------------------------------------------------- regions


def face_regions(image_rgb: np.ndarray, *, detect: bool, detector: str, margin: float,
                 max_faces: int, min_face_size: int, max_side: int | None = None,
                 upsample: int | None = None) -> list[tuple[tuple | None, tuple]]:
  """``(face box or None, crop box)`` pairs of an image, boxes as ``(x0, y0, x1, y1)``.

  Without ``detect``: one pair, no face box and the centre square. With it: each face
  found (largest first), its crop the box squared and grown by ``margin`` per side
  (``faces.square_around``; a crop leaving the image is padded black). An image with no
  face found gives no pair.
  """
  if not detect:
    return [(None, imaging.center_square_box(*image_rgb.shape[:2]))]
  boxes = faces.detect_faces(np.ascontiguousarray(image_rgb[..., ::-1]), detector=detector,
                             max_faces=max_faces, min_size=(min_face_size, min_face_size),
                             max_side=max_side, upsample=upsample)
  pairs = []
  for x, y, w, h in boxes:
    box = (x, y, x + w, y + h)
    pairs.append((box, faces.square_around(box, margin)))
  return pairs


# ------------------------------------------------------------------------ prediction


def _check(config: Any) -> None:
  given = [k for k in ("images", "video") if config.get(k)]
  if len(given) > 1:
    raise ValueError("give one input: --config.images=FOLDER, --config.video=PATH, or "
                     "neither for a dataset split (--config.dataset/--config.split)")
  if not config.run:
    raise ValueError("No run to predict with: give --run=WORKDIR (a training workdir)")
  if config.image_format not in IMAGE_FORMATS:
    raise ValueError(f"--config.image_format={config.image_format!r} is not one of "
                     f"{IMAGE_FORMATS}")
  for field in ("batch_size", "every_nth_frame", "max_faces", "min_face_size"):
    if int(config[field]) <= 0:
      raise ValueError(f"--config.{field} must be positive, got {config[field]}")
  for field in ("max_images", "max_overlays", "grid_size"):
    if int(config[field]) < 0:
      raise ValueError(f"--config.{field} must be >= 0, got {config[field]}")
  if not 0.0 <= float(config.margin) <= 2.0:
    raise ValueError(f"--config.margin must be in [0, 2], got {config.margin}")
  faces.check_detector(config.detector, flag="--config.detector")
  if config.method != "auto":
    cam.methods.check_method(config.method)
  if config.labels and not config.images:
    raise ValueError("--config.labels (a CSV of file,label,group) applies to "
                     "--config.images only; a dataset split brings its own labels")
  if config.max_side is not None and config.max_side < 24:
    raise ValueError(f"--config.max_side must be >= 24 (or unset), got {config.max_side}")
  if config.upsample is not None and config.upsample < 0:
    raise ValueError(f"--config.upsample must be >= 0 (or unset), got {config.upsample}")


def _check_classes(config: Any, names: Sequence[str]) -> None:
  for field in ("hist_class", "target"):
    value = config.get(field)
    if value is not None and not 0 <= int(value) < len(names):
      raise ValueError(f"--config.{field}={value} is not a class of this run (0-"
                       f"{len(names) - 1}: {', '.join(names)})")


def _inputs(config: Any, run: runs.Run, names: Sequence[str]) -> tuple[Inputs, dict[str, Any]]:
  """The input of the config and a description of it for ``predict.json``."""
  if config.images:
    labels = read_labels(config.labels, names) if config.labels else None
    inputs = folder_inputs(config.images, labels)
    return inputs, {"kind": "folder", "path": config.images, "labels": config.labels,
                    "labels_without_image": inputs.labels_without_image}
  if config.video:
    return (video_inputs(config.video, every=int(config.every_nth_frame),
                         max_frames=int(config.max_images)),
            {"kind": "video", "path": config.video, "every_nth_frame": config.every_nth_frame})
  pick = lambda field, dotted, default=None: runs.option_or_run(config.get(field), run.config,
                                                                dotted, default)
  dataset, split = pick("dataset", "data.name"), pick("split", "data.eval_split", "test")
  source = sources.load_source(dataset, split=split, data_dir=pick("data_dir", "data.data_dir"),
                               manual_dir=pick("manual_dir", "data.manual_dir"))
  label_key = str(pick("label_key", "data.label_key", "label"))
  group_spec = pick("groups", "eval.groups", None)
  group_names = None
  if group_spec:
    group_names = groups_lib.assign_groups(sources.read_attributes(source), group_spec,
                                           value_names=sources.value_names(source)).astype(str)
  return (split_inputs(source, split=split, label_key=label_key, group_names=group_names,
                       max_images=int(config.max_images)),
          {"kind": "split", "dataset": dataset, "split": split, "groups": group_spec})


class _Batcher:
  """Collects crops and classifies them in fixed-size batches (one compilation)."""

  def __init__(self, predict, batch_size: int, normalize: str):
    self.predict, self.batch_size, self.normalize = predict, batch_size, normalize
    self.crops: list[np.ndarray] = []
    self.meta: list[dict[str, Any]] = []

  def add(self, crop: np.ndarray, meta: dict[str, Any]) -> list[tuple]:
    self.crops.append(crop)
    self.meta.append(meta)
    return self.flush() if len(self.crops) == self.batch_size else []

  def flush(self) -> list[tuple]:
    """``(meta, crop, probabilities [C], predicted, map)`` of every collected crop."""
    if not self.crops:
      return []
    n = len(self.crops)
    _, _, maps, probs = cam_predictor.predict_in_batches(
        self.predict, np.stack(self.crops), batch_size=self.batch_size, normalize=self.normalize)
    # The prediction is the most probable class; the map is of config.target when set.
    out = [(self.meta[i], self.crops[i], probs[i], int(np.argmax(probs[i])), maps[i])
           for i in range(n)]
    self.crops, self.meta = [], []
    return out


def _row(meta: Mapping[str, Any], probs: np.ndarray, predicted: int,
         names: Sequence[str]) -> dict[str, Any]:
  row = dict(meta)
  for k, name in enumerate(names[:len(probs)]):
    row[f"p_{imaging.slug(name, f'class{k}')}"] = float(probs[k])
  row["predicted"] = predicted
  row["predicted_name"] = names[predicted] if predicted < len(names) else str(predicted)
  row["probability"] = float(probs[predicted])
  label = row.get("label")
  row["correct"] = None if label is None else bool(label == predicted)
  return row


def group_summary(rows: Sequence[Mapping[str, Any]], *, prob_key: str,
                  names: Sequence[str]) -> dict[str, dict[str, Any]]:
  """Per group (``all`` first): n, mean/std/quartiles of ``prob_key``, the share predicted
  as each class, and accuracy where labels are known."""
  by_group: dict[str, list] = {ALL: list(rows)}
  for r in rows:
    if r.get("group") is not None:
      by_group.setdefault(str(r["group"]), []).append(r)
  out = {}
  for group, members in by_group.items():
    p = np.array([r[prob_key] for r in members], np.float64)
    predicted = np.array([r["predicted"] for r in members])
    labelled = [r["correct"] for r in members if r["correct"] is not None]
    out[group] = {
        "n": len(members), "mean": float(p.mean()) if len(p) else None,
        "std": float(p.std()) if len(p) else None,
        "quartiles": np.percentile(p, [25, 50, 75]).tolist() if len(p) else None,
        "share_predicted": {name: float((predicted == k).mean()) if len(p) else None
                            for k, name in enumerate(names)},
        "accuracy": float(np.mean(labelled)) if labelled else None,
        "n_labelled": len(labelled)}
  return out


def plot_probability_histogram(rows: Sequence[Mapping[str, Any]], path: str, *, prob_key: str,
                               title: str) -> str:
  """Histogram of ``prob_key`` per group (``all`` when no group is known)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  groups = sorted({str(r["group"]) for r in rows if r.get("group") is not None}) or [ALL]
  fig = Figure(figsize=(6.4, 3.8), tight_layout=True)
  ax = fig.add_subplot()
  bins = np.linspace(0.0, 1.0, 21)
  for g in groups:
    values = [r[prob_key] for r in rows if g == ALL or str(r.get("group")) == g]
    ax.hist(values, bins=bins, histtype="step", linewidth=1.6, density=True,
            label=f"{g} (n={len(values)})")
  ax.set_xlabel(prob_key.replace("p_", "P(") + ")")
  ax.set_ylabel("density")
  ax.set_xlim(0, 1)
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  return path


def _overlay_name(name: str, face: int, detect: bool, fmt: str) -> str:
  """``a.jpg`` -> ``a.jpg.png`` (``a.png`` stays apart), ``clip.avi#000012`` ->
  ``clip.avi_000012.png``; ``_face<k>`` with detection."""
  return f"{name.replace('#', '_')}{f'_face{face}' if detect else ''}.{fmt}"


def run_prediction(config: ml_collections.ConfigDict, workdir: str, *,
                   progress: bool = True) -> dict[str, Any]:
  """Predicts every image (or face) of the input; see the module docstring.

  Returns:
    The ``predict.json`` summary: settings, ``num_images``, ``num_predictions``,
    ``no_face`` (images where detection found nothing), ``skipped``, ``groups``
    (:func:`group_summary`) and paths; the rows are in ``predictions.json``.
  """
  config = config.copy_and_resolve_references()
  for field in ("images", "video", "labels"):  # "--images=~/photos": the shell leaves ~.
    if config.get(field):
      config[field] = os.path.expanduser(config[field])
  _check(config)
  run = runs.load_run(config.run, step=config.step)
  names = list(runs.class_names(run.config))
  _check_classes(config, names)
  image_size = int(runs.config_value(run.config, "data.image_size"))
  normalize = str(runs.config_value(run.config, "data.normalize", "unit"))
  predict = cam_predictor.make_predictor(run.model, config.method, target=config.target)
  inputs, described = _inputs(config, run, names)
  detect, fmt = bool(config.detect_faces), config.image_format
  batcher = _Batcher(predict, int(config.batch_size), normalize)
  rows, tiles, captions, no_face = [], [], [], []
  num_images = 0
  os.makedirs(workdir, exist_ok=True)

  def consume(done: list[tuple]) -> None:
    for meta, crop, probs, predicted, cam_map in done:
      row = _row(meta, probs, predicted, names)
      caption = cam_predictor.prediction_label(names, predicted, row["probability"])
      if len(rows) < int(config.max_overlays):
        pair = imaging.tile_grid(np.stack([crop, cam.overlay(crop, cam_map)]),
                                 [row["name"], caption], ncols=2,
                                 scale=max(1, -(-128 // image_size)))
        row["overlay"] = os.path.join("overlays", _overlay_name(row["name"], row["face"],
                                                                 detect, fmt))
        imaging.save_image(os.path.join(workdir, row["overlay"]), pair)
      if len(tiles) < int(config.grid_size):
        tiles.append((crop, cam_map))
        captions.append(caption)
      rows.append(row)

  bar = tqdm(total=inputs.total, desc="predict", unit="img", disable=not progress)
  for item in inputs.items:
    num_images += 1
    pairs = face_regions(item.image, detect=detect, detector=config.detector,
                         margin=float(config.margin), max_faces=int(config.max_faces),
                         min_face_size=int(config.min_face_size), max_side=config.max_side,
                         upsample=config.upsample)
    if not pairs:
      no_face.append(item.name)
    for face, (box, crop_box) in enumerate(pairs):
      meta = {"name": item.name, "face": face if detect else -1,
              "box": list(box) if box is not None else None, "label": item.label,
              "label_name": names[item.label] if item.label is not None else None,
              "group": item.group}
      consume(batcher.add(imaging.crop_resize(item.image, crop_box, image_size), meta))
    bar.update(1)
    if config.max_images and described["kind"] == "folder" and num_images >= config.max_images:
      break
  consume(batcher.flush())
  bar.close()
  if not rows:
    raise ValueError(f"No prediction was made: {num_images} image(s) read, "
                     f"{len(inputs.skipped)} skipped, {len(no_face)} without a detected face"
                     + (" (try --config.detect_faces=False or another --config.detector)"
                        if detect else ""))

  prob_key = f"p_{imaging.slug(names[int(config.hist_class)], 'class')}"
  paths = {"predictions_csv": os.path.join(workdir, "predictions.csv"),
           "predictions_json": os.path.join(workdir, "predictions.json")}
  columns = list(dict.fromkeys(k for r in rows for k in r))
  with open(paths["predictions_csv"], "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
      writer.writerow({k: ("" if r.get(k) is None else
                           " ".join(map(str, r[k])) if isinstance(r.get(k), list) else r[k])
                       for k in columns})
  report.write_json(paths["predictions_json"], rows)
  paths["grid"] = cam.save_grid(
      os.path.join(workdir, f"grid.{fmt}"), np.stack([t[0] for t in tiles]),
      np.stack([t[1] for t in tiles]), captions,
      scale=max(1, -(-96 // image_size))) if tiles else None
  paths["histogram"] = plot_probability_histogram(
      rows, os.path.join(workdir, "probability_by_group.png"), prob_key=prob_key,
      title=f"{prob_key} of {os.path.basename(os.path.normpath(config.run))} on "
            f"{described.get('path') or described.get('dataset')}")
  summary = {"run": config.run, "step": run.step, "input": described,
             "method": predict.method, "detect_faces": detect,
             "detector": config.detector if detect else None, "class_names": names,
             "num_images": num_images, "num_predictions": len(rows), "no_face": no_face,
             "skipped": [{"file": n, "reason": why} for n, why in inputs.skipped],
             "histogram_of": prob_key,
             "groups": group_summary(rows, prob_key=prob_key, names=names), "paths": paths}
  report.write_json(os.path.join(workdir, "predict.json"), summary)
  return summary
