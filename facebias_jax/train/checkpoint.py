"""Checkpoints (orbax), the run's ``config.json``, and ``load_model``.

Layout of a workdir::

  workdir/config.json           the config of the run (written on the first run)
  workdir/checkpoints/<step>/   orbax: item ``state`` (TrainState: params, BatchNorm
                                statistics, optimizer state, rng, step) and item
                                ``sampler`` (epoch and the epoch's index plan)

The sampler item makes a resumed run see exactly the batches an uninterrupted
run would: the plan of a DB-VAE epoch depends on the weights at the start of
that epoch, so it is stored rather than recomputed.

Config policy on restart (``check_or_write_config``): a difference in a field
that changes what is trained (model, data, optimizer, sampling, debiasing,
seed, batch size) is a ``ConfigMismatchError``; a difference only in
bookkeeping fields (``HARMLESS_FIELDS``: run length, logging, checkpoint
cadence, data locations, evaluation settings) is logged as a warning and the
new values are used and written to ``config.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from facebias_jax.models import get_model
from facebias_jax.train import steps as steps_lib

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
# Fields that may change between a run and its resumption (prefixes end in ".").
HARMLESS_FIELDS = (
    "train.num_epochs", "train.max_steps", "train.log_every_steps",
    "train.checkpoint_every_steps", "train.keep_checkpoints", "train.progress_bar",
    "data.data_dir", "data.manual_dir", "data.num_threads", "eval.",
)


class ConfigMismatchError(ValueError):
  """The config differs from the workdir's ``config.json`` in a field that matters."""


def config_to_dict(config: Any) -> dict:
  """A plain (JSON-able) dict of a ConfigDict or mapping."""
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(dict(config)))


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _is_harmless(field: str) -> bool:
  return any(field.startswith(p) if p.endswith(".") else field == p for p in HARMLESS_FIELDS)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The ``config.json`` of a workdir as a ConfigDict.

  Raises:
    FileNotFoundError: no such workdir or no config.json in it.
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


def check_or_write_config(config: Any, workdir: str) -> None:
  """Writes ``workdir/config.json``, or checks ``config`` against the existing one.

  Args:
    config: the run's config.
    workdir: the run's folder (created if needed).

  Raises:
    ConfigMismatchError: listing the fields that differ and both values.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  new = config_to_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    old_flat, new_flat = _flatten(old), _flatten(new)
    changed = sorted(k for k in set(old_flat) | set(new_flat)
                     if old_flat.get(k, "<missing>") != new_flat.get(k, "<missing>"))
    serious = [k for k in changed if not _is_harmless(k)]
    if serious:
      details = "; ".join(f"{k}: saved {old_flat.get(k, '<missing>')!r} vs now "
                          f"{new_flat.get(k, '<missing>')!r}" for k in serious)
      raise ConfigMismatchError(
          f"config differs from {path} (the run being resumed) in {details}. Use a new "
          "--workdir for a different experiment, or pass the saved values to resume.")
    if not changed:
      return
    logging.warning("Resuming %s with changed bookkeeping fields: %s", workdir,
                    ", ".join(f"{k}={new_flat.get(k)!r} (was {old_flat.get(k)!r})"
                              for k in changed))
  if jax.process_index() == 0:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(new, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def model_kwargs(config: Any) -> tuple[str, dict]:
  """``(name, kwargs)`` for ``models.get_model`` from ``config.model``.

  The standard CNN and the DB-VAE fix their input size (their heads flatten), so
  ``image_size`` defaults to ``config.data.image_size`` for them.
  """
  kwargs = config_to_dict(config.model)
  name = kwargs.pop("name")
  if name in ("standard_cnn", "dbvae") and "image_size" not in kwargs:
    kwargs["image_size"] = int(config.data.image_size)
  return name, kwargs


def build_model(config: Any, *, seed: int | None = None) -> nnx.Module:
  """The model ``config.model`` describes, freshly initialised from ``seed``."""
  name, kwargs = model_kwargs(config)
  seed = int(config.seed if seed is None else seed)
  return get_model(name, rngs=nnx.Rngs(seed), **kwargs)


class Checkpointer:
  """Saves and restores ``(TrainState, sampler state)`` under ``workdir/checkpoints``.

  Args:
    workdir: the run's folder.
    keep: number of most recent checkpoints kept.
  """

  def __init__(self, workdir: str, *, keep: int = 3):
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    # cleanup_tmp_directories: a run killed mid-save leaves a partial tmp folder.
    options = ocp.CheckpointManagerOptions(max_to_keep=max(1, int(keep)), create=True,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """Step of the newest complete checkpoint, or None."""
    return self.manager.latest_step()

  def save(self, step: int, state: Any, *, epoch: int, plan: np.ndarray) -> None:
    """Saves asynchronously (call ``wait`` before relying on the files)."""
    sampler = {"epoch": np.asarray(epoch, np.int64), "plan": np.asarray(plan, np.int64)}
    self.manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), sampler=ocp.args.StandardSave(sampler)))

  def restore(self, step: int, state_like: Any) -> tuple[Any, int, np.ndarray]:
    """Restores a checkpoint into the structure and shardings of ``state_like``.

    Returns:
      ``(state, epoch, plan)``.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    restored = self.manager.restore(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), sampler=ocp.args.StandardRestore()))
    sampler = restored.sampler
    return restored.state, int(np.asarray(sampler["epoch"])), np.asarray(sampler["plan"],
                                                                          np.int64)

  def restore_state(self, step: int, state_like: Any) -> Any:
    """Restores only the TrainState item."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    return self.manager.restore(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract))).state

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load_model(workdir: str, step: int | None = None) -> tuple[nnx.Module, ml_collections.ConfigDict]:
  """Rebuilds a trained model from a workdir, in eval mode.

  Args:
    workdir: a training workdir (``config.json`` + ``checkpoints/``).
    step: checkpoint step; default the latest.

  Returns:
    ``(model, config)``.

  Raises:
    FileNotFoundError: no workdir, no config.json, no checkpoint, or no checkpoint
      at ``step`` (the message lists the available steps).
  """
  config = read_config(workdir)
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f"no checkpoints in {directory}: training into {workdir!r} did not save one yet "
        "(resume it with the same command, or train with a smaller "
        "--config.train.checkpoint_every_steps)")
  checkpointer = Checkpointer(workdir, keep=1_000_000)  # Never deletes anything.
  try:
    available = list(checkpointer.manager.all_steps())
    if not available:
      raise FileNotFoundError(f"no complete checkpoint in {directory}; train into {workdir!r} "
                              "first")
    if step is None:
      step = max(available)
    elif int(step) not in available:
      raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; available "
                              f"steps: {sorted(available)}")
    # The optimizer state's structure is part of the checkpoint tree, so the
    # restore target is built with the same optimizer. Only its shapes are needed:
    # tracing it abstractly skips compiling every parameter initialiser, which costs
    # seconds per shape on a CPU (demo start-up, every evaluation).
    tx = make_optimizer_from_config(config, total_steps=1)
    model_defs = []

    def abstract_state():
      model_def, state = steps_lib.create_train_state(build_model(config), tx,
                                                      jax.random.PRNGKey(0))
      model_defs.append(model_def)
      return state

    # Restored onto one local device whatever mesh the run was trained on.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          jax.eval_shape(abstract_state))
    state = checkpointer.restore_state(int(step), target)
    model_def = model_defs[0]
  finally:
    checkpointer.close()
  model = model_def.merge(state)
  model.eval()
  return model, config


def optimizer_kwargs(config: Any, *, total_steps: int) -> dict:
  """Keyword arguments of ``steps.make_optimizer`` from ``config.train``."""
  t = config.train
  return {"learning_rate": float(t.learning_rate), "total_steps": int(total_steps),
          "schedule": t.get("schedule", "constant"),
          "warmup_steps": int(t.get("warmup_steps", 0)),
          "grad_clip_norm": float(t.get("grad_clip_norm", 0.0)),
          "weight_decay": float(t.get("weight_decay", 0.0))}


def make_optimizer_from_config(config: Any, *, total_steps: int):
  """The optimizer ``config.train`` describes (see ``steps.make_optimizer``)."""
  kwargs = optimizer_kwargs(config, total_steps=total_steps)
  return steps_lib.make_optimizer(kwargs.pop("learning_rate"), **kwargs)
