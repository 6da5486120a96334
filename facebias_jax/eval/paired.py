"""Two models on the same test images: differences with a paired bootstrap.

Comparing two classifiers by their separate confidence intervals wastes the fact that
they were tested on the same images: most images are easy (or hard) for both, so the
two accuracies move together from one test set to the next and their difference is
much more certain than either number. A paired bootstrap resamples the *images* once
and evaluates both models on that same resample; the spread of ``metric(B) -
metric(A)`` over resamples is the uncertainty of the difference.

As ``metrics.group_metrics`` does, the resampling is stratified by group (group sizes
stay fixed, as in a designed test set) and exact without touching rows: within a
group, an image falls in one of 8 cells (label x A right or wrong x B right or wrong);
resampling n images with replacement draws Multinomial(n, cell fractions) counts of
those cells, from which both models' confusion counts follow. The fairness metrics are
``metrics.fairness_from_rates``'s, over the same groups (``unknown`` and groups under
``min_group_size`` left out).

``paired=False`` resamples the two models independently instead (the interval one
would get from two separate evaluations), for comparison.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Sequence

import numpy as np

from facebias_jax.eval import metrics

# The differences reported, from the fairness summary and the overall accuracy.
DIFFERENCES = ("worst_group_accuracy", "mean_group_accuracy", "accuracy_gap",
               "accuracy_variance", "demographic_parity_difference",
               "equalized_odds_difference")


def _cells(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """int64 [8] counts of the cells ``4 y + 2 a + b``."""
  return np.bincount(4 * y + 2 * a + b, minlength=8).astype(np.int64)


def _confusion(cells: np.ndarray, model: int) -> np.ndarray:
  """(tp, fp, tn, fn) counts ``[..., 4]`` of model 0 (A) or 1 (B) from cell counts."""
  c = cells.reshape(cells.shape[:-1] + (2, 2, 2))  # [..., y, a, b]
  pred = c.sum(axis=-1) if model == 0 else c.sum(axis=-2)  # [..., y, prediction]
  return np.stack([pred[..., 1, 1], pred[..., 0, 1], pred[..., 0, 0], pred[..., 1, 0]], axis=-1)


def _summary(counts: np.ndarray, undefined_rates: str) -> dict[str, np.ndarray]:
  """Overall accuracy, per-group accuracy and fairness metrics of counts [..., G, 4]."""
  rates = metrics.rates_from_counts(counts)
  out = metrics.fairness_from_rates(rates, undefined_rates)
  out["accuracy"] = metrics.rates_from_counts(counts.sum(axis=-2))["accuracy"]
  out["group_accuracy"] = rates["accuracy"]
  return out


def _interval(samples: np.ndarray) -> list[float]:
  samples = np.asarray(samples, np.float64)
  samples = samples[np.isfinite(samples)]
  if not samples.size:
    return [math.nan, math.nan]
  lo, hi = np.percentile(samples, [2.5, 97.5])
  return [float(lo), float(hi)]


def _entry(a: float, b: float, samples: np.ndarray) -> dict[str, Any]:
  lo, hi = _interval(samples)
  return {"a": float(a), "b": float(b), "difference": float(b - a), "ci": [lo, hi],
          "excludes_zero": bool(lo > 0 or hi < 0)}


def paired_differences(y_true: Any, pred_a: Any, pred_b: Any,
                       groups: Sequence[Hashable] | np.ndarray, *, n_boot: int = 2000,
                       seed: int = 0, threshold: float = 0.5, paired: bool = True,
                       undefined_rates: str = "ignore",
                       exclude_from_fairness: Sequence[str] = ("unknown",),
                       min_group_size: int = 0) -> dict[str, Any]:
  """Differences B - A of two models' metrics on the same examples, with 95% intervals.

  Args:
    y_true: [N] 0/1 labels.
    pred_a, pred_b: [N] the two models' hard predictions or probabilities (thresholded
      at ``threshold``), on the same examples in the same order.
    groups: [N] group labels.
    n_boot: bootstrap replicates (> 0).
    seed: bootstrap seed.
    threshold: decision threshold of probabilities.
    paired: resample the examples once for both models (True), or each model on its
      own resample (False: two independent evaluations).
    undefined_rates, exclude_from_fairness, min_group_size: as in
      ``metrics.group_metrics``.

  Returns:
    ``{"overall": {"accuracy": entry}, "fairness": {metric: entry}, "groups": {group:
    entry}, "settings": {...}}``; an entry is ``{"a", "b", "difference", "ci": [lo,
    hi], "excludes_zero"}`` (percentile interval of the bootstrapped difference).
  """
  if n_boot <= 0:
    raise ValueError(f"n_boot must be > 0 for a bootstrap, got {n_boot}")
  y = np.asarray(y_true).astype(np.int64)
  a = metrics.binarize_predictions(pred_a, threshold).astype(np.int64)
  b = metrics.binarize_predictions(pred_b, threshold).astype(np.int64)
  names = np.asarray([str(g) for g in np.asarray(groups).tolist()])
  if not len(y) == len(a) == len(b) == len(names):
    raise ValueError(f"labels, both predictions and groups need one value per example, got "
                     f"lengths {len(y)}, {len(a)}, {len(b)} and {len(names)}")
  if not len(y):
    raise ValueError("paired_differences needs at least one example")
  group_names = sorted(set(names.tolist()))
  cells = np.stack([_cells(y[names == g], a[names == g], b[names == g]) for g in group_names])
  rng = np.random.default_rng(seed)
  draw = lambda c: rng.multinomial(c.sum(), c / c.sum(), size=n_boot)
  boot_a = np.stack([draw(c) for c in cells], axis=1)  # [n_boot, G, 8]
  boot_b = boot_a if paired else np.stack([draw(c) for c in cells], axis=1)

  too_small = {g for g, c in zip(group_names, cells) if c.sum() < min_group_size}
  excluded = {str(g) for g in exclude_from_fairness} | too_small
  fair = [i for i, g in enumerate(group_names) if g not in excluded]
  point = [_summary(_confusion(cells, m), undefined_rates) for m in (0, 1)]
  boot = [_summary(_confusion(boot_a, 0), undefined_rates),
          _summary(_confusion(boot_b, 1), undefined_rates)]
  fair_point = [_summary(_confusion(cells[fair], m), undefined_rates) for m in (0, 1)]
  fair_boot = [_summary(_confusion(boot_a[:, fair], 0), undefined_rates),
               _summary(_confusion(boot_b[:, fair], 1), undefined_rates)]
  result = {
      "overall": {"accuracy": _entry(point[0]["accuracy"], point[1]["accuracy"],
                                     boot[1]["accuracy"] - boot[0]["accuracy"])},
      "groups": {g: _entry(point[0]["group_accuracy"][i], point[1]["group_accuracy"][i],
                           boot[1]["group_accuracy"][:, i] - boot[0]["group_accuracy"][:, i])
                 for i, g in enumerate(group_names)},
      "fairness": ({k: _entry(fair_point[0][k], fair_point[1][k],
                              fair_boot[1][k] - fair_boot[0][k]) for k in DIFFERENCES}
                   if fair else {}),
      "settings": {"n_boot": int(n_boot), "seed": int(seed), "paired": bool(paired),
                   "ci_level": 0.95, "threshold": float(threshold),
                   "fairness_groups": [group_names[i] for i in fair],
                   "min_group_size": int(min_group_size)},
  }
  return result
