"""The training loop: ``train_and_evaluate(config, workdir) -> report dict``.

One function trains a classifier or a DB-VAE as ``config`` describes and
evaluates it per demographic group at the end (flax ``examples/imagenet``
style, importable from a notebook; ``experiments/train_*.py`` only parse flags):

* data: ``pipeline.load_source`` (prepared on first use), one index plan per
  epoch from ``data.sampling`` (``config.train.sampling``: ``uniform``,
  ``balanced`` over ``config.train.balance_groups``, or ``dbvae`` with
  probabilities recomputed from the encoder's latent means over all training
  faces at the start of every epoch); optional half-face/half-non-face batches
  (``config.train.face_nonface_batches``, the MIT lab's detection batches);
* model ``models.get_model(config.model.name, **config.model)``, Adam;
* jit-compiled steps on a 1-D ``data`` mesh over all devices (``sharding``);
* ``workdir/metrics.jsonl`` (one JSON object per logged step, means over the
  logging interval), TensorBoard events in ``workdir/tb``, a tqdm bar;
* orbax checkpoints every ``checkpoint_every_steps`` and at the end; running
  again with the same workdir resumes from the latest one, on the same batches;
* at the end, ``eval.evaluate.evaluate_model`` on ``config.data.eval_split``
  and ``eval.report.write_report`` (report.json/md/csv, plots, training curves;
  for the DB-VAE also the latent histograms and the extreme-probability faces).

A non-finite loss raises ``NonFiniteLossError`` naming the step; no checkpoint
is written after it, so the last good one stays the latest.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from typing import Any, Iterable, Mapping

import jax
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from facebias_jax.data import sampling
from facebias_jax.train import checkpoint as ckpt_lib
from facebias_jax.train import debias, sharding, steps as steps_lib

SAMPLING_MODES = ("uniform", "balanced", "dbvae")
RECONSTRUCTION_LOSSES = ("l1", "l2")
NORMALIZATIONS = ("unit", "imagenet")
METRICS_FILE = "metrics.jsonl"


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the message names the first bad step."""


# ----------------------------------------------------------------------------- config


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(f"invalid config: {message}")


def validate_config(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Checks a training config; raises ValueError naming the field and the fix.

  Args:
    config: the training config (sections model, data, train, debias, eval).
    num_devices: devices the batch is split over (default ``jax.device_count()``).
  """
  from facebias_jax.models import MODELS  # pylint: disable=g-import-not-at-top

  for section in ("model", "data", "train", "debias", "eval"):
    _check(section in config, f"missing section config.{section}")
  m, d, t, b, e = config.model, config.data, config.train, config.debias, config.eval
  _check(m.name in MODELS, f"config.model.name={m.name!r} is not one of {sorted(MODELS)}")
  _check(int(m.get("num_classes", 1)) >= 1, "config.model.num_classes must be >= 1")
  _check(bool(d.name), "config.data.name must name a TFDS dataset, e.g. "
         "'facebias_synthetic_faces/faces_vs_nonfaces_64'")
  _check(d.image_size is not None and int(d.image_size) > 0,
         f"config.data.image_size must be positive, got {d.image_size!r}")
  _check(d.normalize in NORMALIZATIONS,
         f"config.data.normalize={d.normalize!r} is not one of {NORMALIZATIONS}")
  _check(int(t.batch_size) > 0, f"config.train.batch_size must be positive, got {t.batch_size}")
  _check(int(t.max_steps) > 0 or int(t.num_epochs) > 0,
         "set config.train.num_epochs > 0 or config.train.max_steps > 0")
  _check(float(t.learning_rate) > 0, f"config.train.learning_rate must be > 0, got "
         f"{t.learning_rate}")
  for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    _check(int(t[field]) > 0, f"config.train.{field} must be positive, got {t[field]}")
  _check(t.sampling in SAMPLING_MODES,
         f"config.train.sampling={t.sampling!r} is not one of {SAMPLING_MODES}")
  _check(t.balance_mode in sampling.BALANCE_MODES,
         f"config.train.balance_mode={t.balance_mode!r} is not one of {sampling.BALANCE_MODES}")
  if t.sampling == "balanced":
    _check(bool(t.balance_groups), "config.train.sampling='balanced' needs "
           "config.train.balance_groups, e.g. 'skin,Male'")
  if t.sampling == "dbvae":
    _check(m.name == "dbvae", "config.train.sampling='dbvae' needs config.model.name='dbvae' "
           f"(the probabilities come from its latent space), got {m.name!r}")
  if t.face_nonface_batches:
    _check(int(t.batch_size) % 2 == 0, "config.train.face_nonface_batches needs an even "
           f"batch size, got {t.batch_size}")
  _check(int(b.bins) >= 1, f"config.debias.bins must be >= 1, got {b.bins}")
  _check(float(b.smoothing) >= 0, f"config.debias.smoothing must be >= 0, got {b.smoothing}")
  _check(b.combine in debias.COMBINE_MODES,
         f"config.debias.combine={b.combine!r} is not one of {debias.COMBINE_MODES}")
  _check(float(b.kl_weight) >= 0, f"config.debias.kl_weight must be >= 0, got {b.kl_weight}")
  _check(b.reconstruction_loss in RECONSTRUCTION_LOSSES,
         f"config.debias.reconstruction_loss={b.reconstruction_loss!r} is not one of "
         f"{RECONSTRUCTION_LOSSES}")
  if m.name == "dbvae":
    _check(d.normalize == "unit", "the DB-VAE reconstructs [0, 1] images: use "
           "config.data.normalize='unit'")
  _check(int(e.batch_size) > 0, f"config.eval.batch_size must be positive, got {e.batch_size}")
  num_devices = jax.device_count() if num_devices is None else num_devices
  _check(int(t.batch_size) % num_devices == 0,
         f"config.train.batch_size={t.batch_size} does not divide across {num_devices} "
         f"devices; use a multiple of {num_devices}")


# ----------------------------------------------------------------------------- data


class TrainData:
  """The training split: source, labels, attributes and which examples are faces."""

  def __init__(self, config: ml_collections.ConfigDict):
    from facebias_jax.data import pipeline  # pylint: disable=g-import-not-at-top
    d = config.data
    self.source = pipeline.load_source(d.name, split=d.train_split, data_dir=d.data_dir,
                                       manual_dir=d.manual_dir)
    self.size = len(self.source)
    if self.size == 0:
      raise ValueError(f"split {d.train_split!r} of {d.name!r} is empty")
    self.labels = pipeline.read_column(self.source, d.label_key)
    self.attributes = pipeline.read_attributes(self.source)
    self.face_key = config.debias.face_key
    self.is_face = face_flags(self.attributes, self.labels, self.face_key)
    self.faces = np.flatnonzero(self.is_face).astype(np.int64)
    self.nonfaces = np.flatnonzero(~self.is_face).astype(np.int64)


def face_flags(attributes: Mapping[str, np.ndarray], labels: np.ndarray,
               face_key: str) -> np.ndarray:
  """Which examples are faces (their VAE loss counts; DB-VAE resamples them).

  Args:
    attributes: attribute arrays [N].
    labels: labels [N].
    face_key: ``"label"`` (label 1 = face), or an attribute name (1 = face, e.g.
      the synthetic set's ``is_face``); when the dataset has no such attribute
      every example is a face (e.g. CelebA for the ``Male`` task).

  Returns:
    bool [N].
  """
  if face_key == "label":
    return np.asarray(labels) == 1
  if face_key in attributes:
    return np.asarray(attributes[face_key]) == 1
  return np.ones(len(labels), bool)


def epoch_length(config: ml_collections.ConfigDict, data: TrainData) -> int:
  """Examples in one epoch's plan (the same for every epoch of a run)."""
  t = config.train
  if t.face_nonface_batches:
    return (data.size // int(t.batch_size)) * int(t.batch_size)
  if t.sampling == "balanced":
    groups = _balance_groups(config, data)
    _, sizes = np.unique(groups, return_counts=True)
    target = sizes.max() if t.balance_mode == "oversample" else sizes.min()
    return int(target) * len(sizes)
  return data.size


def _balance_groups(config: ml_collections.ConfigDict, data: TrainData) -> np.ndarray:
  from facebias_jax.data import groups as groups_lib  # pylint: disable=g-import-not-at-top
  return groups_lib.assign_groups(data.attributes, config.train.balance_groups)


def epoch_plan(config: ml_collections.ConfigDict, data: TrainData, epoch: int, *,
               face_probabilities: np.ndarray | None = None) -> np.ndarray:
  """The ordered example indices of one epoch.

  Args:
    config: the training config.
    data: the training split.
    epoch: epoch number.
    face_probabilities: [num faces] DB-VAE sampling probabilities of
      ``data.faces`` (``sampling="dbvae"``), else None.

  Returns:
    int64 [epoch_length(config, data)].
  """
  t, seed = config.train, int(config.seed)
  if t.face_nonface_batches:
    bs = int(t.batch_size)
    return sampling.face_nonface_indices(
        data.faces, data.nonfaces, batch_size=bs, num_batches=data.size // bs, seed=seed,
        epoch=epoch, face_probabilities=face_probabilities)
  if t.sampling == "balanced":
    return sampling.balanced_indices(_balance_groups(config, data), seed=seed, epoch=epoch,
                                     mode=t.balance_mode)
  if t.sampling == "dbvae":
    faces = data.faces[sampling.weighted_indices(face_probabilities, data.faces.size,
                                                 seed=seed, epoch=epoch)]
    # Non-faces (if any) are seen once each; the whole mix is shuffled.
    plan = np.concatenate([faces, data.nonfaces])
    return plan[sampling.uniform_indices(plan.size, seed=seed, epoch=epoch)]
  return sampling.uniform_indices(data.size, seed=seed, epoch=epoch)


# ----------------------------------------------------------------------------- helpers


def _progress_enabled(config: ml_collections.ConfigDict) -> bool:
  return bool(config.train.progress_bar) and sys.stderr.isatty() and jax.process_index() == 0


def _step_inputs(batch: Mapping[str, Any], *, dbvae: bool, face_key: str) -> dict[str, np.ndarray]:
  """The arrays a step needs from a pipeline batch (no strings, no attributes dict)."""
  inputs = {"image": batch["image"], "label": batch["label"], "mask": batch["mask"]}
  if dbvae:
    flags = face_flags(batch.get("attributes", {}), batch["label"], face_key)
    inputs["vae_mask"] = flags & batch["mask"]
  return inputs


def _batches(config: ml_collections.ConfigDict, source: Any, indices: np.ndarray, *,
             train: bool, epoch: int = 0, start_batch: int = 0,
             batch_size: int | None = None) -> Iterable[dict]:
  from facebias_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  d = config.data
  return pipeline.batches(
      source, indices, batch_size=int(batch_size or config.train.batch_size),
      image_size=int(d.image_size), train=train, seed=int(config.seed), epoch=epoch,
      start_batch=start_batch, normalize=d.normalize, flip=d.flip if train else False,
      label_key=d.label_key, num_threads=int(d.num_threads))


def encode_faces(config: ml_collections.ConfigDict, data: TrainData, encode_fn, state,
                 mesh, *, desc: str = "DB-VAE: latent means of the training faces"
                 ) -> np.ndarray:
  """Latent means [num faces, latent] of every training face, in ``data.faces`` order."""
  from facebias_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  bs = int(config.train.batch_size)
  total = pipeline.num_batches(data.faces.size, bs, train=False)
  parts = []
  for batch in tqdm(_batches(config, data.source, data.faces, train=False), total=total,
                    desc=desc, leave=False, disable=not _progress_enabled(config)):
    images = sharding.shard_batch({"image": batch["image"]}, mesh)["image"]
    parts.append(np.asarray(encode_fn(state, images)))
  return np.concatenate(parts)[:data.faces.size]


class MetricsLogger:
  """Writes ``metrics.jsonl`` and TensorBoard scalars (process 0 only)."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, METRICS_FILE)
    self.writer = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self.writer = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, step: int, record: Mapping[str, Any], prefix: str = "train") -> None:
    if not self.enabled:
      return
    line = {"step": int(step), **{k: _jsonable(v) for k, v in record.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(line) + "\n")
    for k, v in record.items():
      if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
        self.writer.add_scalar(f"{prefix}/{k}", v, int(step))
    self.writer.flush()

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()


def _jsonable(v: Any) -> Any:
  if isinstance(v, (np.floating, float)):
    return float(v) if math.isfinite(v) else None
  if isinstance(v, (np.integer,)):
    return int(v)
  return v


def _truncate_metrics(path: str, step: int) -> None:
  """Drops records after ``step`` (a killed run may have logged past its checkpoint)."""
  if not os.path.exists(path) or jax.process_index() != 0:
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      if json.loads(line).get("step", 0) <= step:
        kept.append(line)
    except json.JSONDecodeError:
      continue  # A line cut by the kill.
  with open(path, "w") as f:
    f.writelines(kept)


# ----------------------------------------------------------------------------- main


@functools.lru_cache(maxsize=16)
def _compiled_train_step(model_def: steps_lib.ModelDef, optimizer: tuple, kind: str,
                         kl_weight: float, reconstruction_loss: str):
  """``(tx, jitted train step)``, shared by runs with the same model and optimizer.

  Several runs in one process (tests, the smoothing sweep, notebooks) then reuse
  one compiled step instead of recompiling it for every run.
  """
  kwargs = dict(optimizer)
  tx = steps_lib.make_optimizer(kwargs.pop("learning_rate"), **kwargs)
  return tx, steps_lib.make_train_step(model_def, tx, kind=kind, kl_weight=kl_weight,
                                       reconstruction_loss=reconstruction_loss)


@functools.lru_cache(maxsize=16)
def _compiled_encode_step(model_def: steps_lib.ModelDef, out_sharding):
  return steps_lib.make_encode_step(model_def, out_sharding)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the model ``config`` describes into ``workdir``, then evaluates it per group.

  Args:
    config: training config (see ``experiments/configs/classifier.py``).
    workdir: output folder; an existing one with checkpoints is resumed.

  Returns:
    The report dict written to ``workdir/report.json`` (``metrics`` = the
    ``group_metrics`` dict, plus ``dataset``, ``model``, ``config``, ``training``),
    or, with ``config.eval.at_end=False``, ``{"training": ...}`` only.

  Raises:
    ValueError: invalid config; ``checkpoint.ConfigMismatchError`` when the
      workdir holds a different experiment; ``NonFiniteLossError`` on NaN/inf loss.
  """
  sharding.maybe_initialize_distributed()
  validate_config(config)
  ckpt_lib.check_or_write_config(config, workdir)
  t = config.train
  is_dbvae = config.model.name == "dbvae"
  mesh = sharding.make_mesh()
  sharding.check_batch_size(int(t.batch_size), mesh)

  data = TrainData(config)
  plan_len = epoch_length(config, data)
  steps_per_epoch = plan_len // int(t.batch_size)
  if steps_per_epoch == 0:
    raise ValueError(f"an epoch of {plan_len} examples gives no batch of "
                     f"{t.batch_size}: lower config.train.batch_size")
  total_steps = int(t.max_steps) if int(t.max_steps) > 0 else int(t.num_epochs) * steps_per_epoch

  model = ckpt_lib.build_model(config)
  opt_kwargs = ckpt_lib.optimizer_kwargs(config, total_steps=total_steps)
  tx, train_step = _compiled_train_step(
      steps_lib.split_model(model)[0], tuple(sorted(opt_kwargs.items())),
      "dbvae" if is_dbvae else "classifier", float(config.debias.kl_weight),
      config.debias.reconstruction_loss)
  model_def, state = steps_lib.create_train_state(model, tx,
                                                  jax.random.PRNGKey(int(config.seed)))
  del model
  state = sharding.replicate(state, mesh)
  encode_fn = (_compiled_encode_step(model_def, sharding.replicated(mesh))
               if is_dbvae else None)

  checkpointer = ckpt_lib.Checkpointer(workdir, keep=int(t.keep_checkpoints))
  logger = MetricsLogger(workdir)
  restored_epoch, restored_plan = -1, None
  latest = checkpointer.latest_step()
  if latest is not None:
    state, restored_epoch, restored_plan = checkpointer.restore(latest, state)
    logging.info("Resumed %s from step %d", workdir, latest)
    _truncate_metrics(logger.path, latest)
  step = int(state.step)

  def make_plan(epoch: int) -> np.ndarray:
    probabilities = None
    if t.sampling == "dbvae":
      mu = encode_faces(config, data, encode_fn, state, mesh)
      probabilities = debias.sample_probabilities(
          mu, bins=int(config.debias.bins), smoothing=float(config.debias.smoothing),
          combine=config.debias.combine)
    return epoch_plan(config, data, epoch, face_probabilities=probabilities)

  pending: list[tuple[int, int, dict]] = []
  last_log = {"time": time.perf_counter(), "step": step}
  last_train: dict[str, float] = {}

  def flush() -> None:
    """Fetches pending step metrics, checks them, logs their means."""
    if not pending:
      return
    fetched = jax.device_get([m for _, _, m in pending])
    for (s, _, _), m in zip(pending, fetched):
      if not (np.isfinite(m["loss"]) and m["finite"]):
        checkpointer.wait()
        raise NonFiniteLossError(
            f"non-finite loss or parameters at step {s} (loss {float(m['loss'])}) in "
            f"{workdir}; the last good checkpoint is step {checkpointer.latest_step()}. "
            "Lower config.train.learning_rate or set config.train.grad_clip_norm.")
    means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k != "finite"}
    now = time.perf_counter()
    means["steps_per_sec"] = (step - last_log["step"]) / max(now - last_log["time"], 1e-9)
    means["epoch"] = pending[-1][1]
    last_log.update(time=now, step=step)
    last_train.clear()
    last_train.update(means)
    logger.write(step, means)
    pending.clear()
    bar.set_postfix(loss=f"{means['loss']:.4f}", acc=f"{means['accuracy']:.3f}",
                    steps_s=f"{means['steps_per_sec']:.1f}")

  bar = tqdm(total=total_steps, initial=step, desc=f"train {config.model.name}",
             disable=not _progress_enabled(config), dynamic_ncols=True)
  start_time = time.perf_counter()
  plan = restored_plan
  try:
    while step < total_steps:
      epoch, start_batch = divmod(step, steps_per_epoch)
      if plan is None or restored_epoch != epoch:
        plan = make_plan(epoch)
        restored_epoch = epoch
      for batch in _batches(config, data.source, plan, train=True, epoch=epoch,
                            start_batch=start_batch):
        inputs = _step_inputs(batch, dbvae=is_dbvae, face_key=data.face_key)
        state, metrics = train_step(state, sharding.shard_batch(inputs, mesh))
        step += 1
        pending.append((step, epoch, metrics))
        bar.update(1)
        if step % int(t.log_every_steps) == 0 or step == total_steps:
          flush()
        if step % int(t.checkpoint_every_steps) == 0 or step == total_steps:
          flush()  # Never checkpoint a state whose loss went non-finite.
          checkpointer.save(step, state, epoch=epoch, plan=plan)
        if step >= total_steps:
          break
    flush()
  finally:
    bar.close()
    checkpointer.close()
    logger.close()
  training = {"steps": step, "epochs": step / steps_per_epoch,
              "steps_per_epoch": steps_per_epoch, "train_examples": data.size,
              "train_faces": int(data.faces.size), "sampling": t.sampling,
              "wall_time_s": time.perf_counter() - start_time,
              "final_train_metrics": dict(last_train)}
  if not config.eval.at_end:
    return {"training": training}
  return _evaluate(config, workdir, model_def, state, data, training,
                   encode_fn=encode_fn, mesh=mesh)


def _evaluate(config: ml_collections.ConfigDict, workdir: str, model_def, state,
              data: TrainData, training: dict, *, encode_fn, mesh) -> dict:
  """Per-group evaluation on the eval split and the report (process 0 writes)."""
  from facebias_jax.data import groups as groups_lib  # pylint: disable=g-import-not-at-top
  from facebias_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from facebias_jax.eval import evaluate, report  # pylint: disable=g-import-not-at-top

  d, e = config.data, config.eval
  source = pipeline.load_source(d.name, split=d.eval_split, data_dir=d.data_dir,
                                manual_dir=d.manual_dir)
  model = model_def.merge(state)
  model.eval()
  metrics = evaluate.evaluate_model(
      model, source, group_spec=e.groups, batch_size=int(e.batch_size),
      image_size=int(d.image_size), normalize=d.normalize, n_boot=int(e.n_boot),
      seed=int(config.seed), label_key=d.label_key)
  extra = {"training": training}
  if encode_fn is not None and data.faces.size:
    extra["debias"] = _dbvae_diagnostics(config, workdir, data, encode_fn, state, mesh,
                                         groups_lib, report)
  dataset = {"name": d.name, "split": d.eval_split, "num_examples": len(source),
             "groups": e.groups, "label_key": d.label_key}
  model_info = {"name": config.model.name, "workdir": os.path.abspath(workdir),
                "step": int(training["steps"])}
  if jax.process_index() != 0:
    return {"metrics": metrics, "dataset": dataset, "model": model_info, **extra}
  result = report.write_report(workdir, metrics=metrics, dataset=dataset, model=model_info,
                               config=ckpt_lib.config_to_dict(config), extra=extra)
  try:
    report.plot_training_curves(workdir, os.path.join(workdir, "training_curves.png"))
  except (ValueError, FileNotFoundError) as err:  # No logged step (e.g. resumed at the end).
    logging.warning("No training curves: %s", err)
  return result


def _dbvae_diagnostics(config, workdir, data, encode_fn, state, mesh, groups_lib,
                       report) -> dict:
  """Latent histograms, extreme-probability faces and probability mass per group."""
  b = config.debias
  mu = encode_faces(config, data, encode_fn, state, mesh)
  p = debias.sample_probabilities(mu, bins=int(b.bins), smoothing=float(b.smoothing),
                                  combine=b.combine)
  face_attrs = {k: v[data.faces] for k, v in data.attributes.items()}
  diagnostics: dict[str, Any] = {"probability_ratio_max_min": float(p.max() / p.min()),
                                 "effective_sample_fraction": float(1.0 / np.sum(p ** 2)
                                                                    / p.size)}
  try:
    group_ids = groups_lib.assign_groups(face_attrs, config.eval.groups)
    shares = {}
    for g in np.unique(group_ids):
      sel = group_ids == g
      shares[str(g)] = {"fraction_of_faces": float(sel.mean()),
                        "sampling_share": float(p[sel].sum())}
    diagnostics["groups"] = shares
  except (ValueError, KeyError) as err:
    logging.warning("No per-group sampling shares: %s", err)
  if jax.process_index() == 0:
    report.plot_latent_histograms(debias.latent_histograms(mu, int(b.bins)),
                                  os.path.join(workdir, "latent_histograms.png"))
    k = min(8, p.size)
    order = np.argsort(p, kind="stable")
    low, high = order[:k], order[::-1][:k]
    images = lambda idx: np.stack([np.asarray(data.source[int(data.faces[i])]["image"])
                                   for i in idx])
    report.plot_extreme_samples(images(low), images(high),
                                os.path.join(workdir, "extreme_samples.png"),
                                probs_low=p[low].tolist(), probs_high=p[high].tolist())
  return diagnostics
