"""The run directory: what a training run leaves in its workdir, and how to read it back.

Layout of a workdir (the names are the constants below)::

  workdir/config.json          the run's config (written once the run's data and model
                               are set up, right before the first step)
  workdir/checkpoints/<step>/  orbax, one folder per step with the items
      model/                   parameters and BatchNorm statistics (all inference needs)
      train/                   optimizer state, step counter, base PRNG key
      sampler/                 epoch and the epoch's index plan (exact resumption)
      selection/               the best validated step so far, early-stopping count
      integrity/               a CRC-32 of every item, checked on every restore
  workdir/metrics.jsonl        one JSON object per logged step
  workdir/tb/                  TensorBoard events
  workdir/report.json, .md...  the evaluation report

Evaluation, CAM export, prediction and the demo read runs through this module only,
never through ``train``: :func:`load_model` restores the ``model`` item alone onto the
shapes of a freshly described model (``nnx.eval_shape``), so no optimizer is built.
Readers open checkpoints read-only: they never write, delete or clean anything in a
workdir, so a run can be evaluated while it trains.

Config policy on restart (:func:`check_or_write_config`): a difference in a field that
changes what is trained (model, data, optimizer, sampling, debiasing, seed, batch size)
is a ``ConfigMismatchError``; a difference only in bookkeeping fields
(``HARMLESS_FIELDS``: run length unless a decaying schedule depends on it, logging,
checkpoint cadence, data locations,
evaluation settings, the convolution kernels) is logged and the new values are written.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from facebias_jax.checksums import tree_crc
from facebias_jax.models import get_model

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
REPORT_FILE = "report.json"
# Items of every checkpoint step.
MODEL_ITEM, TRAIN_ITEM, SAMPLER_ITEM, SELECTION_ITEM = "model", "train", "sampler", "selection"
INTEGRITY_ITEM = "integrity"  # {"crc32": {item: CRC-32 of its arrays}}, JSON.
# Fields that may change between a run and its resumption (prefixes end in ".").
HARMLESS_FIELDS = (
    "train.num_epochs", "train.max_steps", "train.log_every_steps",
    "train.checkpoint_every_steps", "train.keep_checkpoints", "train.progress_bar",
    "data.data_dir", "data.manual_dir", "data.num_threads", "data.cache_mb", "model.conv_impl",
    "eval.",
)


class ConfigMismatchError(ValueError):
  """The config differs from the workdir's ``config.json`` in a field that matters."""


class CorruptCheckpointError(ValueError):
  """A checkpoint step cannot be restored, or restores to other values than were saved."""


# ----------------------------------------------------------------------------- configs


def config_to_dict(config: Any) -> dict:
  """A plain (JSON-able) dict of a ConfigDict or mapping."""
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(dict(config)))


def config_value(config: Any, dotted: str, default: Any = None) -> Any:
  """``config.a.b`` for ``dotted="a.b"``, or ``default`` when a section or field is
  missing or None (configs of older runs lack newer fields)."""
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError, IndexError):
      return default
    if node is None:
      return default
  return node


def option_or_run(option: Any, config: Any, dotted: str, default: Any = None) -> Any:
  """The one resolver of every entry point: an option the user gave (not None or
  empty), else the run's own ``config`` value at ``dotted``, else ``default``."""
  if option is not None and option != "":
    return option
  return config_value(config, dotted, default)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


# The run length sets a decaying schedule's shape: changing it moves every later
# learning rate, so it is bookkeeping only for a constant one.
_RUN_LENGTH = ("train.num_epochs", "train.max_steps")


def _is_harmless(field: str, schedule: str = "constant") -> bool:
  if field in _RUN_LENGTH and schedule != "constant":
    return False
  return any(field.startswith(p) if p.endswith(".") else field == p for p in HARMLESS_FIELDS)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The ``config.json`` of a workdir as a ConfigDict.

  Raises:
    FileNotFoundError: no such workdir or no config.json in it (the message says how
      to create one).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(
        f"workdir {workdir!r} does not exist; create it by training, e.g. "
        f"`python -m experiments.train_classifier --flagfile=experiments/flags/"
        f"cnn_synthetic.flags --workdir={workdir}`")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{path} not found: {workdir!r} is not a training workdir (train into it with "
        f"`python -m experiments.train_classifier --workdir={workdir} ...`)")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def config_changes(config: Any, workdir: str) -> tuple[list[str], list[str]]:
  """``(serious, harmless)`` fields in which ``config`` differs from the saved one.

  Each entry reads ``"field: saved X vs now Y"``; both lists are empty when the
  workdir has no ``config.json`` yet.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return [], []
  with open(path) as f:
    old_flat = _flatten(json.load(f))
  new_flat = _flatten(config_to_dict(config))
  changed = sorted(k for k in set(old_flat) | set(new_flat)
                   if old_flat.get(k, "<missing>") != new_flat.get(k, "<missing>"))
  describe = lambda k: (f"{k}: saved {old_flat.get(k, '<missing>')!r} vs now "
                        f"{new_flat.get(k, '<missing>')!r}")
  schedule = str(new_flat.get("train.schedule", "constant"))
  return ([describe(k) for k in changed if not _is_harmless(k, schedule)],
          [describe(k) for k in changed if _is_harmless(k, schedule)])


def check_config(config: Any, workdir: str) -> None:
  """Refuses to resume ``workdir`` with a different experiment (nothing is written).

  A workdir without a finished checkpoint is new whatever its ``config.json`` says (a
  run that failed before training, e.g. on a bad option, does not block the corrected
  one).

  Raises:
    ConfigMismatchError: listing the fields that differ and both values.
  """
  if not finished_steps(workdir):
    return
  path = os.path.join(workdir, CONFIG_FILE)
  serious, harmless = config_changes(config, workdir)
  if serious:
    raise ConfigMismatchError(
        f"config differs from {path} (the run being resumed) in {'; '.join(serious)}. Use "
        "a new --workdir for a different experiment, or pass the saved values to resume.")
  if harmless:
    logging.warning("Resuming %s with changed bookkeeping fields: %s", workdir,
                    "; ".join(harmless))


def write_config(config: Any, workdir: str) -> None:
  """Writes ``workdir/config.json`` atomically (process 0; the folder is created)."""
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    path = os.path.join(workdir, CONFIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(config_to_dict(config), f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def check_or_write_config(config: Any, workdir: str) -> None:
  """:func:`check_config`, then :func:`write_config`."""
  check_config(config, workdir)
  write_config(config, workdir)


def read_metrics(path: str) -> list[dict]:
  """The records of a ``metrics.jsonl`` (a file, or a workdir holding one).

  Blank lines and a last line cut by a killed run are skipped.
  """
  if os.path.isdir(path):
    path = os.path.join(path, METRICS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"No metrics file at {path}: the training loop writes "
                            f"WORKDIR/{METRICS_FILE}")
  records = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(record, dict) and "step" in record:
        records.append(record)
  return records


# ----------------------------------------------------------------------------- models


# config.model fields that say where training starts, not what the model is.
INIT_FIELDS = ("init_from", "init_head")


def model_kwargs(config: Any) -> tuple[str, dict]:
  """``(name, kwargs)`` for ``models.get_model`` from ``config.model``.

  The standard CNN and the DB-VAE fix their input size (their heads flatten), so
  ``image_size`` defaults to ``config.data.image_size`` for them.
  """
  kwargs = config_to_dict(config.model)
  name = kwargs.pop("name")
  for field in INIT_FIELDS:
    kwargs.pop(field, None)
  if name in ("standard_cnn", "dbvae") and "image_size" not in kwargs:
    kwargs["image_size"] = int(config.data.image_size)
  return name, kwargs


def build_model(config: Any, *, seed: int | None = None) -> nnx.Module:
  """The model ``config.model`` describes, freshly initialised from ``seed``."""
  name, kwargs = model_kwargs(config)
  seed = int(config.seed if seed is None else seed)
  return get_model(name, rngs=nnx.Rngs(seed), **kwargs)


def model_item(model_params: Any, model_state: Any) -> dict[str, Any]:
  """The checkpoint's ``model`` item: parameters and the other variables (BatchNorm)."""
  return {"params": model_params, "model_state": model_state}


def split_for_inference(model: nnx.Module) -> tuple[nnx.GraphDef, Any, Any]:
  """``(eval-mode graphdef, params, other variables)`` of a model."""
  model.eval()
  return nnx.split(model, nnx.Param, ...)


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_dir(workdir: str) -> str:
  return os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))


def finished_steps(workdir: str) -> list[int]:
  """Steps of the finished checkpoints of a workdir, ascending ([] if none).

  Orbax writes a step into ``<step>.orbax-checkpoint-tmp-*`` and renames it to
  ``<step>`` once every item is on disk, so a folder named by digits alone is finished.
  Listing never writes, deletes or cleans anything (a training run may be writing).
  """
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit() and os.path.isdir(os.path.join(directory, name)))


def step_dir(workdir: str, step: int) -> str:
  """The folder of one checkpoint step."""
  return os.path.join(checkpoint_dir(workdir), str(int(step)))


def selected_step(workdir: str) -> int | None:
  """The step a run selected: its report's ``selection.step``, else the ``selection``
  item of its newest checkpoint (runs without a final evaluation), else None (meaning
  the newest checkpoint)."""
  try:
    with open(os.path.join(workdir, REPORT_FILE)) as f:
      step = (json.load(f).get("selection") or {}).get("step")
    if step is not None:
      return int(step)
  except (OSError, ValueError):
    pass
  steps = finished_steps(workdir)
  if not steps:
    return None
  path = os.path.join(step_dir(workdir, steps[-1]), SELECTION_ITEM)
  if not os.path.isdir(path):
    return None
  with ocp.StandardCheckpointer() as checkpointer:
    best = int(checkpointer.restore(path)["best_step"])
  return best if best in steps else None


def read_integrity(workdir: str, step: int) -> dict[str, int] | None:
  """The CRC-32 per item a checkpoint step was saved with (None for a step saved
  without them)."""
  path = os.path.join(step_dir(workdir, step), INTEGRITY_ITEM)
  if not os.path.isdir(path):
    return None
  with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
    return {k: int(v) for k, v in checkpointer.restore(path)["crc32"].items()}


def verify_item(workdir: str, step: int, item: str, tree: Any,
                saved: Mapping[str, int] | None) -> None:
  """Raises ``CorruptCheckpointError`` when ``tree`` (a restored item) is not what was
  saved."""
  if saved is not None and item in saved and tree_crc(tree) != saved[item]:
    raise CorruptCheckpointError(
        f"checkpoint step {step} in {checkpoint_dir(workdir)}: item {item!r} restores to "
        "other values than were saved (checksum mismatch: a damaged file)")


@dataclasses.dataclass
class Run:
  """A trained model loaded from a workdir."""

  model: nnx.Module
  config: ml_collections.ConfigDict
  step: int
  workdir: str


def _restore_model_item(workdir: str, step: int, target: Any) -> Any:
  """The verified ``model`` item of one step (``CorruptCheckpointError`` if damaged)."""
  # A plain checkpointer on the item's folder: reads only (no manager, no cleanup).
  try:
    saved = read_integrity(workdir, step)
    with ocp.StandardCheckpointer() as checkpointer:
      restored = checkpointer.restore(os.path.join(step_dir(workdir, step), MODEL_ITEM),
                                      target)
  except (OSError, ValueError, KeyError, RuntimeError) as err:
    raise CorruptCheckpointError(f"checkpoint step {step} in {checkpoint_dir(workdir)} "
                                 f"cannot be read: {type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:300]}") from None
  verify_item(workdir, step, MODEL_ITEM, restored, saved)
  return restored


def load_run(workdir: str, step: int | None = None) -> Run:
  """Restores the ``model`` item of a checkpoint onto a model described by the run's
  config, in eval mode, on one local device (whatever mesh it was trained on).

  Read-only: nothing in the workdir is written, moved or cleaned. The item is checked
  against the checksum it was saved with; when the newest step is damaged (and no
  ``step`` was asked for) the next older one is used, with a warning naming both.

  Args:
    workdir: a training workdir (``config.json`` + ``checkpoints/``).
    step: checkpoint step; default the newest finished one that restores.

  Raises:
    FileNotFoundError: no workdir, no config.json, no finished checkpoint, or none at
      ``step`` (the message lists the available steps).
    CorruptCheckpointError: ``step`` (or every step) is damaged.
  """
  config = read_config(workdir)
  directory = checkpoint_dir(workdir)
  available = finished_steps(workdir)
  if not available:
    raise FileNotFoundError(
        f"no finished checkpoint in {directory}: training into {workdir!r} has not saved "
        "one yet (resume it with the same command, or train with a smaller "
        "--config.train.checkpoint_every_steps)")
  if step is not None and int(step) not in available:
    raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; available "
                            f"steps: {available}")
  # Only shapes are needed: tracing the model abstractly skips compiling every
  # parameter initialiser, which costs seconds per shape on a CPU.
  abstract = nnx.eval_shape(lambda: build_model(config))
  graphdef, params, rest = split_for_inference(abstract)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                        model_item(params, rest))
  candidates = [int(step)] if step is not None else available[::-1]
  damaged = []
  for candidate in candidates:
    try:
      restored = _restore_model_item(workdir, candidate, target)
    except CorruptCheckpointError as err:
      if step is not None:
        raise CorruptCheckpointError(f"{err}; pick another step (available: "
                                     f"{available})") from None
      logging.warning("%s; trying the next older step", err)
      damaged.append(str(err))
      continue
    if damaged:
      logging.warning("Using checkpoint step %d of %s: newer steps are damaged", candidate,
                      workdir)
    model = nnx.merge(graphdef, restored["params"], restored["model_state"])
    model.eval()
    return Run(model=model, config=config, step=candidate, workdir=workdir)
  raise CorruptCheckpointError(f"no checkpoint of {workdir} restores: " + "; ".join(damaged))


def load_model(workdir: str, step: int | None = None
               ) -> tuple[nnx.Module, ml_collections.ConfigDict]:
  """``(model, config)`` of a workdir's checkpoint (see :func:`load_run`)."""
  run = load_run(workdir, step)
  return run.model, run.config


# ----------------------------------------------------------------------------- task names


def class_names(config: Any) -> tuple[str, ...]:
  """Readable class names of a run's task, index = class id.

  e.g. ``("female", "male")`` for sex classifiers, ``("non-face", "face")`` for face
  detection (the DB-VAE's task), ``("not smiling", "smiling")`` for label key
  ``Smiling``.
  """
  data_name = str(config_value(config, "data.name", ""))
  label_key = str(config_value(config, "data.label_key", "label"))
  num_classes = int(config_value(config, "model.num_classes", 1))
  if label_key == "Male" or "/sex" in data_name:
    return ("female", "male")
  if label_key == "is_face" or "faces_vs_nonfaces" in data_name or "face_mixture" in data_name:
    return ("non-face", "face")
  if label_key != "label" and num_classes <= 2:
    return (f"not {label_key.lower()}", label_key.lower())
  return tuple(f"class {i}" for i in range(max(2, num_classes)))
