"""The training loop: ``train_and_evaluate(config, workdir) -> report dict``.

One function trains a classifier or a DB-VAE as ``config`` describes and evaluates it
per demographic group at the end (flax ``examples/imagenet`` style, importable from a
notebook; ``experiments/train_*.py`` only parse flags):

* checks: ``train.config.validate_config``; the workdir's ``config.json`` (``runs``);
* data: ``train.plan`` (the training split, one index plan per epoch; DB-VAE
  probabilities recomputed from the encoder at the start of every epoch);
* model ``runs.build_model(config)``, the optimizer of ``config.train``;
* jit-compiled steps (``train.steps``) on a 1-D ``data`` mesh over all devices;
* ``metrics.jsonl`` and TensorBoard (``train.metrics_writer``), a tqdm bar;
* orbax checkpoints every ``checkpoint_every_steps`` and at the end
  (``train.checkpoint``); running again with the same workdir resumes from the latest
  one, on the same batches;
* at the end, ``eval.evaluate.evaluate_model`` on ``config.data.eval_split`` and
  ``eval.report.write_report`` (plus the DB-VAE's diagnostics).

A non-finite loss raises ``NonFiniteLossError`` naming the step; no checkpoint is
written after it, so the last good one stays the latest.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any, Callable, Mapping

import jax
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from facebias_jax import runs
from facebias_jax.data import sources
from facebias_jax.eval import diagnostics, evaluate, plots, report
from facebias_jax.train import checkpoint as ckpt_lib
from facebias_jax.train import config as config_lib
from facebias_jax.train import debias, metrics_writer, plan as plan_lib, sharding
from facebias_jax.train import steps as steps_lib


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the message names the first bad step."""


def _progress_enabled(config: ml_collections.ConfigDict) -> bool:
  return bool(config.train.progress_bar) and sys.stderr.isatty() and jax.process_index() == 0


def _step_inputs(batch: Mapping[str, Any], *, dbvae: bool, face_key: str) -> dict[str, np.ndarray]:
  """The arrays a step needs from a pipeline batch (no strings, no attributes dict)."""
  inputs = {"image": batch["image"], "label": batch["label"], "mask": batch["mask"]}
  if dbvae:
    flags = plan_lib.face_flags(batch.get("attributes", {}), batch["label"], face_key)
    inputs["vae_mask"] = flags & batch["mask"]
  return inputs


@functools.lru_cache(maxsize=16)
def _compiled_train_step(model_def: steps_lib.ModelDef, optimizer: tuple, kind: str,
                         kl_weight: float, reconstruction_loss: str):
  """``(tx, jitted train step)``, shared by runs with the same model and optimizer.

  Several runs in one process (tests, the smoothing sweep, notebooks) then reuse one
  compiled step instead of recompiling it for every run.
  """
  kwargs = dict(optimizer)
  tx = steps_lib.make_optimizer(kwargs.pop("learning_rate"), **kwargs)
  return tx, steps_lib.make_train_step(model_def, tx, kind=kind, kl_weight=kl_weight,
                                       reconstruction_loss=reconstruction_loss)


@functools.lru_cache(maxsize=16)
def _compiled_encode_step(model_def: steps_lib.ModelDef, out_sharding):
  return steps_lib.make_encode_step(model_def, out_sharding)


class _Logger:
  """Collects step metrics, fetches them once per logging interval, checks and logs them."""

  def __init__(self, writer: metrics_writer.MetricsWriter, checkpointer, workdir: str,
               bar: tqdm, step: int):
    self.writer, self.checkpointer, self.workdir, self.bar = writer, checkpointer, workdir, bar
    self.pending: list[tuple[int, int, dict]] = []
    self.last = {"time": time.perf_counter(), "step": step}
    self.latest: dict[str, float] = {}

  def add(self, step: int, epoch: int, metrics: dict) -> None:
    self.pending.append((step, epoch, metrics))
    self.bar.update(1)

  def flush(self) -> None:
    if not self.pending:
      return
    fetched = jax.device_get([m for _, _, m in self.pending])
    for (s, _, _), m in zip(self.pending, fetched):
      if not (np.isfinite(m["loss"]) and m["finite"]):
        self.checkpointer.wait()
        raise NonFiniteLossError(
            f"non-finite loss or parameters at step {s} (loss {float(m['loss'])}) in "
            f"{self.workdir}; the last good checkpoint is step "
            f"{self.checkpointer.latest_step()}. Lower config.train.learning_rate or set "
            "config.train.grad_clip_norm.")
    step = self.pending[-1][0]
    means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k != "finite"}
    now = time.perf_counter()
    means["steps_per_sec"] = (step - self.last["step"]) / max(now - self.last["time"], 1e-9)
    means["epoch"] = self.pending[-1][1]
    self.last.update(time=now, step=step)
    self.latest = means
    self.writer.write(step, means)
    self.pending.clear()
    self.bar.set_postfix(loss=f"{means['loss']:.4f}", acc=f"{means['accuracy']:.3f}",
                         steps_s=f"{means['steps_per_sec']:.1f}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       on_step: Callable[[int], None] | None = None) -> dict:
  """Trains the model ``config`` describes into ``workdir``, then evaluates it per group.

  Args:
    config: training config (see ``experiments/configs/classifier.py``).
    workdir: output folder; an existing one with checkpoints is resumed.
    on_step: called with the step number after every step, once its checkpoint (if
      due) has been handed to orbax (progress hooks; the resume tests kill the run
      from here at an exact step).

  Returns:
    The report dict written to ``workdir/report.json`` (``metrics`` = the
    ``group_metrics`` dict, plus ``dataset``, ``model``, ``config``, ``training``),
    or, with ``config.eval.at_end=False``, ``{"training": ...}`` only.

  Raises:
    ValueError: invalid config; ``runs.ConfigMismatchError`` when the workdir holds a
      different experiment; ``NonFiniteLossError`` on NaN/inf loss.
  """
  sharding.maybe_initialize_distributed()
  config_lib.validate_config(config)
  runs.check_or_write_config(config, workdir)
  t = config.train
  is_dbvae = config.model.name == "dbvae"
  mesh = sharding.make_mesh()
  sharding.check_batch_size(int(t.batch_size), mesh)

  data = plan_lib.TrainData(config)
  plan_len = plan_lib.epoch_length(config, data)
  steps_per_epoch = plan_len // int(t.batch_size)
  if steps_per_epoch == 0:
    raise ValueError(f"an epoch of {plan_len} examples gives no batch of "
                     f"{t.batch_size}: lower config.train.batch_size")
  total_steps = int(t.max_steps) if int(t.max_steps) > 0 else int(t.num_epochs) * steps_per_epoch

  model = runs.build_model(config)
  opt_kwargs = config_lib.optimizer_kwargs(config, total_steps=total_steps)
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
  progress = _progress_enabled(config)

  checkpointer = ckpt_lib.Checkpointer(workdir, keep=int(t.keep_checkpoints))
  writer = metrics_writer.MetricsWriter(workdir)
  plan_epoch, plan = -1, None
  latest = checkpointer.latest_step()
  if latest is not None:
    state, plan_epoch, plan = checkpointer.restore(latest, state)
    logging.info("Resumed %s from step %d", workdir, latest)
    metrics_writer.truncate(writer.path, latest)
  step = int(state.step)

  bar = tqdm(total=total_steps, initial=step, desc=f"train {config.model.name}",
             disable=not progress, dynamic_ncols=True)
  log = _Logger(writer, checkpointer, workdir, bar, step)
  start_time = time.perf_counter()
  try:
    while step < total_steps:
      epoch, start_batch = divmod(step, steps_per_epoch)
      if plan is None or plan_epoch != epoch:
        probabilities = None
        if t.sampling == "dbvae":
          mu = plan_lib.encode_faces(config, data, encode_fn, state, mesh, progress=progress)
          probabilities = plan_lib.dbvae_probabilities(config, mu)
        plan, plan_epoch = plan_lib.epoch_plan(config, data, epoch,
                                               face_probabilities=probabilities), epoch
      for batch in plan_lib.batches(config, data.source, plan, train=True, epoch=epoch,
                                    start_batch=start_batch):
        inputs = _step_inputs(batch, dbvae=is_dbvae, face_key=data.face_key)
        state, metrics = train_step(state, sharding.shard_batch(inputs, mesh))
        step += 1
        log.add(step, epoch, metrics)
        if step % int(t.log_every_steps) == 0 or step == total_steps:
          log.flush()
        if step % int(t.checkpoint_every_steps) == 0 or step == total_steps:
          log.flush()  # Never checkpoint a state whose loss went non-finite.
          checkpointer.save(step, state, epoch=epoch, plan=plan)
        if on_step is not None:
          on_step(step)
        if step >= total_steps:
          break
    log.flush()
  finally:
    bar.close()
    checkpointer.close()
    writer.close()
  training = {"steps": step, "epochs": step / steps_per_epoch,
              "steps_per_epoch": steps_per_epoch, "train_examples": data.size,
              "train_faces": int(data.faces.size), "sampling": t.sampling,
              "wall_time_s": time.perf_counter() - start_time,
              "final_train_metrics": dict(log.latest)}
  if not config.eval.at_end:
    return {"training": training}
  extra = {"training": training}
  if encode_fn is not None and data.faces.size:
    extra["debias"] = _dbvae_diagnostics(config, workdir, data, encode_fn, state, mesh)
  return _evaluate(config, workdir, model_def.merge(state), extra)


def _evaluate(config: ml_collections.ConfigDict, workdir: str, model, extra: dict) -> dict:
  """Per-group evaluation on the eval split and the report (process 0 writes)."""
  d, e = config.data, config.eval
  source = sources.load_source(d.name, split=d.eval_split, data_dir=d.data_dir,
                               manual_dir=d.manual_dir)
  metrics = evaluate.evaluate_model(
      model, source, group_spec=e.groups, batch_size=int(e.batch_size),
      image_size=int(d.image_size), normalize=d.normalize, n_boot=int(e.n_boot),
      seed=int(config.seed), label_key=d.label_key)
  dataset = {"name": d.name, "split": d.eval_split, "num_examples": len(source),
             "groups": e.groups, "label_key": d.label_key}
  model_info = {"name": config.model.name, "workdir": os.path.abspath(workdir),
                "step": int(extra["training"]["steps"])}
  if jax.process_index() != 0:
    return {"metrics": metrics, "dataset": dataset, "model": model_info, **extra}
  result = report.write_report(workdir, metrics=metrics, dataset=dataset, model=model_info,
                               config=runs.config_to_dict(config), extra=extra)
  try:
    plots.plot_training_curves(workdir, os.path.join(workdir, "training_curves.png"))
  except (ValueError, FileNotFoundError) as err:  # No logged step (e.g. resumed at the end).
    logging.warning("No training curves: %s", err)
  return result


def _dbvae_diagnostics(config, workdir: str, data: plan_lib.TrainData, encode_fn, state,
                       mesh) -> dict:
  """The DB-VAE's probabilities over the training faces, per group, with the plots."""
  mu = plan_lib.encode_faces(config, data, encode_fn, state, mesh,
                             progress=_progress_enabled(config))
  face_attributes = {k: v[data.faces] for k, v in data.attributes.items()}
  face_image = lambda i: np.asarray(data.source[int(data.faces[i])]["image"])
  return diagnostics.dbvae_diagnostics(
      plan_lib.dbvae_probabilities(config, mu),
      debias.latent_histograms(mu, int(config.debias.bins)), face_attributes,
      group_spec=config.eval.groups, face_image=face_image,
      out_dir=workdir if jax.process_index() == 0 else None, value_names=data.value_names)
