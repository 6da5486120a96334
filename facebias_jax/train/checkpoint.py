"""Saving and restoring a training run's state (orbax), in the items of ``runs``.

Every step folder holds four items: ``model`` (parameters and BatchNorm statistics,
what ``runs.load_model`` restores alone), ``train`` (optimizer state, step counter,
base PRNG key, Group DRO's group weights), ``sampler`` (the epoch and its index plan) and ``selection`` (the best
validated step so far, ``train.selection``). The sampler item makes a resumed run see
exactly the batches an uninterrupted run would: the plan of a DB-VAE epoch depends on
the weights at the start of that epoch, so it is stored rather than recomputed.

Retention: the ``keep`` newest steps, and always the selected step (rotation never
deletes the checkpoint the run will report).

Only the training process writes here; readers go through ``runs`` (read-only).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from facebias_jax import runs
from facebias_jax.train import steps as steps_lib


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
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """Step of the newest complete checkpoint, or None."""
    return self.manager.latest_step()

  def save(self, step: int, state: steps_lib.TrainState, *, epoch: int, plan: np.ndarray,
           selection: dict[str, np.ndarray], protect: int | None = None) -> None:
    """Saves asynchronously (call ``wait`` before relying on the files), then deletes
    the steps beyond the ``keep`` newest except ``protect`` (the selected step)."""
    sampler = {"epoch": np.asarray(epoch, np.int64), "plan": np.asarray(plan, np.int64)}
    items = {runs.MODEL_ITEM: runs.model_item(state.params, state.model_state),
             runs.TRAIN_ITEM: _train_item(state), runs.SAMPLER_ITEM: sampler,
             runs.SELECTION_ITEM: selection}
    self.manager.save(int(step), args=ocp.args.Composite(
        **{name: ocp.args.StandardSave(item) for name, item in items.items()}))
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
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {
        runs.MODEL_ITEM: runs.model_item(state_like.params, state_like.model_state),
        runs.TRAIN_ITEM: _train_item(state_like)})
    args = {name: ocp.args.StandardRestore(item) for name, item in abstract.items()}
    # Plain arrays, any shape.
    args[runs.SAMPLER_ITEM] = ocp.args.StandardRestore()
    args[runs.SELECTION_ITEM] = ocp.args.StandardRestore()
    restored = self.manager.restore(int(step), args=ocp.args.Composite(**args))
    model, train = restored[runs.MODEL_ITEM], restored[runs.TRAIN_ITEM]
    state = state_like.replace(step=train["step"], params=model["params"],
                               model_state=model["model_state"],
                               opt_state=train["opt_state"], rng=train["rng"],
                               group_weights=train["group_weights"])
    sampler = restored[runs.SAMPLER_ITEM]
    return (state, int(np.asarray(sampler["epoch"])), np.asarray(sampler["plan"], np.int64),
            dict(restored[runs.SELECTION_ITEM]))

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
