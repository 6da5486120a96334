"""Saving and restoring a training run's state (orbax), in the items of ``runs``.

Every step folder holds four items: ``model`` (parameters and BatchNorm statistics,
what ``runs.load_model`` restores alone), ``train`` (optimizer state, step counter,
base PRNG key, Group DRO's group weights), ``sampler`` (the epoch and its index plan) and ``selection`` (the best
validated step so far, ``train.selection``). The sampler item makes a resumed run see
exactly the batches an uninterrupted run would: the plan of a DB-VAE epoch depends on
the weights at the start of that epoch, so it is stored rather than recomputed.

Retention: the ``keep`` newest steps, and always the selected step (rotation never
deletes the checkpoint the run will report).

Integrity: every step also holds ``integrity`` (a CRC-32 of each item), checked on
restore. A step that fails to restore or to match is moved aside to
``checkpoints/<step>.corrupt`` (never deleted) with a one-line warning, and the run
resumes from the newest step that restores (:meth:`Checkpointer.restore_latest`).

Only the training process writes here; readers go through ``runs`` (read-only).
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import shutil
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from facebias_jax import checksums, runs
from facebias_jax.train import steps as steps_lib
from facebias_jax.train import workdir as workdir_lib


class _DropDiskFullRecords(std_logging.Filter):
  """Orbax's writer threads log every failed write of a full disk with its traceback
  (hundreds of lines, after the save call has returned); the checkpointer reports it
  once, as ``DiskFullError``, instead."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not (workdir_lib.is_disk_full(record.getMessage())
                or (exc is not None and workdir_lib.is_disk_full(exc)))


# On absl's logger, which orbax logs through, for good: the threads may log late.
std_logging.getLogger("absl").addFilter(_DropDiskFullRecords())


def _train_item(state: steps_lib.TrainState) -> dict[str, Any]:
  return {"step": state.step, "opt_state": state.opt_state, "rng": state.rng,
          "group_weights": state.group_weights}


class Checkpointer:
  """Saves and restores a run's state under ``workdir/checkpoints``.

  Args:
    workdir: the run's folder.
    keep: number of most recent checkpoints kept (besides the selected one).
  """

  def __init__(self, workdir: str, *, keep: int = 3):
    self.directory = runs.checkpoint_dir(workdir)
    self.keep = max(1, int(keep))
    # cleanup_tmp_directories: a run killed mid-save leaves a partial tmp folder; only
    # the training process (this class) ever removes them. Retention is ours (prune).
    # Synchronous saves: a failed write (a full disk) is raised by the save itself, and
    # no writer thread outlives it to print tracebacks. Measured on the 2-core
    # development CPU, checksums included: 0.2 s for the standard CNN, 0.6 s for a
    # ResNet-18, 1.5 s for a ResNet-50 (with Adam's state), at a few saves per epoch.
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                           cleanup_tmp_directories=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self._failed = False

  @contextlib.contextmanager
  def _disk_full_as_one_line(self) -> Iterator[None]:
    """Turns a full disk during a save into ``DiskFullError``: the unfinished folder is
    removed, the finished checkpoints are left as they are."""
    try:
      yield
    except Exception as err:  # pylint: disable=broad-except
      if not workdir_lib.is_disk_full(err):
        raise
      self._failed = True
      self._remove_unfinished()
      newest = runs.finished_steps(os.path.dirname(self.directory))
      raise workdir_lib.disk_full_error(
          self.directory, "saving a checkpoint; the newest complete checkpoint is step "
          f"{newest[-1] if newest else None}, intact") from None

  def _remove_unfinished(self) -> None:
    """Deletes the temporary folders of saves that did not finish (training process)."""
    if jax.process_index() != 0 or not os.path.isdir(self.directory):
      return
    for name in os.listdir(self.directory):
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def latest_step(self) -> int | None:
    """Step of the newest complete checkpoint, or None."""
    return self.manager.latest_step()

  def save(self, step: int, state: steps_lib.TrainState, *, epoch: int, plan: np.ndarray,
           selection: dict[str, np.ndarray], protect: int | None = None) -> None:
    """Saves (the files are on disk when it returns), then deletes
    the steps beyond the ``keep`` newest except ``protect`` (the selected step)."""
    sampler = {"epoch": np.asarray(epoch, np.int64), "plan": np.asarray(plan, np.int64)}
    items = {runs.MODEL_ITEM: runs.model_item(state.params, state.model_state),
             runs.TRAIN_ITEM: _train_item(state), runs.SAMPLER_ITEM: sampler,
             runs.SELECTION_ITEM: selection}
    integrity = {"crc32": {name: checksums.tree_crc(item) for name, item in items.items()}}
    args = {name: ocp.args.StandardSave(item) for name, item in items.items()}
    args[runs.INTEGRITY_ITEM] = ocp.args.JsonSave(integrity)
    with self._disk_full_as_one_line():
      self.manager.save(int(step), args=ocp.args.Composite(**args))
    # Older steps are finished (orbax waits for the previous save before a new one).
    finished = [s for s in self.manager.all_steps() if s != int(step)]
    newest = sorted(finished)[-(self.keep - 1):] if self.keep > 1 else []
    for old in finished:
      if old not in newest and old != protect:
        self.manager.delete(old)

  def restore(self, step: int, state_like: steps_lib.TrainState
              ) -> tuple[steps_lib.TrainState, int, np.ndarray, dict]:
    """Restores a checkpoint into the structure and shardings of ``state_like``.

    Returns:
      ``(state, epoch, plan, selection item)``.

    Raises:
      runs.CorruptCheckpointError: the step cannot be read or does not match its
        checksums.
    """
    workdir = os.path.dirname(self.directory)
    try:
      saved = runs.read_integrity(workdir, step)
      restored = self._restore_items(step, state_like)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
      raise runs.CorruptCheckpointError(
          f"checkpoint step {step} ({runs.step_dir(workdir, step)}) cannot be restored: "
          f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
      ) from None
    for name, item in restored.items():
      runs.verify_item(workdir, step, name, item, saved)
    model, train = restored[runs.MODEL_ITEM], restored[runs.TRAIN_ITEM]
    state = state_like.replace(step=train["step"], params=model["params"],
                               model_state=model["model_state"],
                               opt_state=train["opt_state"], rng=train["rng"],
                               group_weights=train["group_weights"])
    sampler = restored[runs.SAMPLER_ITEM]
    return (state, int(np.asarray(sampler["epoch"])), np.asarray(sampler["plan"], np.int64),
            dict(restored[runs.SELECTION_ITEM]))

  def restore_latest(self, state_like: steps_lib.TrainState
                     ) -> tuple[int, steps_lib.TrainState, int, np.ndarray, dict] | None:
    """The newest step that restores, as ``(step, *restore(step))``; None without steps.

    Damaged steps met on the way are moved aside to ``<step>.corrupt`` with a warning.

    Raises:
      runs.CorruptCheckpointError: every step is damaged (the message lists them).
    """
    damaged = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        return (step, *self.restore(step, state_like))
      except runs.CorruptCheckpointError as err:
        aside = self._move_aside(step)
        logging.warning("%s; moved to %s, trying the next older step", err, aside)
        damaged.append(f"{err} (moved to {aside})")
    if damaged:
      raise runs.CorruptCheckpointError("no checkpoint restores: " + "; ".join(damaged)
                                        + ". Delete the checkpoints folder to start over.")
    return None

  def _move_aside(self, step: int) -> str:
    """Renames a damaged step folder so orbax no longer lists it (only the training
    process, which holds the workdir lock, ever does this)."""
    source = os.path.join(self.directory, str(int(step)))
    target, n = f"{source}.corrupt", 1
    while os.path.exists(target):
      target, n = f"{source}.corrupt{n}", n + 1
    if jax.process_index() == 0:
      os.rename(source, target)
    if jax.process_count() > 1:  # Every process lists the steps after the rename.
      multihost_utils.sync_global_devices(f"facebias_move_aside_{int(step)}")
    self.manager.reload()
    return target

  def _restore_items(self, step: int, state_like: steps_lib.TrainState) -> dict:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {
        runs.MODEL_ITEM: runs.model_item(state_like.params, state_like.model_state),
        runs.TRAIN_ITEM: _train_item(state_like)})
    args = {name: ocp.args.StandardRestore(item) for name, item in abstract.items()}
    # Plain arrays, any shape.
    args[runs.SAMPLER_ITEM] = ocp.args.StandardRestore()
    args[runs.SELECTION_ITEM] = ocp.args.StandardRestore()
    restored = self.manager.restore(int(step), args=ocp.args.Composite(**args))
    return {name: restored[name] for name in args}

  def wait(self) -> None:
    """Blocks until pending saves are on disk (saves are synchronous: a no-op unless a
    save is running in another thread)."""
    with self._disk_full_as_one_line():
      self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the pending save and closes; after a full disk, only releases."""
    if self._failed:
      # Let orbax's threads end (their errors are the one already raised), then drop
      # what they left unfinished.
      for finish in (self.manager.wait_until_finished, self.manager.close):
        with contextlib.suppress(Exception):
          finish()
      self._remove_unfinished()
      return
    self.wait()
    self.manager.close()
