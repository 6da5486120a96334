"""Validation per group during training, and the choice of the checkpoint to keep.

Every published method on the group-robustness benchmarks picks its checkpoint by the
worst group's accuracy on the validation split (BalancingGroups' ``min_acc_va``, Group
DRO, JTT, DFR). The loop does the same:

* :class:`Validator` evaluates the validation split (``config.data.validation_split``)
  per group (``config.eval.groups``, the final report's groups) every
  ``config.eval.every_epochs`` epochs or ``config.eval.every_steps`` steps, and turns
  the result into one ``metrics.jsonl`` record (``val_accuracy``,
  ``val_worst_group_accuracy``, ``val_loss``, ``val_group_accuracy``...).
* :class:`Selection` follows ``config.train.select_by`` (``worst_group_accuracy``,
  ``accuracy``, ``loss`` or ``last``): the best step so far, and the validations since
  it improved for early stopping (``config.train.patience``). Its state is checkpointed
  (item ``selection``), so a resumed run selects what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

from facebias_jax.data import sources
from facebias_jax.eval import evaluate
from facebias_jax.train import plan, steps as steps_lib

SELECT_BY = ("worst_group_accuracy", "accuracy", "loss", "last")
# Metric -> True when larger is better.
_HIGHER_IS_BETTER = {"worst_group_accuracy": True, "accuracy": True, "loss": False}


def _bce(logits: np.ndarray, labels: np.ndarray) -> float:
  """Mean binary cross-entropy of positive-class logits (softmax CE for 2 logits)."""
  z = np.asarray(logits, np.float64)
  y = np.asarray(labels, np.float64)
  return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def validation_record(result: Mapping[str, Any], loss: float) -> dict[str, Any]:
  """The ``metrics.jsonl`` record of one validation (a ``group_metrics`` dict)."""
  fairness = result["fairness"]
  record = {"val_accuracy": result["overall"]["accuracy"],
            "val_loss": loss,
            "val_worst_group_accuracy": fairness["worst_group_accuracy"],
            "val_worst_group": fairness["worst_group"],
            "val_mean_group_accuracy": fairness["mean_group_accuracy"],
            "val_group_accuracy": {g: b["accuracy"] for g, b in result["groups"].items()},
            "val_constant_prediction": result.get("settings", {}).get("constant_prediction")}
  return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}


class Validator:
  """Evaluates models on the validation split per group (see the module docstring).

  Args:
    config: the training config.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    d = config.data
    self.config = config
    split = d.get("validation_split", "validation")
    try:
      self.source = sources.load_source(d.name, split=split, data_dir=d.data_dir,
                                        manual_dir=d.manual_dir)
    except ValueError as err:
      raise ValueError(f"{err}\nValidation (config.train.select_by="
                       f"{config.train.select_by!r}, config.eval.every_epochs / every_steps) "
                       f"needs config.data.validation_split; set it to a split of {d.name}, "
                       "or select_by='last' with eval.every_epochs=0 to train without "
                       "validation.") from None
    if not len(self.source):
      raise ValueError(f"The validation split {split!r} of {d.name} is empty; set "
                       "config.data.validation_split, or select_by='last' with "
                       "eval.every_epochs=0")
    self.split = split

  def __call__(self, model) -> dict[str, Any]:
    """``metrics.jsonl`` record of ``model`` (an eval-mode copy runs; mode untouched)."""
    e = self.config.eval
    preds = evaluate.predict(model, plan.eval_batches(self.config, self.source))
    bad = int(np.sum(~np.isfinite(preds["logit"])))
    if bad:
      # Training-mode losses can stay finite while eval-mode statistics overflow.
      raise FloatingPointError(
          f"validation: the model's outputs are NaN or infinite on {bad} of "
          f"{preds['logit'].size} examples of the {self.split!r} split (it diverged); lower "
          "config.train.learning_rate or set config.train.grad_clip_norm. The checkpoints "
          "written so far are kept.")
    result = evaluate.evaluate_predictions(
        preds, group_spec=e.groups, n_boot=int(e.get("val_n_boot", 0)),
        seed=int(self.config.seed), min_group_size=int(e.get("min_group_size", 0)),
        value_names=sources.value_names(self.source))
    return validation_record(result, _bce(preds["logit"], preds["label"]))


def due(config: ml_collections.ConfigDict, step: int, *, epoch_end: bool,
        epochs_done: int, last: bool) -> bool:
  """Whether the loop validates after ``step``."""
  e = config.eval
  every_steps, every_epochs = int(e.get("every_steps", 0)), int(e.get("every_epochs", 0))
  if not (every_steps or every_epochs):
    return False
  return (last or (every_steps and step % every_steps == 0)
          or (every_epochs and epoch_end and epochs_done % every_epochs == 0))


@dataclasses.dataclass
class Selection:
  """The best validated step under ``select_by``, and early-stopping patience.

  Attributes:
    select_by: the metric (``SELECT_BY``).
    patience: validations without improvement before training stops (0 = never).
    best_step: step of the best validation so far (-1: none yet).
    best_value: its metric value.
    bad: validations since the best.
  """

  select_by: str
  patience: int = 0
  best_step: int = -1
  best_value: float = math.nan
  bad: int = 0

  def update(self, step: int, record: Mapping[str, Any]) -> bool:
    """Takes one validation; returns True when it is the new best."""
    if self.select_by == "last":
      self.best_step = step
      return True
    value = record.get(f"val_{self.select_by}")
    if value is None:  # e.g. no group large enough: keep the earlier best.
      self.bad += 1
      return False
    better = (self.best_step < 0 or
              (value > self.best_value if _HIGHER_IS_BETTER[self.select_by]
               else value < self.best_value))
    if better:
      self.best_step, self.best_value, self.bad = int(step), float(value), 0
    else:
      self.bad += 1
    return better

  @property
  def stop(self) -> bool:
    """Whether early stopping says to stop now."""
    return self.patience > 0 and self.bad >= self.patience

  def state(self) -> dict[str, np.ndarray]:
    """The checkpoint item."""
    return {"best_step": np.asarray(self.best_step, np.int64),
            "best_value": np.asarray(self.best_value, np.float64),
            "bad": np.asarray(self.bad, np.int64)}

  def restore(self, item: Mapping[str, Any]) -> None:
    self.best_step = int(np.asarray(item["best_step"]))
    self.best_value = float(np.asarray(item["best_value"]))
    self.bad = int(np.asarray(item["bad"]))

  def summary(self) -> dict[str, Any]:
    """What report.json records under ``selection``."""
    value = None if math.isnan(self.best_value) else self.best_value
    return {"select_by": self.select_by, "step": self.best_step if self.best_step >= 0 else None,
            "value": value, "patience": self.patience}


def local_model(model_def: steps_lib.ModelDef, state: steps_lib.TrainState):
  """An eval-mode model holding this process's copy of the (replicated) state.

  Training state is replicated over every device of every process; evaluation runs on
  one local device, so it takes the first local copy (``addressable_data(0)``), which
  works the same on one host and many.
  """
  local = jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x,
                       state)
  return model_def.merge(local)
