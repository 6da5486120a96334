"""The training loop: ``train_and_evaluate(config, workdir) -> report dict``.

One function trains a classifier or a DB-VAE as ``config`` describes and evaluates it
per demographic group at the end (flax ``examples/imagenet`` style, importable from a
notebook; ``experiments/train_*.py`` only parse flags):

* checks: ``train.config.validate_config``; the workdir's ``config.json`` (``runs``);
* data: ``train.plan`` (the training split, one index plan per epoch; DB-VAE
  probabilities recomputed from the encoder at the start of every epoch);
* model ``runs.build_model(config)``, the optimizer of ``config.train``;
* the training method ``config.train.method`` (``train.methods``): the epoch's plan,
  per-example loss weights or Group DRO's objective; JTT's first stage
  (``train.jtt``) before the loop, DFR's last-layer refit (``train.dfr``) instead of it;
* jit-compiled steps (``train.steps``) on a 1-D ``data`` mesh over all devices;
* ``metrics.jsonl`` and TensorBoard (``train.metrics_writer``), a tqdm bar;
* first weights from ``config.model.init_from`` (torchvision's or another run's,
  ``train.init``);
* validation per group every ``config.eval.every_epochs`` / ``every_steps`` and the
  checkpoint selected by ``config.train.select_by`` (``train.selection``), with
  optional early stopping;
* orbax checkpoints every ``checkpoint_every_steps``, at every validation and at the
  end (``train.checkpoint``); running again with the same workdir resumes from the
  latest one, on the same batches, with the same selection;
* at the end, ``eval.evaluate.evaluate_model`` of the *selected* checkpoint on
  ``config.data.eval_split`` and ``eval.report.write_report`` (plus the DB-VAE's
  diagnostics).

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
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from facebias_jax import runs
from facebias_jax.data import sources
from facebias_jax.eval import diagnostics, evaluate, plots, report
from facebias_jax.train import checkpoint as ckpt_lib
from facebias_jax.train import config as config_lib
from facebias_jax.train import debias, dfr, jtt, methods, metrics_writer, preemption
from facebias_jax.train import init as init_lib
from facebias_jax.train import plan as plan_lib, selection, sharding
from facebias_jax.train import steps as steps_lib
from facebias_jax.train import workdir as workdir_lib

DFR_BASE_DIR = "dfr_base"


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the message names the first bad step."""


def _progress_enabled(config: ml_collections.ConfigDict) -> bool:
  return bool(config.train.progress_bar) and sys.stderr.isatty() and jax.process_index() == 0


def _step_inputs(batch: Mapping[str, Any], data: plan_lib.TrainData, *, dbvae: bool,
                 group_dro: bool) -> dict[str, np.ndarray]:
  """The arrays a step needs from a pipeline batch (no strings, no attributes dict):
  plus the loss weights (``reweight`` by loss), the group codes (Group DRO) and the
  DB-VAE's face flags."""
  mask = np.asarray(batch["mask"], bool)
  inputs = {"image": batch["image"], "label": batch["label"], "mask": mask}
  rows = np.where(mask, batch["index"], 0)  # Padding rows point at example 0, masked.
  if data.weights is not None:
    inputs["weight"] = np.where(mask, data.weights[rows], 0.0).astype(np.float32)
  if group_dro:
    inputs["group"] = data.groups.codes[rows]
  if dbvae:
    flags = plan_lib.face_flags(batch.get("attributes", {}), batch["label"], data.face_key)
    inputs["vae_mask"] = flags & mask
  return inputs


def _group_dro(config: ml_collections.ConfigDict, data: plan_lib.TrainData
               ) -> steps_lib.GroupDRO | None:
  if config.train.method != "group_dro":
    return None
  g = config.group_dro
  return steps_lib.GroupDRO(eta=float(g.eta),
                            adjustment=methods.dro_adjustment(data.groups, float(g.adjustment)))


@functools.lru_cache(maxsize=16)
def _compiled_train_step(model_def: steps_lib.ModelDef, optimizer: tuple, kind: str,
                         kl_weight: float, reconstruction_loss: str,
                         group_dro: steps_lib.GroupDRO | None):
  """``(tx, jitted train step)``, shared by runs with the same model and optimizer.

  Several runs in one process (tests, the smoothing sweep, method comparisons,
  notebooks) then reuse one compiled step instead of recompiling it for every run.
  """
  kwargs = dict(optimizer)
  tx = steps_lib.make_optimizer(kwargs.pop("learning_rate"), **kwargs)
  return tx, steps_lib.make_train_step(model_def, tx, kind=kind, kl_weight=kl_weight,
                                       reconstruction_loss=reconstruction_loss,
                                       group_dro=group_dro)


@functools.lru_cache(maxsize=16)
def _compiled_encode_step(model_def: steps_lib.ModelDef, out_sharding):
  return steps_lib.make_encode_step(model_def, out_sharding)


class _Logger:
  """Collects step metrics, fetches them once per logging interval, checks and logs them.

  Without a progress bar (no terminal: CI, nohup, SLURM logs) it prints one line per
  logging interval instead: step, epoch, loss, accuracy, steps/s and the time left.
  """

  def __init__(self, writer: metrics_writer.MetricsWriter, checkpointer, workdir: str,
               bar: tqdm, step: int, total_steps: int, print_lines: bool):
    self.writer, self.checkpointer, self.workdir, self.bar = writer, checkpointer, workdir, bar
    self.total_steps, self.print_lines = total_steps, print_lines
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
    if self.print_lines:
      left = (self.total_steps - step) / max(means["steps_per_sec"], 1e-9)
      print(f"step {step}/{self.total_steps} epoch {means['epoch']} loss {means['loss']:.4f} "
            f"accuracy {means['accuracy']:.3f} {means['steps_per_sec']:.1f} steps/s ETA "
            f"{_duration(left)}", flush=True)

  def validation(self, step: int, record: Mapping[str, Any], select: selection.Selection
                 ) -> None:
    constant = record.get("val_constant_prediction")
    if constant is not None:
      logging.warning("Validation at step %d: the model predicts class %d for every "
                      "example (collapsed; lower config.train.learning_rate?)", step, constant)
    if self.print_lines:
      worst = record.get("val_worst_group_accuracy")
      print(f"validation step {step}: accuracy {record['val_accuracy']:.3f}, worst group "
            f"{record.get('val_worst_group')} "
            f"{'n/a' if worst is None else f'{worst:.3f}'}; selected step "
            f"{select.best_step}", flush=True)


def _duration(seconds: float) -> str:
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       on_step: Callable[[int], None] | None = None) -> dict:
  """Trains the model ``config`` describes into ``workdir``, then evaluates it per group.

  Args:
    config: training config (see ``experiments/configs/classifier.py``).
    workdir: output folder; an existing one with checkpoints is resumed.
    on_step: called with the step number after every step, once its checkpoint (if
      due) has been handed to orbax (progress hooks; the resume tests kill the run
      from here at an exact step). For JTT the steps of its second stage; for DFR
      those of the base run it trains.

  Returns:
    The report dict written to ``workdir/report.json`` (``metrics`` = the
    ``group_metrics`` dict of the selected checkpoint, plus ``dataset``, ``model``,
    ``config``, ``training``, ``selection``), or, with ``config.eval.at_end=False``,
    ``{"training": ..., "selection": ...}`` only.

  Raises:
    ValueError: invalid config; ``runs.ConfigMismatchError`` when the workdir holds a
      different experiment; ``NonFiniteLossError`` on NaN/inf loss.
  """
  sharding.maybe_initialize_distributed()
  config_lib.validate_config(config)
  workdir_lib.check_writable(workdir)
  with workdir_lib.WorkdirLock(workdir):
    if config.train.method == "dfr":
      return _train_dfr(config, workdir, on_step=on_step)
    return _train(config, workdir, on_step)


def _train(config: ml_collections.ConfigDict, workdir: str,
           on_step: Callable[[int], None] | None) -> dict:
  """``train_and_evaluate`` of the methods that train (all but DFR), workdir locked."""
  t = config.train
  runs.check_config(config, workdir)
  is_dbvae = config.model.name == "dbvae"
  mesh = sharding.make_mesh()
  sharding.check_batch_size(int(t.batch_size), mesh)

  data = plan_lib.TrainData(config)
  error_set = None
  if t.method == "jtt":
    error_set = jtt.error_set(config, workdir, data, train_and_evaluate)
    data.repeats = methods.jtt_repeats(data.size, np.asarray(error_set["indices"], np.int64),
                                       int(config.jtt.upweight))
  plan_len = plan_lib.epoch_length(config, data)
  steps_per_epoch = plan_len // int(t.batch_size)
  if steps_per_epoch == 0:
    why = (f" (config.train.method={t.method!r} over the groups "
           f"{data.groups.by_name(data.groups.counts.tolist())})"
           if t.method in methods.GROUP_METHODS else "")
    raise ValueError(f"an epoch of {plan_len} examples{why} gives no batch of "
                     f"{t.batch_size}: lower config.train.batch_size")
  total_steps = int(t.max_steps) if int(t.max_steps) > 0 else int(t.num_epochs) * steps_per_epoch
  validator = selection.Validator(config) if config_lib.validates(config) else None
  select = selection.Selection(t.select_by, int(t.patience))

  latest = (runs.finished_steps(workdir) or [None])[-1]
  model = runs.build_model(config)
  init_source = init_lib.initialize_from(config, model) if latest is None else None
  opt_kwargs = config_lib.optimizer_kwargs(config, total_steps=total_steps)
  group_dro = _group_dro(config, data)
  compute_dtype = t.get("dtype", "float32")
  tx, train_step = _compiled_train_step(
      steps_lib.split_model(model, compute_dtype=compute_dtype)[0],
      tuple(sorted(opt_kwargs.items())),
      "dbvae" if is_dbvae else "classifier", float(config.debias.kl_weight),
      config.debias.reconstruction_loss, group_dro)
  model_def, state = steps_lib.create_train_state(
      model, tx, jax.random.PRNGKey(int(config.seed)), num_groups=data.groups.counts.size,
      compute_dtype=compute_dtype)
  del model
  state = sharding.replicate(state, mesh)
  encode_fn = (_compiled_encode_step(model_def, sharding.replicated(mesh))
               if is_dbvae else None)
  progress = _progress_enabled(config)

  checkpointer = ckpt_lib.Checkpointer(workdir, keep=int(t.keep_checkpoints))
  # Written only now that data, model and validation are set up: a run refused above
  # leaves nothing behind that would block the corrected one.
  runs.write_config(config, workdir)
  writer = metrics_writer.MetricsWriter(workdir)
  plan_epoch, plan = -1, None
  restored = checkpointer.restore_latest(state) if latest is not None else None
  if restored is not None:  # The newest step that restores (damaged ones moved aside).
    latest, state, plan_epoch, plan, selected = restored
    select.restore(selected)
    logging.info("Resumed %s from step %d", workdir, latest)
    metrics_writer.truncate(writer.path, latest)
  step = int(state.step)

  bar = tqdm(total=total_steps, initial=step, desc=f"train {config.model.name}",
             disable=not progress, dynamic_ncols=True)
  log = _Logger(writer, checkpointer, workdir, bar, step, total_steps,
                print_lines=not progress and jax.process_index() == 0)
  start_time = time.perf_counter()
  # SIGTERM and a first Ctrl-C only ask the loop to checkpoint and stop.
  stopping = False
  with preemption.StopRequests() as stop:
    try:
      while step < total_steps and not select.stop and not stopping:
        epoch, start_batch = divmod(step, steps_per_epoch)
        if plan is None or plan_epoch != epoch:
          probabilities = None
          if t.method == "dbvae":
            mu = plan_lib.encode_faces(config, data, encode_fn, state, mesh, progress=progress)
            probabilities = plan_lib.dbvae_probabilities(config, mu)
          plan, plan_epoch = plan_lib.epoch_plan(config, data, epoch,
                                                 face_probabilities=probabilities), epoch
        for batch in plan_lib.batches(config, data.source, plan, train=True, epoch=epoch,
                                      start_batch=start_batch):
          inputs = _step_inputs(batch, data, dbvae=is_dbvae, group_dro=group_dro is not None)
          state, metrics = train_step(state, sharding.shard_batch(inputs, mesh))
          step += 1
          log.add(step, epoch, metrics)
          last = step == total_steps
          validate = validator is not None and selection.due(
              config, step, epoch_end=step % steps_per_epoch == 0,
              epochs_done=step // steps_per_epoch, last=last)
          stopping = stop.requested(step)  # SIGTERM / Ctrl-C: checkpoint, then stop.
          save = validate or last or stopping or step % int(t.checkpoint_every_steps) == 0
          if save or step % int(t.log_every_steps) == 0:
            log.flush()  # Never checkpoint a state whose loss went non-finite.
          if validate:
            record = validator(selection.local_model(model_def, state))
            select.update(step, record)
            writer.write(step, {"epoch": epoch, **record}, prefix="val")
            log.validation(step, record, select)
          elif select.select_by == "last":
            select.update(step, {})
          if save or select.stop:
            checkpointer.save(step, state, epoch=epoch, plan=plan, selection=select.state(),
                              protect=select.best_step)
          if on_step is not None:
            on_step(step)
          if last or select.stop or stopping:
            break
      log.flush()
    finally:
      bar.close()
      checkpointer.close()
      writer.close()
  if stopping and step < total_steps:
    raise preemption.TrainingInterrupted(stop.signum, step, workdir)
  training = {"steps": step, "epochs": step / steps_per_epoch,
              "steps_per_epoch": steps_per_epoch, "train_examples": data.size,
              "train_faces": int(data.faces.size), "method": t.method,
              "dtype": compute_dtype,
              "wall_time_s": time.perf_counter() - start_time,
              "stopped_early": bool(select.stop and step < total_steps),
              "init_from": init_source, "final_train_metrics": dict(log.latest)}
  if t.method in methods.GROUP_METHODS:
    training["groups"] = data.groups.by_name(data.groups.counts.tolist())
  if group_dro is not None:
    q = np.asarray(jax.device_get(state.group_weights.addressable_data(0)), np.float64)
    training["group_dro_weights"] = data.groups.by_name(q.tolist())
  if error_set is not None:
    training["jtt"] = {k: v for k, v in error_set.items() if k != "indices"}
  extra = {"training": training, "selection": select.summary()}
  if not config.eval.at_end:
    return extra
  if encode_fn is not None and data.faces.size:
    extra["debias"] = _dbvae_diagnostics(config, workdir, data, encode_fn, state, mesh)
  chosen = select.best_step if select.best_step >= 0 else step
  model = (selection.local_model(model_def, state) if chosen == step
           else runs.load_run(workdir, step=chosen).model)
  return _evaluate(config, workdir, model, chosen, extra)


def _dfr_base(config: ml_collections.ConfigDict, workdir: str,
              on_step: Callable[[int], None] | None) -> runs.Run:
  """The ERM run DFR refits: ``config.dfr.base_run``, or one trained (or resumed) now
  into ``<workdir>/dfr_base`` with this config's model, data and optimizer; its
  selected checkpoint."""
  base_dir = os.path.expanduser(str(config.dfr.base_run or ""))
  if not base_dir:
    base_dir = os.path.join(workdir, DFR_BASE_DIR)
    train_and_evaluate(dfr.base_config(config), base_dir, on_step=on_step)
  elif not runs.finished_steps(base_dir):
    raise FileNotFoundError(f"config.dfr.base_run={base_dir!r} has no finished checkpoint; "
                            "train it first (method 'erm'), or leave dfr.base_run empty to "
                            "train one inside this run's workdir")
  return runs.load_run(base_dir, step=runs.selected_step(base_dir))


def _train_dfr(config: ml_collections.ConfigDict, workdir: str,
               on_step: Callable[[int], None] | None = None) -> dict:
  """DFR: the base run's last layer refit on the validation split, saved as this run's
  checkpoint (at the base run's step), then evaluated like any run."""
  runs.check_config(config, workdir)
  base = _dfr_base(config, workdir, on_step)
  model, record = dfr.retrain(config, base)
  if base.step not in runs.finished_steps(workdir):
    mesh = sharding.make_mesh()
    tx = config_lib.make_optimizer_from_config(config, total_steps=1)
    _, state = steps_lib.create_train_state(model, tx, jax.random.PRNGKey(int(config.seed)))
    state = sharding.replicate(state.replace(step=jnp.asarray(base.step, jnp.int32)), mesh)
    select = selection.Selection("last", best_step=base.step)
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=1)
    runs.write_config(config, workdir)
    try:
      checkpointer.save(base.step, state, epoch=0, plan=np.arange(1), selection=select.state())
    finally:
      checkpointer.close()
  extra = {"training": {"method": "dfr", "steps": base.step, "dfr": record},
           "selection": {"select_by": "dfr", "step": base.step, "value": None,
                         "patience": 0}}
  if not config.eval.at_end:
    return extra
  return _evaluate(config, workdir, model, base.step, extra)


def _evaluate(config: ml_collections.ConfigDict, workdir: str, model, step: int,
              extra: dict) -> dict:
  """Per-group evaluation of the checkpoint at ``step`` on the eval split, and the
  report (process 0 writes)."""
  d, e = config.data, config.eval
  source = sources.load_source(d.name, split=d.eval_split, data_dir=d.data_dir,
                               manual_dir=d.manual_dir)
  metrics = evaluate.evaluate_model(
      model, source, group_spec=e.groups, batch_size=int(e.batch_size),
      image_size=int(d.image_size), normalize=d.normalize, n_boot=int(e.n_boot),
      seed=int(config.seed), label_key=d.label_key,
      min_group_size=int(e.get("min_group_size", 0)))
  dataset = {"name": d.name, "split": d.eval_split, "num_examples": len(source),
             "groups": e.groups, "label_key": d.label_key}
  model_info = {"name": config.model.name, "workdir": os.path.abspath(workdir),
                "step": int(step)}
  if jax.process_index() != 0:
    return {"metrics": metrics, "dataset": dataset, "model": model_info, **extra}
  result = report.write_report(workdir, metrics=metrics, dataset=dataset, model=model_info,
                               config=runs.config_to_dict(config), extra=extra)
  if os.path.exists(os.path.join(workdir, runs.METRICS_FILE)):  # DFR trains no steps.
    try:
      plots.plot_training_curves(workdir, os.path.join(workdir, "training_curves.png"))
    except ValueError as err:  # No logged step (e.g. resumed at the end).
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
