"""Just Train Twice (Liu et al., ICML 2021): upsample what a short ERM run gets wrong.

Stage 1 trains ERM for ``config.jtt.identify_epochs`` epochs (T) into
``<workdir>/jtt_identify/`` (a normal run directory: resumable, no validation); the
training examples its final model misclassifies (eval mode, no augmentation) form the
error set, written to ``<workdir>/jtt_error_set.json`` with its size per training
group. Stage 2 is the run itself: a fresh model (or ``config.model.init_from``) on
epochs in which every error-set example appears ``config.jtt.upweight`` times
(lambda) and every other example once (``methods.jtt_repeats``), with the usual
validation and selection. Neither stage uses group labels; the counts per group are
reported only.

The paper's CelebA setting: T = 1, lambda = 50, lr 1e-5, weight decay 0.1 (SGD).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from facebias_jax import runs
from facebias_jax.eval import evaluate, metrics
from facebias_jax.train import methods, plan

IDENTIFY_DIR = "jtt_identify"
ERROR_SET_FILE = "jtt_error_set.json"


def identify_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Stage 1's config: the same model, data and optimizer, ERM for T epochs, no
  validation, no final evaluation."""
  stage = ml_collections.ConfigDict(config.to_dict())
  stage.train.method = "erm"
  stage.train.num_epochs = int(config.jtt.identify_epochs)
  stage.train.max_steps = 0
  stage.train.select_by = "last"
  stage.train.patience = 0
  stage.eval.every_epochs = 0
  stage.eval.every_steps = 0
  stage.eval.at_end = False
  return stage


def misclassified(config: ml_collections.ConfigDict, model, source) -> np.ndarray:
  """Indices (ascending) of the examples of ``source`` the model gets wrong, predicted
  as the evaluation predicts (eval mode, no augmentation, threshold 0.5)."""
  preds = evaluate.predict(model, plan.eval_batches(config, source))
  wrong = metrics.binarize_predictions(preds["prob"]) != preds["label"]
  return np.sort(preds["index"][wrong]).astype(np.int64)


def _groups_of(config: ml_collections.ConfigDict, data) -> methods.Groups | None:
  """The training groups the error set is counted in, or None when the split lacks
  the attributes (JTT itself needs none)."""
  try:
    return methods.assign(data.attributes, methods.group_spec(config),
                          value_names=data.value_names)
  except ValueError:
    return None


def error_set_record(config: ml_collections.ConfigDict, data, indices: np.ndarray,
                     step: int) -> dict[str, Any]:
  """What ``jtt_error_set.json`` and the report hold: the indices, their number, the
  share of the training split, and the count per training group."""
  record = {"identify_epochs": int(config.jtt.identify_epochs), "identify_step": int(step),
            "upweight": int(config.jtt.upweight), "size": int(indices.size),
            "fraction": float(indices.size / data.size)}
  groups = _groups_of(config, data)
  if groups is not None:
    in_set = np.bincount(groups.codes[indices], minlength=groups.counts.size)
    record["by_group"] = {name: {"errors": int(k), "examples": int(n)}
                          for name, k, n in zip(groups.names, in_set, groups.counts)}
  record["indices"] = indices.tolist()
  return record


def error_set(config: ml_collections.ConfigDict, workdir: str, data,
              train: Callable[[ml_collections.ConfigDict, str], Any]) -> dict[str, Any]:
  """Runs (or resumes, or reads back) stage 1 and returns its error-set record.

  Args:
    config: the JTT run's config.
    workdir: the JTT run's folder.
    data: its ``plan.TrainData``.
    train: ``loop.train_and_evaluate`` (passed in: this module sits below the loop).
  """
  path = os.path.join(workdir, ERROR_SET_FILE)
  if os.path.exists(path):
    with open(path) as f:
      record = json.load(f)
    if max(record["indices"], default=-1) >= data.size:
      raise ValueError(f"{path} lists examples beyond the {data.size} of the training split "
                       "(another dataset?); delete it and the folder "
                       f"{os.path.join(workdir, IDENTIFY_DIR)} to identify again")
    return record
  stage_dir = os.path.join(workdir, IDENTIFY_DIR)
  train(identify_config(config), stage_dir)
  run = runs.load_run(stage_dir)
  record = error_set_record(config, data, misclassified(config, run.model, data.source),
                            run.step)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    # Written whole then renamed: a run killed here never leaves half a file behind.
    with open(path + ".tmp", "w") as f:
      json.dump(record, f)
    os.replace(path + ".tmp", path)
  return record
