"""Evaluating trained models per demographic group.

* ``predict``: positive-class probabilities of a model over pipeline batches.
* ``predict_detection``: the DB-VAE paper's full-image (PPB) protocol over batches.
* ``evaluate_predictions`` / ``evaluate_model``: groups from the attributes, then
  ``metrics.group_metrics``.
* ``run_evaluation``: what ``experiments/evaluate.py`` runs: one checkpoint, or several
  compared side by side, on any dataset split, writing the reports.

Models always run as an eval-mode copy (BatchNorm running averages, no dropout; the
DB-VAE with ``z = mu``), so evaluating mid-training never changes the caller's model.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from facebias_jax.data import groups as groups_lib
from facebias_jax.eval import detection, metrics, report

PROTOCOLS = ("classification", "detection")


def _forward_fn(model: nnx.Module):
  """A jit-compiled ``images -> positive-class logit [B]`` of an eval-mode copy."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def forward(state, images):
    return detection.binary_logit(detection.model_logits(detection.eval_copy(graphdef, state), images))

  return lambda images: forward(state, images)


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
  forward = _forward_fn(model)
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
                         undefined_rates: str = "ignore") -> dict[str, Any]:
  """``group_metrics`` of a ``predict``/``predict_detection`` result, groups from attributes.

  With the detection protocol the hard ``is_face`` decisions are the predictions.
  """
  attributes = preds.get("attributes") or {}
  if not attributes:
    raise ValueError("The batches carry no attributes, so no demographic groups can be formed; "
                     "evaluate a dataset whose records have attribute features")
  groups_lib.parse_group_spec(group_spec, attributes)
  group_ids = groups_lib.assign_groups(attributes, group_spec)
  y_pred = preds["is_face"] if "is_face" in preds else preds["prob"]
  return metrics.group_metrics(preds["label"], y_pred, group_ids, n_boot=n_boot, seed=seed,
                               threshold=threshold, undefined_rates=undefined_rates)


def evaluate_model(model: nnx.Module, source: Any, *, group_spec: str | Sequence[str],
                   batch_size: int, image_size: int | None, normalize: str, n_boot: int = 1000,
                   seed: int = 0, label_key: str = "label", threshold: float = 0.5,
                   indices: Sequence[int] | None = None, protocol: str = "classification",
                   detection_options: Mapping[str, Any] | None = None,
                   undefined_rates: str = "ignore") -> dict[str, Any]:
  """Per-group metrics of a model on a random-access source (e.g. ``pipeline.load_source``).

  Args:
    model: binary classifier or DB-VAE.
    source: random-access data source of records.
    group_spec: e.g. ``"skin,Male"`` (see ``data.groups``).
    batch_size: examples per batch (full images per batch for ``detection``).
    image_size: resize images to this side (the model's input size); for ``detection``
      the size full images are loaded at (``None`` keeps the stored size).
    normalize: the pipeline normalisation the model was trained with.
    n_boot, seed, threshold, undefined_rates: passed to ``group_metrics``.
    label_key: record feature used as the label.
    indices: examples to evaluate (default: all).
    protocol: ``"classification"`` or ``"detection"`` (PPB sliding windows).
    detection_options: for ``detection``: ``input_size`` (required), ``scales``,
      ``stride_frac``, ``logit_threshold``, ``windows_per_call``.

  Returns:
    The ``group_metrics`` dict (no per-example predictions).
  """
  from facebias_jax.data import pipeline  # lazy: TF/grain load only when data is read.

  if protocol not in PROTOCOLS:
    raise ValueError(f"Unknown protocol {protocol!r}; use one of {PROTOCOLS}")
  indices = np.arange(len(source)) if indices is None else np.asarray(indices)
  batches = pipeline.batches(source, indices, batch_size=batch_size, image_size=image_size,
                             train=False, normalize=normalize, label_key=label_key,
                             process_index=0, process_count=1)
  if protocol == "detection":
    opts = dict(detection_options or {})
    if "input_size" not in opts:
      raise ValueError("The detection protocol needs detection_options['input_size'] (the model's input side)")
    preds = predict_detection(model, batches, **opts)
  else:
    preds = predict(model, batches)
  return evaluate_predictions(preds, group_spec=group_spec, n_boot=n_boot, seed=seed,
                              threshold=threshold, undefined_rates=undefined_rates)


# ----------------------------------------------------------------------------- run_evaluation


def default_options() -> ml_collections.ConfigDict:
  """Options of ``run_evaluation`` (the flags of ``experiments/evaluate.py``).

  ``None`` means "from the checkpoint's config" (``config.data.*``, ``config.eval.*``).
  """
  return ml_collections.ConfigDict({
      "checkpoint": None, "compare": None, "labels": None, "step": None,
      "dataset": None, "split": None, "data_dir": None, "manual_dir": None, "label_key": None,
      "groups": None, "protocol": "classification", "batch_size": None,
      "n_boot": 1000, "seed": 0, "threshold": 0.5, "undefined_rates": "ignore",
      "detection": {"scales": [1.0, 0.75, 0.5], "stride_frac": 0.25, "logit_threshold": 0.0,
                    "image_size": None, "windows_per_call": 256},
  })


def _as_list(value: Any) -> list[str]:
  if value is None or value == "":
    return []
  if isinstance(value, str):
    return [v.strip() for v in value.split(",") if v.strip()]
  return [str(v) for v in value]


def _cfg_get(config: Any, dotted: str, default: Any = None) -> Any:
  """``config.a.b`` or ``default`` when a section or field is missing/None."""
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError):
      return default
  return default if node is None else node


def _runs(options: Any) -> list[tuple[str, str]]:
  """(label, checkpoint workdir) pairs from ``checkpoint`` / ``compare`` / ``labels``."""
  checkpoint, compare = options.get("checkpoint"), _as_list(options.get("compare"))
  if checkpoint and compare:
    raise ValueError("Give either --checkpoint=WORKDIR or --compare=WD1,WD2,..., not both")
  paths = compare or ([checkpoint] if checkpoint else [])
  if not paths:
    raise ValueError("Nothing to evaluate: give --checkpoint=WORKDIR (a training workdir) or "
                     "--compare=WD1,WD2,... (several, compared side by side)")
  labels = _as_list(options.get("labels"))
  if labels and len(labels) != len(paths):
    raise ValueError(f"--labels has {len(labels)} names but {len(paths)} checkpoints were given")
  if not labels:
    labels = _distinct_names(paths)
  if len(set(labels)) != len(labels):
    raise ValueError(f"Run labels must be distinct, got {labels}; set --labels=a,b,...")
  for p in paths:
    if not os.path.isdir(p):
      raise FileNotFoundError(f"Checkpoint workdir {p} does not exist: train one first, e.g. "
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


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _dataset_settings(options: Any, config: Any) -> dict[str, Any]:
  """Dataset, split, groups... for one model: flags first, then the model's config."""
  return {
      "name": options.get("dataset") or _cfg_get(config, "data.name"),
      "split": options.get("split") or _cfg_get(config, "data.eval_split", "test"),
      "data_dir": options.get("data_dir") or _cfg_get(config, "data.data_dir"),
      "manual_dir": options.get("manual_dir") or _cfg_get(config, "data.manual_dir"),
      "label_key": options.get("label_key") or _cfg_get(config, "data.label_key", "label"),
      "groups": options.get("groups") or _cfg_get(config, "eval.groups", "skin,Male"),
      "normalize": _cfg_get(config, "data.normalize", "unit"),
      "image_size": _cfg_get(config, "data.image_size"),
  }


def run_evaluation(options: Any, workdir: str | None = None) -> dict[str, Any]:
  """Evaluates one or several checkpoints and writes their reports.

  Args:
    options: ``default_options()`` filled in (a ConfigDict or dict with those keys).
    workdir: output folder. One checkpoint: defaults to the checkpoint's workdir when
      the dataset is the one it was configured with, else ``<checkpoint>/eval_<dataset>_<split>``.
      Several (``compare``): required; each report goes to ``workdir/<label>/`` and the
      comparison (``comparison.{md,csv,json,png}``) into ``workdir``.

  Returns:
    ``{"reports": {label: report dict}, "comparison": summary or None, "workdir": path}``.

  Raises:
    ValueError: bad option values; FileNotFoundError: a missing checkpoint workdir.
  """
  defaults = default_options().to_dict()
  options = dict(options.to_dict() if hasattr(options, "to_dict") else options)
  unknown = set(options) - set(defaults)
  if unknown:
    raise ValueError(f"Unknown evaluation options {sorted(unknown)}; valid: {sorted(defaults)}")
  options = {**defaults, **{k: v for k, v in options.items() if v is not None}}
  options["detection"] = {**defaults["detection"], **(options.get("detection") or {})}
  if options["protocol"] not in PROTOCOLS:
    raise ValueError(f"--protocol must be one of {PROTOCOLS}, got {options['protocol']!r}")
  runs = _runs(options)
  if len(runs) > 1 and not workdir:
    raise ValueError("Comparing several checkpoints needs --workdir for the comparison report")
  # Imported after validating the options: bad flags fail fast, before TF/grain load.
  from facebias_jax.data import pipeline
  from facebias_jax.train import checkpoint as checkpoint_lib

  sources: dict[tuple, Any] = {}
  reports = {}
  for label, path in runs:
    model, config = checkpoint_lib.load_model(path, step=options["step"])
    ds = _dataset_settings(options, config)
    if not ds["name"]:
      raise ValueError(f"No dataset: the config in {path} has no data.name; pass --dataset=NAME")
    key = (ds["name"], ds["split"], ds["data_dir"], ds["manual_dir"])
    if key not in sources:
      sources[key] = pipeline.load_source(ds["name"], split=ds["split"], data_dir=ds["data_dir"],
                                          manual_dir=ds["manual_dir"])
    source = sources[key]
    batch_size = int(options["batch_size"] or _cfg_get(config, "eval.batch_size")
                     or _cfg_get(config, "train.batch_size", 128))
    det = options["detection"]
    detection_options = None
    image_size = ds["image_size"]
    if options["protocol"] == "detection":
      if not ds["image_size"]:
        raise ValueError(f"The config in {path} has no data.image_size (the model's input size), "
                         f"which the detection protocol resizes windows to")
      detection_options = {"input_size": int(ds["image_size"]), "scales": tuple(det["scales"]),
                           "stride_frac": float(det["stride_frac"]),
                           "logit_threshold": float(det["logit_threshold"]),
                           "windows_per_call": int(det["windows_per_call"])}
      image_size = det["image_size"]  # full images: stored size unless given.
    result = evaluate_model(model, source, group_spec=ds["groups"], batch_size=batch_size,
                            image_size=image_size, normalize=ds["normalize"],
                            n_boot=int(options["n_boot"]), seed=int(options["seed"]),
                            label_key=ds["label_key"], threshold=float(options["threshold"]),
                            protocol=options["protocol"], detection_options=detection_options,
                            undefined_rates=options["undefined_rates"])
    if len(runs) > 1:
      out_dir = os.path.join(workdir, _slug(label))
    elif workdir:
      out_dir = workdir
    elif (ds["name"], ds["split"]) == (_cfg_get(config, "data.name"),
                                       _cfg_get(config, "data.eval_split", "test")) \
        and options["protocol"] == "classification":
      out_dir = path
    else:
      out_dir = os.path.join(path, f"eval_{_slug(ds['name'])}_{_slug(ds['split'])}_{options['protocol']}")
    dataset = {"name": ds["name"], "split": ds["split"], "num_examples": int(result["overall"]["n"]),
               "groups": ds["groups"], "label_key": ds["label_key"], "protocol": options["protocol"]}
    if detection_options:
      dataset["detection"] = {k: v for k, v in detection_options.items() if k != "windows_per_call"}
    model_info = {"name": _cfg_get(config, "model.name"), "label": label, "workdir": path,
                  "step": options["step"]}
    reports[label] = report.write_report(
        out_dir, metrics=result, dataset=dataset, model=model_info, config=config,
        extra={"evaluation": options},
        title=f"{label} ({model_info['name']}) on {ds['name']}:{ds['split']}")
  comparison = report.compare_runs(reports, workdir) if len(runs) > 1 else None
  return {"reports": reports, "comparison": comparison,
          "workdir": workdir or reports[runs[0][0]]["files"]["json"].rsplit(os.sep, 1)[0]}
