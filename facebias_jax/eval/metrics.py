"""Per-group classification metrics with bootstrap confidence intervals.

``group_metrics`` is the one function every evaluation goes through (the report
contract in DESIGN.md). Definitions follow fairlearn 0.15:

* ``selection_rate`` = P[h(X)=1], ``tpr`` = P[h(X)=1 | Y=1], ``fpr`` = P[h(X)=1 | Y=0];
* ``demographic_parity_difference`` = max - min of the per-group selection rates;
* ``equalized_odds_difference`` = max(TPR difference, FPR difference), each the
  max - min over groups ("worst_case" aggregation, "between_groups" method).

One deliberate departure, selectable with ``undefined_rates``: fairlearn computes
TPR (FPR) of a group without positives (negatives) as 0 (sklearn's normalised
confusion matrix turns 0/0 into 0), so a single all-negative group -- e.g. the
"unknown" group of non-face images -- makes the TPR difference equal to the best
group's TPR. By default (``"ignore"``) such a rate is undefined (NaN, ``null`` in
reports) and left out of the differences; ``"zero"`` reproduces fairlearn exactly.

Confidence intervals are 95% percentile bootstraps with resampling *within* each
group (a stratified bootstrap: group sizes are fixed, as in a designed test set such
as PPB). Resampling n rows of a group with replacement only changes how many rows of
each confusion-matrix cell (tp, fp, tn, fn) are drawn, and those counts are exactly
Multinomial(n, cell fractions); drawing them directly is the same bootstrap at a cost
independent of n (1000 replicates over 100k predictions take milliseconds).

For groups smaller than ``small_sample_size`` the percentile bootstrap is known to be
too narrow (5 correct out of 5 resamples to [1, 1]), so their ``accuracy_ci`` is the
Wilson score interval instead (``ci_method: "wilson"``) and they are flagged
``small_sample: true``. Small groups are always reported, never dropped.

All returned values are plain Python ``int``/``float``/``str``/``list``/``dict``;
undefined values are ``float("nan")`` (``report.to_jsonable`` writes them as ``null``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Hashable, Sequence

import numpy as np

# Order of the confusion-matrix cells in every count array of this module.
_CELLS = ("tp", "fp", "tn", "fn")
_Z95 = 1.959963984540054  # standard normal quantile for a two-sided 95% interval.
# How a group's TPR/FPR without positives/negatives enters the differences.
UNDEFINED_RATES = ("ignore", "zero")


def binarize_predictions(y_pred: Any, threshold: float = 0.5) -> np.ndarray:
  """Turns hard labels or positive-class probabilities into 0/1 predictions.

  Args:
    y_pred: [N] hard labels (bool or numbers in {0, 1}) or probabilities in [0, 1].
    threshold: probabilities ``>= threshold`` are predicted positive.

  Returns:
    int64 [N] array of 0/1.
  """
  y_pred = np.asarray(y_pred)
  if y_pred.ndim != 1:
    raise ValueError(f"y_pred must be a 1-D array of labels or probabilities, got shape {y_pred.shape}")
  if y_pred.dtype == bool:
    return y_pred.astype(np.int64)
  if not np.issubdtype(y_pred.dtype, np.number):
    raise ValueError(f"y_pred must be numeric (labels or probabilities), got dtype {y_pred.dtype}")
  if np.issubdtype(y_pred.dtype, np.floating):
    if not np.all(np.isfinite(y_pred)):
      raise ValueError("y_pred contains NaN or infinite values; check the model outputs")
    if np.all(np.isin(y_pred, (0.0, 1.0))):
      return y_pred.astype(np.int64)
    if y_pred.min() < 0.0 or y_pred.max() > 1.0:
      raise ValueError("y_pred holds floats outside [0, 1]: pass probabilities (e.g. "
                       "sigmoid of the logits) or hard 0/1 labels, not raw logits")
    return (y_pred >= threshold).astype(np.int64)
  bad = np.setdiff1d(np.unique(y_pred), (0, 1))
  if bad.size:
    raise ValueError(f"y_pred must hold 0/1 labels for a binary task, found values {bad[:5].tolist()}")
  return y_pred.astype(np.int64)


def _check_labels(y_true: Any) -> np.ndarray:
  y_true = np.asarray(y_true)
  if y_true.ndim != 1:
    raise ValueError(f"y_true must be a 1-D array of 0/1 labels, got shape {y_true.shape}")
  if y_true.dtype == bool:
    return y_true.astype(np.int64)
  bad = np.setdiff1d(np.unique(y_true), (0, 1))
  if bad.size:
    raise ValueError(f"y_true must hold 0/1 labels for a binary task, found values {bad[:5].tolist()}")
  return y_true.astype(np.int64)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
  """Returns int64 [4] counts (tp, fp, tn, fn) of 0/1 arrays."""
  tp = int(np.sum((y_true == 1) & (y_pred == 1)))
  fp = int(np.sum((y_true == 0) & (y_pred == 1)))
  tn = int(np.sum((y_true == 0) & (y_pred == 0)))
  fn = int(np.sum((y_true == 1) & (y_pred == 0)))
  return np.array([tp, fp, tn, fn], np.int64)


def rates_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
  """Accuracy, TPR, FPR and selection rate from counts ``[..., 4]`` (NaN where undefined).

  Works on a single count vector or on a stack of bootstrap replicates.
  """
  counts = np.asarray(counts, np.float64)
  tp, fp, tn, fn = (counts[..., i] for i in range(4))
  n = tp + fp + tn + fn
  with np.errstate(invalid="ignore", divide="ignore"):
    return {
        "accuracy": (tp + tn) / n,
        "tpr": tp / (tp + fn),
        "fpr": fp / (fp + tn),
        "selection_rate": (tp + fp) / n,
    }


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
  """Wilson score interval for a binomial proportion (never degenerate for small n)."""
  if n <= 0:
    return (math.nan, math.nan)
  p = successes / n
  denom = 1.0 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return (max(0.0, centre - half), min(1.0, centre + half))


def _nan_range(values: np.ndarray, axis: int = -1) -> np.ndarray:
  """max - min over ``axis`` ignoring NaN; NaN where every entry is NaN."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are expected.
    return np.nanmax(values, axis=axis) - np.nanmin(values, axis=axis)


def fairness_from_rates(rates: dict[str, np.ndarray], undefined_rates: str) -> dict[str, np.ndarray]:
  """Between-group fairness metrics from per-group rates ``[..., G]``."""
  tpr, fpr = rates["tpr"], rates["fpr"]
  if undefined_rates == "zero":
    tpr, fpr = np.nan_to_num(tpr, nan=0.0), np.nan_to_num(fpr, nan=0.0)
  tpr_diff, fpr_diff = _nan_range(tpr), _nan_range(fpr)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    eod = np.fmax(tpr_diff, fpr_diff)  # fmax: a NaN side (no group defines it) is skipped.
  acc = rates["accuracy"]
  return {
      "worst_group_accuracy": np.min(acc, axis=-1),
      "mean_group_accuracy": np.mean(acc, axis=-1),
      "accuracy_gap": np.max(acc, axis=-1) - np.min(acc, axis=-1),
      "accuracy_variance": np.var(acc, axis=-1),
      "demographic_parity_difference": _nan_range(rates["selection_rate"]),
      "equalized_odds_difference": eod,
      "tpr_difference": tpr_diff,
      "fpr_difference": fpr_diff,
  }


def _percentile_ci(samples: np.ndarray) -> list[float]:
  """95% percentile interval over axis 0, ignoring NaN replicates."""
  samples = np.asarray(samples, np.float64)
  if samples.size == 0 or np.all(np.isnan(samples)):
    return [math.nan, math.nan]
  lo, hi = np.nanpercentile(samples, [2.5, 97.5])
  return [float(lo), float(hi)]


def _rate_block(counts: np.ndarray) -> dict[str, Any]:
  rates = rates_from_counts(counts)
  block = {"n": int(counts.sum())}
  block.update({k: float(v) for k, v in rates.items()})
  block.update({c: int(v) for c, v in zip(_CELLS, counts)})
  return block


def group_metrics(y_true: Any, y_pred: Any, groups: Sequence[Hashable] | np.ndarray, *,
                  n_boot: int = 1000, seed: int = 0, threshold: float = 0.5,
                  small_sample_size: int = 30, undefined_rates: str = "ignore",
                  exclude_from_fairness: Sequence[str] = ("unknown",),
                  min_group_size: int = 0) -> dict[str, Any]:
  """Accuracy, TPR/FPR, selection rate per group, and between-group fairness metrics.

  Args:
    y_true: [N] true 0/1 labels.
    y_pred: [N] hard 0/1 predictions or positive-class probabilities (floats not all
      in {0, 1} are thresholded at ``threshold``).
    groups: [N] hashable group labels (e.g. the strings of ``data.groups.assign_groups``);
      keys of the result are ``str(label)``.
    n_boot: bootstrap replicates for the confidence intervals (0 disables them: CIs NaN).
    seed: seed of the bootstrap.
    threshold: decision threshold for probabilities.
    small_sample_size: groups with fewer examples are flagged ``small_sample`` and get a
      Wilson interval for their accuracy.
    undefined_rates: ``"ignore"`` (a group without positives has TPR NaN, left out of
      the differences) or ``"zero"`` (fairlearn's convention: such a rate counts as 0).
    exclude_from_fairness: group names reported per group but left out of the fairness
      summary (by default ``"unknown"``: examples whose attribute is missing, e.g.
      non-face images, are not a demographic group).
    min_group_size: groups with fewer examples are reported with their counts but
      left out of the fairness summary too (a worst group of n=1 says nothing); they
      are listed in ``settings["too_small_for_fairness"]``.

  Returns:
    ``{"overall": {...}, "groups": {name: {...}}, "fairness": {...}, "settings": {...}}``
    with plain Python values. ``overall`` and every group hold ``n``, ``accuracy``,
    ``accuracy_ci`` [lo, hi], ``tpr``, ``fpr``, ``selection_rate`` and the counts
    ``tp``/``fp``/``tn``/``fn``; groups also ``small_sample``, ``ci_method`` and
    ``in_fairness``. ``fairness`` holds ``worst_group``, ``worst_group_accuracy``,
    ``best_group``, ``mean_group_accuracy`` (the DB-VAE paper's E[A]), ``accuracy_gap``,
    ``accuracy_variance`` (Var[A], ddof=0, fractions), ``demographic_parity_difference``,
    ``equalized_odds_difference``, ``tpr_difference``, ``fpr_difference``,
    ``num_groups``, ``groups`` (those included) and ``<metric>_ci`` for each number.
  """
  if undefined_rates not in UNDEFINED_RATES:
    raise ValueError(f"undefined_rates must be one of {UNDEFINED_RATES}, got {undefined_rates!r}")
  if n_boot < 0:
    raise ValueError(f"n_boot must be >= 0, got {n_boot}")
  if min_group_size < 0:
    raise ValueError(f"min_group_size must be >= 0, got {min_group_size}")
  y_true = _check_labels(y_true)
  y_pred = binarize_predictions(y_pred, threshold)
  groups = np.asarray(groups)
  if groups.ndim != 1:
    raise ValueError(f"groups must be a 1-D array of group labels, got shape {groups.shape}")
  if not len(y_true) == len(y_pred) == len(groups):
    raise ValueError(f"y_true, y_pred and groups must have the same length, got "
                     f"{len(y_true)}, {len(y_pred)} and {len(groups)}")
  if len(y_true) == 0:
    raise ValueError("group_metrics needs at least one example")

  # Sorted string names make reports deterministic whatever the label type.
  names = np.asarray([str(g) for g in groups.tolist()])
  group_names = sorted(set(names.tolist()))
  counts = np.stack([confusion_counts(y_true[names == g], y_pred[names == g]) for g in group_names])

  rng = np.random.default_rng(seed)
  # boot[g]: [n_boot, 4] resampled counts of group g (exact within-group bootstrap).
  boot = np.stack([rng.multinomial(c.sum(), c / c.sum(), size=n_boot) for c in counts], axis=1) \
      if n_boot else np.zeros((0, len(group_names), 4), np.int64)
  boot_rates = rates_from_counts(boot)  # each [n_boot, G]

  result_groups = {}
  too_small = [g for g, c in zip(group_names, counts) if c.sum() < min_group_size]
  excluded = set(str(g) for g in exclude_from_fairness) | set(too_small)
  for i, g in enumerate(group_names):
    block = _rate_block(counts[i])
    small = block["n"] < small_sample_size
    if small:
      block["accuracy_ci"] = list(wilson_interval(int(counts[i][0] + counts[i][2]), block["n"]))
    else:
      block["accuracy_ci"] = _percentile_ci(boot_rates["accuracy"][:, i])
    block["ci_method"] = "wilson" if small else "bootstrap"
    block["small_sample"] = bool(small)
    block["in_fairness"] = g not in excluded
    result_groups[g] = block

  overall = _rate_block(counts.sum(0))
  overall["accuracy_ci"] = _percentile_ci(rates_from_counts(boot.sum(1))["accuracy"])

  fair_idx = [i for i, g in enumerate(group_names) if g not in excluded]
  fairness: dict[str, Any] = {"num_groups": len(fair_idx),
                              "groups": [group_names[i] for i in fair_idx]}
  if fair_idx:
    point_rates = {k: v[fair_idx] for k, v in rates_from_counts(counts).items()}
    point = fairness_from_rates(point_rates, undefined_rates)
    acc = point_rates["accuracy"]
    fairness["worst_group"] = group_names[fair_idx[int(np.argmin(acc))]]
    fairness["best_group"] = group_names[fair_idx[int(np.argmax(acc))]]
    samples = fairness_from_rates({k: v[:, fair_idx] for k, v in boot_rates.items()},
                                   undefined_rates)
    for k, v in point.items():
      fairness[k] = float(v)
      fairness[f"{k}_ci"] = _percentile_ci(samples[k])
  else:
    fairness["worst_group"] = fairness["best_group"] = None
    for k in ("worst_group_accuracy", "mean_group_accuracy", "accuracy_gap", "accuracy_variance",
              "demographic_parity_difference", "equalized_odds_difference",
              "tpr_difference", "fpr_difference"):
      fairness[k] = math.nan
      fairness[f"{k}_ci"] = [math.nan, math.nan]

  return {
      "overall": overall,
      "groups": result_groups,
      "fairness": fairness,
      "settings": {"n_boot": int(n_boot), "seed": int(seed), "threshold": float(threshold),
                   "small_sample_size": int(small_sample_size), "undefined_rates": undefined_rates,
                   "ci_level": 0.95, "excluded_from_fairness": sorted(excluded & set(group_names)),
                   "min_group_size": int(min_group_size),
                   "too_small_for_fairness": sorted(set(too_small) - {str(g) for g in
                                                                      exclude_from_fairness})},
  }
