"""Deep Feature Reweighting (Kirichenko, Izmailov & Wilson, ICLR 2023): retrain the last layer.

An ERM model's features already separate the groups; its last layer leans on the
shortcut. DFR keeps the features and refits only the last layer on held-out data in
which every group is equally represented (DFR^Val of the paper):

1. embed the validation split with the base run's selected checkpoint (the input of
   the last Linear layer, ``aux["pre_logits"]``) and standardise the features;
2. tune: split the validation examples in two random halves; on a group-balanced subset
   of one half (every group cut to its smallest), fit an L1-regularised logistic
   regression for every ``C`` of ``config.dfr.c_grid`` and score the worst-group
   accuracy on the other half (``config.dfr.tune_retrains`` splits, scores summed);
3. refit: with the best ``C``, fit ``config.dfr.num_retrains`` times on group-balanced
   subsets of the whole validation split and average the weights;
4. fold the standardisation into the weights, write them into the model's last layer
   (still linear, so CAM applies to GAP ResNets) and save a normal checkpoint.

Deviation from the reference script, for one reason (no pass over the training split):
the scaler is fit once on the whole validation split, where the reference fits it on
the balanced half when tuning and on the training embeddings when refitting. It only
sets the scale the L1 penalty acts on.

Groups are ``config.train.groups`` (default ``config.eval.groups``) on the validation
split. Binary tasks (one logit, or two softmax logits).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from facebias_jax import runs
from facebias_jax.data import sources
from facebias_jax.models import inference
from facebias_jax.train import logistic, methods, plan

# The C grid of the paper's CelebA runs (its script's commented CelebA settings).
C_GRID = (3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003)


def _balanced_subset(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Indices of a random subset with as many examples of every present group as the
  smallest has."""
  present = np.unique(codes)
  members = [np.flatnonzero(codes == g) for g in present]
  size = min(m.size for m in members)
  return np.concatenate([rng.choice(m, size=size, replace=False) for m in members])


def _worst_group_accuracy(correct: np.ndarray, codes: np.ndarray) -> float:
  return float(min(correct[codes == g].mean() for g in np.unique(codes)))


def _check_both_classes(labels: np.ndarray, where: str) -> None:
  if np.unique(labels).size < 2:
    raise ValueError(f"DFR: {where} holds one class only; it needs labelled examples of "
                     "both classes in every balanced subset (use a larger validation split)")


def base_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The base run's config when DFR trains its own: this config with ERM, validated
  and selected as configured, without a final evaluation (DFR's is the one reported)."""
  base = ml_collections.ConfigDict(config.to_dict())
  base.train.method = "erm"
  base.eval.at_end = False
  return base


def fit_last_layer(features: np.ndarray, labels: np.ndarray, codes: np.ndarray, *,
                   c_grid: Sequence[float] = C_GRID, tune_retrains: int = 1,
                   num_retrains: int = 20, seed: int = 0) -> dict[str, Any]:
  """DFR's tuned, averaged L1 logistic regression on standardised features (steps 1-3).

  Args:
    features: float [N, D] held-out embeddings.
    labels: {0, 1} [N].
    codes: int [N] group codes.
    c_grid: inverse regularisation strengths to try.
    tune_retrains: random half splits the choice of ``C`` is scored on.
    num_retrains: balanced refits averaged for the final weights.
    seed: random seed of the splits and subsets.

  Returns:
    ``{"coef": float64 [D], "intercept": float, "c": best C, "scores": {C: mean
    held-out worst-group accuracy}, "mean": [D], "scale": [D], "balanced_size": n}``;
    decision values are ``((x - mean) / scale) @ coef + intercept``.
  """
  x = np.asarray(features, np.float64)
  y = np.asarray(labels).astype(np.int64)
  codes = np.asarray(codes)
  if len(c_grid) == 0 or min(c_grid) <= 0:
    raise ValueError(f"config.dfr.c_grid must be positive values, got {tuple(c_grid)}")
  mean, scale = x.mean(axis=0), x.std(axis=0)
  scale = np.where(scale > 0, scale, 1.0)  # Constant features (dead ReLUs) stay 0.
  z = (x - mean) / scale
  rng = np.random.default_rng([int(seed), 7])
  scores = {float(c): 0.0 for c in c_grid}
  for _ in range(int(tune_retrains)):
    order = rng.permutation(y.size)
    held_out, fit = order[:y.size // 2], order[y.size // 2:]
    subset = fit[_balanced_subset(codes[fit], rng)]
    _check_both_classes(y[subset], "a balanced half of the validation split")
    for c in scores:
      w, b = logistic.l1_logistic_regression(z[subset], y[subset], c=c)
      correct = ((z[held_out] @ w + b) > 0).astype(np.int64) == y[held_out]
      scores[c] += _worst_group_accuracy(correct, codes[held_out]) / int(tune_retrains)
  best = max(scores, key=lambda c: (scores[c], -list(scores).index(c)))
  coefs, intercepts = [], []
  size = 0
  for _ in range(int(num_retrains)):
    subset = _balanced_subset(codes, rng)
    _check_both_classes(y[subset], "a balanced subset of the validation split")
    w, b = logistic.l1_logistic_regression(z[subset], y[subset], c=best)
    coefs.append(w)
    intercepts.append(b)
    size = subset.size
  return {"coef": np.mean(coefs, axis=0), "intercept": float(np.mean(intercepts)), "c": best,
          "scores": scores, "mean": mean, "scale": scale, "balanced_size": int(size)}


def folded_weights(fit: dict[str, Any]) -> tuple[np.ndarray, float]:
  """``(w [D], b)`` acting on raw features: ``x @ w + b`` equals the standardised fit."""
  w = fit["coef"] / fit["scale"]
  return w, float(fit["intercept"] - np.dot(w, fit["mean"]))


def set_last_layer(model: nnx.Module, w: np.ndarray, b: float) -> None:
  """Writes a binary decision ``x @ w + b`` into the model's last Linear layer (in place).

  One logit: kernel ``w``, bias ``b``. Two softmax logits: class 0 gets zeros and class
  1 gets ``(w, b)``, so ``logit_1 - logit_0`` (the log-odds) is the decision.
  """
  layer = inference.last_layer(model)
  out = layer.kernel[...].shape[-1]
  if out not in (1, 2):
    raise ValueError(f"DFR refits binary heads (1 or 2 logits), this one has {out}")
  kernel = np.zeros(layer.kernel[...].shape, np.float32)
  bias = np.zeros(layer.bias[...].shape, np.float32)
  kernel[:, -1], bias[-1] = w, b
  layer.kernel.set_value(jnp.asarray(kernel))
  layer.bias.set_value(jnp.asarray(bias))


def embed(config: ml_collections.ConfigDict, model: nnx.Module, source) -> dict[str, Any]:
  """Last-layer inputs of every example of ``source`` (eval mode, no augmentation).

  Returns:
    ``{"features": float32 [N, D], "label": int [N], "attributes": {name: [N]}}``.
  """
  features_of = inference.eval_fn(model, inference.pre_logits)
  parts, labels, attrs = [], [], []
  for batch in plan.eval_batches(config, source):
    mask = np.asarray(batch["mask"], bool)
    parts.append(np.asarray(features_of(jnp.asarray(batch["image"], jnp.float32)))[mask])
    labels.append(np.asarray(batch["label"])[mask])
    attrs.append({k: np.asarray(v)[mask] for k, v in batch["attributes"].items()})
  return {"features": np.concatenate(parts), "label": np.concatenate(labels),
          "attributes": {k: np.concatenate([a[k] for a in attrs]) for k in attrs[0]}}


def check_base(config: ml_collections.ConfigDict, base: runs.Run) -> None:
  """The base run must be the model ``config.model`` describes, on the same task."""
  ours, theirs = runs.model_kwargs(config), runs.model_kwargs(base.config)
  if ours != theirs:
    raise ValueError(f"config.dfr.base_run={base.workdir!r} trained {theirs[0]} {theirs[1]}, "
                     f"but config.model describes {ours[0]} {ours[1]}; set config.model to "
                     "the base run's model")
  label = runs.config_value(base.config, "data.label_key", "label")
  if label != config.data.label_key:
    raise ValueError(f"config.dfr.base_run={base.workdir!r} was trained for label "
                     f"{label!r}, this run for config.data.label_key="
                     f"{config.data.label_key!r}")


def retrain(config: ml_collections.ConfigDict, base: runs.Run) -> tuple[nnx.Module, dict]:
  """DFR on the validation split: the base model with its last layer refit.

  Returns:
    ``(model, record)``: the model (the base run's, modified) and what the report
    records under ``dfr`` (base run and step, C and its scores, group counts).
  """
  check_base(config, base)
  d = config.data
  source = sources.load_source(d.name, split=d.validation_split, data_dir=d.data_dir,
                               manual_dir=d.manual_dir)
  data = embed(config, base.model, source)
  groups = methods.assign(data["attributes"], methods.group_spec(config),
                          value_names=sources.value_names(source), method="dfr",
                          split=d.validation_split)
  f = config.dfr
  fit = fit_last_layer(data["features"], data["label"], groups.codes,
                       c_grid=tuple(f.c_grid), tune_retrains=int(f.tune_retrains),
                       num_retrains=int(f.num_retrains), seed=int(config.seed))
  set_last_layer(base.model, *folded_weights(fit))
  record = {"base_run": base.workdir, "base_step": base.step, "c": fit["c"],
            "c_scores": {str(c): v for c, v in fit["scores"].items()},
            "balanced_subset_size": fit["balanced_size"],
            "validation_groups": groups.by_name(groups.counts.tolist()),
            "nonzero_weights": int(np.count_nonzero(fit["coef"])),
            "features": int(fit["coef"].size)}
  return base.model, record
