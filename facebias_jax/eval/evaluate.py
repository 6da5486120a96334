"""Evaluating trained models per demographic group.

* ``predict``: positive-class probabilities of a model over pipeline batches.
* ``predict_detection``: the DB-VAE paper's full-image (PPB) protocol over batches.
* ``evaluate_predictions`` / ``evaluate_model``: groups from the attributes, then
  ``metrics.group_metrics``.
* ``run_evaluation``: what ``experiments/evaluate.py`` runs (its ConfigDict is
  ``experiments/configs/evaluate.py``): one run, or several compared side by side, on
  any dataset split, writing the reports; several runs also get paired-bootstrap
  differences against the first (``eval.paired``). Runs are loaded through ``runs``
  (read-only).

Models always run as an eval-mode copy (BatchNorm running averages, no dropout; the
DB-VAE with ``z = mu``), so evaluating mid-training never changes the caller's model.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import ml_collections
import numpy as np
from flax import nnx

from facebias_jax import imaging, models, runs
from facebias_jax.data import groups as groups_lib
from facebias_jax.data import pipeline, sources
from facebias_jax.eval import detection, metrics, paired, report

PROTOCOLS = ("classification", "detection")
# Groups smaller than this are reported but left out of the fairness summary, unless
# the run or the evaluation config says otherwise.
MIN_GROUP_SIZE = 20

def _sigmoid(x: np.ndarray) -> np.ndarray:
  return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))).astype(np.float32)


def _collect(parts: list[dict]) -> dict[str, Any]:
  """Concatenates per-batch prediction dicts (attributes nested one level)."""
  if not parts:
    raise ValueError("No batches to evaluate: the dataset split (or the index list) is empty")
  out: dict[str, Any] = {}
  for key in parts[0]:
    if key == "attributes":
      out[key] = {a: np.concatenate([p[key][a] for p in parts]) for a in parts[0][key]}
    else:
      out[key] = np.concatenate([p[key] for p in parts])
  return out


def _batch_meta(batch: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
  """The real-example mask of a batch and its label/index/attributes restricted to it."""
  n = len(batch["image"])
  mask = np.asarray(batch.get("mask", np.ones((n,), bool)), bool)
  meta = {"label": np.asarray(batch["label"], np.int32)[mask],
          "index": np.asarray(batch.get("index", np.full((n,), -1)), np.int64)[mask],
          "attributes": {k: np.asarray(v)[mask] for k, v in (batch.get("attributes") or {}).items()}}
  return mask, meta


def predict(model: nnx.Module, batches: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
  """Positive-class probabilities over batches, padding dropped.

  Args:
    model: a binary classifier or DB-VAE (1 logit: sigmoid; 2 logits: softmax[:, 1]).
    batches: pipeline batches with ``image`` [B,H,W,3], ``label``, optional ``index``,
      ``mask`` (False = padding) and ``attributes``.

  Returns:
    ``{"prob": float32 [N], "logit": float32 [N], "label": int32 [N], "index": int64 [N],
    "attributes": {name: [N]}}``.
  """
  forward = models.inference.binary_logit_fn(model)
  parts = []
  for batch in batches:
    mask, meta = _batch_meta(batch)
    logit = np.asarray(forward(np.asarray(batch["image"], np.float32)), np.float32)[mask]
    parts.append({"logit": logit, "prob": _sigmoid(logit), **meta})
  return _collect(parts)


def predict_detection(model: nnx.Module, batches: Iterable[Mapping[str, Any]], *, input_size: int,
                      scales: Sequence[float] = (1.0, 0.75, 0.5), stride_frac: float = 0.25,
                      logit_threshold: float = 0.0, windows_per_call: int = 256) -> dict[str, Any]:
  """The PPB full-image protocol over batches of full images (see ``detection.detect``).

  Returns:
    Like ``predict`` (``prob``/``logit`` from the best window) plus ``is_face`` bool [N]
    and ``best_box`` int32 [N, 4].
  """
  parts = []
  for batch in batches:
    mask, meta = _batch_meta(batch)
    images = np.asarray(batch["image"], np.float32)[mask]
    if not len(images):
      continue
    res = detection.detect(model, images, input_size=input_size, scales=scales,
                           stride_frac=stride_frac, threshold=logit_threshold,
                           batch_size=windows_per_call)
    parts.append({"logit": res["max_logit"], "prob": _sigmoid(res["max_logit"]),
                  "is_face": res["is_face"], "best_box": res["best_box"], **meta})
  return _collect(parts)


def evaluate_predictions(preds: Mapping[str, Any], *, group_spec: str | Sequence[str],
                         n_boot: int = 1000, seed: int = 0, threshold: float = 0.5,
                         undefined_rates: str = "ignore", min_group_size: int = 0,
                         value_names: Mapping[str, Sequence[str]] | None = None
                         ) -> dict[str, Any]:
  """``group_metrics`` of a ``predict``/``predict_detection`` result, groups from attributes.

  With the detection protocol the hard ``is_face`` decisions are the predictions. The
  result's ``settings`` also say how the groups were formed: ``group_spec`` and
  ``group_attributes`` (what each attribute is, ``groups.describe``).
  """
  attributes = preds.get("attributes") or {}
  if not attributes:
    raise ValueError("The batches carry no attributes, so no demographic groups can be formed; "
                     "evaluate a dataset whose records have attribute features")
  group_ids = groups_lib.assign_groups(attributes, group_spec, value_names=value_names)
  y_pred = preds["is_face"] if "is_face" in preds else preds["prob"]
  result = metrics.group_metrics(preds["label"], y_pred, group_ids, n_boot=n_boot, seed=seed,
                                 threshold=threshold, undefined_rates=undefined_rates,
                                 min_group_size=min_group_size)
  # A model that answers one class for everything (a collapse: e.g. a far too large
  # learning rate) still gets numbers here; say so plainly.
  predicted = np.unique(metrics.binarize_predictions(y_pred, threshold))
  result["settings"]["constant_prediction"] = (int(predicted[0]) if predicted.size == 1
                                               else None)
  result["settings"]["group_spec"] = ",".join(groups_lib.parse_group_spec(group_spec,
                                                                          attributes))
  result["settings"]["group_attributes"] = groups_lib.describe(group_spec, attributes)
  if "face_found" in attributes:
    correct = metrics.binarize_predictions(y_pred, threshold) == np.asarray(preds["label"])
    result["face_detection"] = face_detection_summary(attributes["face_found"], group_ids,
                                                      correct)
  return result


def face_detection_summary(face_found: Any, group_ids: Any, correct: Any) -> dict[str, Any]:
  """How often the dataset's face detector found the face, per group, and what it does to
  accuracy.

  A face the detector missed was cropped at the image centre instead (PPB ``cropped``
  configs), so a classifier's errors there are partly the detector's: the rate per
  group shows where, and ``accuracy_found`` is the accuracy on the detected faces only.

  Args:
    face_found: ``[N]`` 1 = the detector found the face, 0 = fallback crop.
    group_ids: ``[N]`` group names.
    correct: ``[N]`` bool, prediction == label.

  Returns:
    ``{"overall": row, "groups": {group: row}}``, each row ``n``, ``found``, ``rate``,
    ``rate_ci`` (Wilson 95%), ``accuracy_all``, ``accuracy_found`` (None if none found)
    and ``excluded`` (images without a detected face).
  """
  found = np.asarray(face_found) == 1
  groups_arr = np.asarray(group_ids).astype(str)
  correct = np.asarray(correct, bool)

  def row(members: np.ndarray) -> dict[str, Any]:
    n, k = int(members.sum()), int((found & members).sum())
    return {"n": n, "found": k, "excluded": n - k, "rate": k / n if n else None,
            "rate_ci": list(metrics.wilson_interval(k, n)) if n else None,
            "accuracy_all": float(correct[members].mean()) if n else None,
            "accuracy_found": float(correct[found & members].mean()) if k else None}

  return {"overall": row(np.ones(len(found), bool)),
          "groups": {g: row(groups_arr == g) for g in sorted(set(groups_arr))}}


def evaluate_model(model: nnx.Module, source: Any, *, group_spec: str | Sequence[str],
                   batch_size: int, image_size: int | None, normalize: str, n_boot: int = 1000,
                   seed: int = 0, label_key: str = "label", threshold: float = 0.5,
                   indices: Sequence[int] | None = None, protocol: str = "classification",
                   detection_options: Mapping[str, Any] | None = None,
                   undefined_rates: str = "ignore", min_group_size: int = 0) -> dict[str, Any]:
  """Per-group metrics of a model on a random-access source (e.g. ``pipeline.load_source``).

  Args:
    model: binary classifier or DB-VAE.
    source: random-access data source of records.
    group_spec: e.g. ``"skin,Male"`` (see ``data.groups``).
    batch_size: examples per batch (full images per batch for ``detection``).
    image_size: resize images to this side (the model's input size); for ``detection``
      the size full images are loaded at (``None`` keeps the stored size).
    normalize: the pipeline normalisation the model was trained with.
    n_boot, seed, threshold, undefined_rates, min_group_size: passed to
      ``group_metrics``.
    label_key: record feature used as the label.
    indices: examples to evaluate (default: all).
    protocol: ``"classification"`` or ``"detection"`` (PPB sliding windows).
    detection_options: for ``detection``: ``input_size`` (required), ``scales``,
      ``stride_frac``, ``logit_threshold``, ``windows_per_call``.

  Returns:
    The ``group_metrics`` dict (no per-example predictions).
  """
  preds = predict_source(model, source, batch_size=batch_size, image_size=image_size,
                         normalize=normalize, label_key=label_key, indices=indices,
                         protocol=protocol, detection_options=detection_options)
  return evaluate_predictions(preds, group_spec=group_spec, n_boot=n_boot, seed=seed,
                              threshold=threshold, undefined_rates=undefined_rates,
                              min_group_size=min_group_size,
                              value_names=sources.value_names(source))


def predict_source(model: nnx.Module, source: Any, *, batch_size: int, image_size: int | None,
                   normalize: str, label_key: str = "label",
                   indices: Sequence[int] | None = None, protocol: str = "classification",
                   detection_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """``predict`` (or ``predict_detection``) over a random-access source; arguments as
  in ``evaluate_model``."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"Unknown protocol {protocol!r}; use one of {PROTOCOLS}")
  indices = np.arange(len(source)) if indices is None else np.asarray(indices)
  batches = pipeline.batches(source, indices, batch_size=batch_size, image_size=image_size,
                             train=False, normalize=normalize, label_key=label_key,
                             process_index=0, process_count=1, face_masks=False)
  if protocol == "detection":
    opts = dict(detection_options or {})
    if "input_size" not in opts:
      raise ValueError("The detection protocol needs detection_options['input_size'] (the model's input side)")
    return predict_detection(model, batches, **opts)
  return predict(model, batches)


# ----------------------------------------------------------------------------- run_evaluation


def _as_list(value: Any) -> list[str]:
  if value is None or value == "":
    return []
  if isinstance(value, str):
    return [v.strip() for v in value.split(",") if v.strip()]
  return [str(v) for v in value]


def _runs(config: Any) -> list[tuple[str, str]]:
  """(label, run workdir) pairs from ``run`` / ``compare`` / ``labels``."""
  run, compare = config.get("run"), _as_list(config.get("compare"))
  if run and compare:
    raise ValueError("Give either --run=WORKDIR or --compare=WD1,WD2,..., not both")
  paths = compare or ([run] if run else [])
  if not paths:
    raise ValueError("Nothing to evaluate: give --run=WORKDIR (a training workdir) or "
                     "--compare=WD1,WD2,... (several, compared side by side)")
  labels = _as_list(config.get("labels"))
  if labels and len(labels) != len(paths):
    raise ValueError(f"--labels has {len(labels)} names but {len(paths)} runs were given")
  labels = labels or _distinct_names(paths)
  if len(set(labels)) != len(labels):
    raise ValueError(f"Run labels must be distinct, got {labels}; set --labels=a,b,...")
  for p in paths:
    if not os.path.isdir(p):
      raise FileNotFoundError(f"Run workdir {p} does not exist: train one first, e.g. "
                              f"`python -m experiments.train_classifier --flagfile=... --workdir={p}`")
  return list(zip(labels, paths))


def _distinct_names(paths: Sequence[str]) -> list[str]:
  """Shortest path suffixes that tell the runs apart (``alpha_0.1/seed_0``...)."""
  parts = [os.path.normpath(os.path.abspath(p)).split(os.sep) for p in paths]
  for depth in range(1, max(len(p) for p in parts) + 1):
    names = ["/".join(p[-depth:]) for p in parts]
    if len(set(names)) == len(names):
      return names
  return list(paths)


def _dataset_settings(config: Any, run_config: Any) -> dict[str, Any]:
  """Dataset, split, groups... for one run: the evaluation config first, then the run's."""
  pick = lambda field, dotted, default=None: runs.option_or_run(config.get(field), run_config,
                                                                dotted, default)
  return {"name": pick("dataset", "data.name"),
          "split": pick("split", "data.eval_split", "test"),
          "data_dir": pick("data_dir", "data.data_dir"),
          "manual_dir": pick("manual_dir", "data.manual_dir"),
          "label_key": pick("label_key", "data.label_key", "label"),
          "groups": pick("groups", "eval.groups", "skin,Male"),
          "normalize": runs.config_value(run_config, "data.normalize", "unit"),
          "image_size": runs.config_value(run_config, "data.image_size")}


def _check(config: Any) -> None:
  if config.protocol not in PROTOCOLS:
    raise ValueError(f"--config.protocol must be one of {PROTOCOLS}, got {config.protocol!r}")
  if config.undefined_rates not in metrics.UNDEFINED_RATES:
    raise ValueError(f"--config.undefined_rates must be one of {metrics.UNDEFINED_RATES}, got "
                     f"{config.undefined_rates!r}")
  if not 0.0 <= float(config.threshold) <= 1.0:
    raise ValueError(f"--config.threshold must be in [0, 1], got {config.threshold}")
  if int(config.n_boot) < 0:
    raise ValueError(f"--config.n_boot must be >= 0, got {config.n_boot}")
  scales = tuple(config.detection.scales)
  if not scales or not all(0.0 < float(s) <= 1.0 for s in scales):
    raise ValueError(f"--config.detection.scales must be numbers in (0, 1], got {scales}")
  if not 0.0 < float(config.detection.stride_frac) <= 1.0:
    raise ValueError(f"--config.detection.stride_frac must be in (0, 1], got "
                     f"{config.detection.stride_frac}")


def _detection_options(config: Any, ds: Mapping[str, Any], path: str) -> dict[str, Any]:
  if not ds["image_size"]:
    raise ValueError(f"The config in {path} has no data.image_size (the model's input size), "
                     "which the detection protocol resizes windows to")
  det = config.detection
  return {"input_size": int(ds["image_size"]), "scales": tuple(float(s) for s in det.scales),
          "stride_frac": float(det.stride_frac), "logit_threshold": float(det.logit_threshold),
          "windows_per_call": int(det.windows_per_call)}


def _out_dir(config: Any, workdir: str | None, label: str, path: str, run_config: Any,
             ds: Mapping[str, Any], several: bool) -> str:
  """Where one run's report goes (see ``run_evaluation``)."""
  if several:
    return os.path.join(workdir, imaging.slug(label))
  if workdir:
    return workdir
  configured = (runs.config_value(run_config, "data.name"),
                runs.config_value(run_config, "data.eval_split", "test"))
  if (ds["name"], ds["split"]) == configured and config.protocol == "classification":
    return path
  return os.path.join(path, f"eval_{imaging.slug(ds['name'])}_{imaging.slug(ds['split'])}_"
                            f"{config.protocol}")


def _paired(config: Any, evaluated: Mapping[str, tuple]) -> dict[str, Any]:
  """Paired-bootstrap differences of every run against the first one, on the images
  both were evaluated on (``paired.paired_differences``); runs evaluated on another
  dataset, split, label or grouping than the first are left out, with the reason."""
  labels = list(evaluated)
  base_key, base, min_group_size, value_names = evaluated[labels[0]]
  out: dict[str, Any] = {"reference": labels[0], "runs": {}, "skipped": {}}
  if int(config.n_boot) <= 0:
    out["skipped"] = {l: "config.n_boot=0 (no bootstrap)" for l in labels[1:]}
    return out
  y_pred = lambda p: p["is_face"] if "is_face" in p else p["prob"]
  groups = groups_lib.assign_groups(base["attributes"], base_key[4], value_names=value_names)
  for label in labels[1:]:
    key, preds, _, _ = evaluated[label]
    if key != base_key or not np.array_equal(preds["index"], base["index"]):
      out["skipped"][label] = (f"evaluated on {key[0]}:{key[1]} (label {key[5]}, groups "
                               f"{key[4]}), the reference on {base_key[0]}:{base_key[1]} "
                               f"(label {base_key[5]}, groups {base_key[4]})")
      continue
    out["runs"][label] = paired.paired_differences(
        base["label"], y_pred(base), y_pred(preds), groups, n_boot=int(config.n_boot),
        seed=int(config.seed), threshold=float(config.threshold),
        undefined_rates=config.undefined_rates, min_group_size=min_group_size)
  return out


def run_evaluation(config: ml_collections.ConfigDict, workdir: str | None = None) -> dict[str, Any]:
  """Evaluates one or several runs and writes their reports.

  Args:
    config: ``experiments/configs/evaluate.py``'s ConfigDict, filled in.
    workdir: output folder. One run: defaults to the run's workdir when the dataset is
      the one it was configured with, else ``<run>/eval_<dataset>_<split>_<protocol>``.
      Several (``compare``): required; each report goes to ``workdir/<label>/`` and the
      comparison (``comparison.{md,csv,json,png}``) into ``workdir``.

  Returns:
    ``{"reports": {label: report dict}, "comparison": summary or None, "workdir": path}``.

  Raises:
    ValueError: bad config values; FileNotFoundError: a missing run workdir.
  """
  _check(config)
  pairs = _runs(config)
  several = len(pairs) > 1
  if several and not workdir:
    raise ValueError("Comparing several runs needs --workdir for the comparison report")
  loaded_sources: dict[tuple, Any] = {}
  reports = {}
  evaluated: dict[str, tuple] = {}
  for label, path in pairs:
    run = runs.load_run(path, step=config.get("step"))
    ds = _dataset_settings(config, run.config)
    if not ds["name"]:
      raise ValueError(f"No dataset: the config in {path} has no data.name; pass "
                       "--config.dataset=NAME")
    key = (ds["name"], ds["split"], ds["data_dir"], ds["manual_dir"])
    if key not in loaded_sources:
      loaded_sources[key] = sources.load_source(ds["name"], split=ds["split"],
                                                data_dir=ds["data_dir"],
                                                manual_dir=ds["manual_dir"])
    batch_size = int(config.get("batch_size") or runs.config_value(run.config, "eval.batch_size")
                     or runs.config_value(run.config, "train.batch_size", 128))
    detection_options, image_size = None, ds["image_size"]
    if config.protocol == "detection":
      detection_options = _detection_options(config, ds, path)
      image_size = config.detection.image_size  # Full images: stored size unless given.
    preds = predict_source(run.model, loaded_sources[key], batch_size=batch_size,
                           image_size=image_size, normalize=ds["normalize"],
                           label_key=ds["label_key"], protocol=config.protocol,
                           detection_options=detection_options)
    min_group_size = int(runs.option_or_run(config.get("min_group_size"), run.config,
                                            "eval.min_group_size", MIN_GROUP_SIZE))
    result = evaluate_predictions(
        preds, group_spec=ds["groups"], n_boot=int(config.n_boot), seed=int(config.seed),
        threshold=float(config.threshold), undefined_rates=config.undefined_rates,
        min_group_size=min_group_size, value_names=sources.value_names(loaded_sources[key]))
    evaluated[label] = (key + (ds["groups"], ds["label_key"]), preds, min_group_size,
                        sources.value_names(loaded_sources[key]))
    dataset = {"name": ds["name"], "split": ds["split"],
               "num_examples": int(result["overall"]["n"]), "groups": ds["groups"],
               "label_key": ds["label_key"], "protocol": config.protocol}
    if detection_options:
      dataset["detection"] = {k: v for k, v in detection_options.items()
                              if k != "windows_per_call"}
    model_info = {"name": runs.config_value(run.config, "model.name"), "label": label,
                  "workdir": path, "step": run.step}
    reports[label] = report.write_report(
        _out_dir(config, workdir, label, path, run.config, ds, several), metrics=result,
        dataset=dataset, model=model_info, config=run.config,
        extra={"evaluation": runs.config_to_dict(config)},
        title=f"{label} ({model_info['name']}) on {ds['name']}:{ds['split']}")
  comparison = (report.compare_runs(reports, workdir, paired=_paired(config, evaluated))
                if several else None)
  first = reports[pairs[0][0]]["files"]["json"]
  return {"reports": reports, "comparison": comparison,
          "workdir": workdir or os.path.dirname(first)}
