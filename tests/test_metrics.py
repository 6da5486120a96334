"""Tests for facebias_jax.eval.metrics: known answers, fairlearn equality, bootstrap CIs."""

import math

import fairlearn.metrics as fairlearn_metrics
import numpy as np
import pytest

from facebias_jax.eval import metrics


def _hand_made():
  # Group a: 4 examples, tp=1 fp=1 tn=1 fn=1. Group b: 4 examples, tp=2 tn=2.
  y_true = np.array([1, 0, 0, 1, 1, 1, 0, 0])
  y_pred = np.array([1, 1, 0, 0, 1, 1, 0, 0])
  groups = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
  return y_true, y_pred, groups


def test_known_answers():
  m = metrics.group_metrics(*_hand_made(), n_boot=200)
  a, b = m["groups"]["a"], m["groups"]["b"]
  assert (a["tp"], a["fp"], a["tn"], a["fn"]) == (1, 1, 1, 1)
  assert (b["tp"], b["fp"], b["tn"], b["fn"]) == (2, 0, 2, 0)
  assert a["accuracy"] == 0.5 and a["tpr"] == 0.5 and a["fpr"] == 0.5 and a["selection_rate"] == 0.5
  assert b["accuracy"] == 1.0 and b["tpr"] == 1.0 and b["fpr"] == 0.0 and b["selection_rate"] == 0.5
  f = m["fairness"]
  assert f["worst_group"] == "a" and f["best_group"] == "b"
  assert f["worst_group_accuracy"] == 0.5
  assert f["mean_group_accuracy"] == 0.75
  assert f["accuracy_gap"] == 0.5
  assert f["accuracy_variance"] == pytest.approx(0.0625)  # population variance of [0.5, 1.0]
  assert f["demographic_parity_difference"] == 0.0
  assert f["tpr_difference"] == 0.5 and f["fpr_difference"] == 0.5
  assert f["equalized_odds_difference"] == 0.5
  o = m["overall"]
  assert o["n"] == 8 and o["accuracy"] == 0.75 and o["tpr"] == 0.75 and o["fpr"] == 0.25
  # Every value is a plain Python type (JSON-ready).
  assert all(type(v) in (int, float, bool, str, list) for v in a.values())


def test_three_groups_variance_and_dp():
  y_true = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0])
  y_pred = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1])
  groups = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])  # integer labels become "0", "1", "2"
  m = metrics.group_metrics(y_true, y_pred, groups, n_boot=0)
  accs = [m["groups"][k]["accuracy"] for k in ("0", "1", "2")]
  assert accs == pytest.approx([1.0, 1 / 3, 2 / 3])
  assert m["fairness"]["accuracy_variance"] == pytest.approx(np.var(accs))
  assert m["fairness"]["demographic_parity_difference"] == pytest.approx(1.0 - 1 / 3)
  assert math.isnan(m["groups"]["0"]["fpr"]) and math.isnan(m["groups"]["2"]["tpr"])
  assert math.isnan(m["fairness"]["accuracy_gap_ci"][0])  # n_boot=0: no bootstrap intervals.


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_fairlearn_on_random_data(seed):
  fl = fairlearn_metrics
  rng = np.random.default_rng(seed)
  n = 600
  y_true = rng.integers(0, 2, n)
  y_pred = rng.integers(0, 2, n)
  groups = rng.choice(["lighter_male", "lighter_female", "darker_male", "darker_female"], n,
                      p=[0.5, 0.3, 0.15, 0.05])
  m = metrics.group_metrics(y_true, y_pred, groups, n_boot=50)
  frame = fl.MetricFrame(
      metrics={"accuracy": lambda t, p: float(np.mean(t == p)),
               "tpr": fl.true_positive_rate, "fpr": fl.false_positive_rate,
               "selection_rate": fl.selection_rate},
      y_true=y_true, y_pred=y_pred, sensitive_features=groups)
  for g, row in frame.by_group.iterrows():
    for k in ("accuracy", "tpr", "fpr", "selection_rate"):
      assert m["groups"][g][k] == pytest.approx(row[k])
  f = m["fairness"]
  assert f["demographic_parity_difference"] == pytest.approx(
      fl.demographic_parity_difference(y_true, y_pred, sensitive_features=groups))
  assert f["equalized_odds_difference"] == pytest.approx(
      fl.equalized_odds_difference(y_true, y_pred, sensitive_features=groups))
  assert f["accuracy_gap"] == pytest.approx(frame.difference()["accuracy"])
  assert f["worst_group_accuracy"] == pytest.approx(frame.group_min()["accuracy"])


def test_group_without_positives_fairlearn_convention():
  fl = fairlearn_metrics
  rng = np.random.default_rng(3)
  n = 300
  groups = rng.choice(["a", "b", "c"], n)
  y_true = rng.integers(0, 2, n)
  y_true[groups == "c"] = 0  # group c has no positives: its TPR is undefined.
  y_pred = rng.integers(0, 2, n)
  expected = fl.equalized_odds_difference(y_true, y_pred, sensitive_features=groups)
  zero = metrics.group_metrics(y_true, y_pred, groups, n_boot=0, undefined_rates="zero")
  assert zero["fairness"]["equalized_odds_difference"] == pytest.approx(expected)
  # Default: c's TPR is NaN and left out, i.e. fairlearn restricted to the groups where
  # the TPR is defined (for TPR) and all groups (for FPR).
  ignore = metrics.group_metrics(y_true, y_pred, groups, n_boot=0)
  assert math.isnan(ignore["groups"]["c"]["tpr"])
  keep = groups != "c"
  tpr_diff = fl.MetricFrame(metrics=fl.true_positive_rate, y_true=y_true[keep], y_pred=y_pred[keep],
                            sensitive_features=groups[keep]).difference()
  fpr_diff = fl.MetricFrame(metrics=fl.false_positive_rate, y_true=y_true, y_pred=y_pred,
                            sensitive_features=groups).difference()
  assert ignore["fairness"]["tpr_difference"] == pytest.approx(tpr_diff)
  assert ignore["fairness"]["equalized_odds_difference"] == pytest.approx(max(tpr_diff, fpr_diff))


def test_probabilities_equal_hard_labels():
  rng = np.random.default_rng(0)
  y_true = rng.integers(0, 2, 200)
  prob = rng.random(200)
  groups = rng.choice(["x", "y"], 200)
  from_prob = metrics.group_metrics(y_true, prob, groups, n_boot=100, seed=1)
  from_hard = metrics.group_metrics(y_true, (prob >= 0.5).astype(int), groups, n_boot=100, seed=1)
  assert from_prob == from_hard
  high = metrics.group_metrics(y_true, prob, groups, n_boot=0, threshold=0.9)
  assert high["overall"]["selection_rate"] == pytest.approx(np.mean(prob >= 0.9))


def test_bootstrap_ci_contains_estimate_and_narrows():
  rng = np.random.default_rng(0)
  widths = []
  for n in (100, 10_000):
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < 0.8, y_true, 1 - y_true)
    m = metrics.group_metrics(y_true, y_pred, np.zeros(n, int), n_boot=500)
    g = m["groups"]["0"]
    lo, hi = g["accuracy_ci"]
    assert lo <= g["accuracy"] <= hi and g["ci_method"] == "bootstrap"
    lo_o, hi_o = m["overall"]["accuracy_ci"]
    assert lo_o <= m["overall"]["accuracy"] <= hi_o
    widths.append(hi - lo)
  assert widths[1] < widths[0] / 4  # ~1/sqrt(n): a 100x larger n gives ~10x narrower.


def test_bootstrap_matches_row_resampling():
  # The multinomial shortcut must agree with resampling rows with replacement.
  rng = np.random.default_rng(0)
  y_true = rng.integers(0, 2, 400)
  y_pred = np.where(rng.random(400) < 0.7, y_true, 1 - y_true)
  m = metrics.group_metrics(y_true, y_pred, np.zeros(400, int), n_boot=4000, seed=2)
  idx = rng.integers(0, 400, (4000, 400))
  naive = np.percentile(np.mean(y_true[idx] == y_pred[idx], axis=1), [2.5, 97.5])
  assert m["groups"]["0"]["accuracy_ci"] == pytest.approx(naive, abs=0.01)


def test_small_groups_kept_and_flagged():
  y_true = np.array([1] * 100 + [1] * 5)
  y_pred = np.array([1] * 90 + [0] * 10 + [1] * 5)
  groups = np.array(["big"] * 100 + ["tiny"] * 5)
  m = metrics.group_metrics(y_true, y_pred, groups, n_boot=200)
  tiny = m["groups"]["tiny"]
  assert tiny["n"] == 5 and tiny["small_sample"] and tiny["ci_method"] == "wilson"
  assert tiny["accuracy"] == 1.0
  lo, hi = tiny["accuracy_ci"]
  assert hi == 1.0 and lo < 0.6  # 5/5 correct is far from proof of perfection.
  assert not m["groups"]["big"]["small_sample"]
  assert m["fairness"]["num_groups"] == 2


def test_unknown_group_excluded_from_fairness_only():
  y_true = np.array([1, 1, 1, 1, 0, 0])
  y_pred = np.array([1, 1, 1, 0, 1, 1])
  groups = np.array(["m", "m", "f", "f", "unknown", "unknown"])
  m = metrics.group_metrics(y_true, y_pred, groups, n_boot=0)
  assert m["groups"]["unknown"]["in_fairness"] is False
  assert m["fairness"]["groups"] == ["f", "m"]
  assert m["fairness"]["worst_group_accuracy"] == 0.5  # unknown's accuracy 0 is not counted.
  assert m["fairness"]["fpr_difference"] != m["fairness"]["fpr_difference"]  # NaN: no negatives.
  assert m["fairness"]["equalized_odds_difference"] == 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(y_true=[0, 2], y_pred=[0, 1], groups=["a", "a"]), "y_true must hold 0/1"),
    (dict(y_true=[0, 1], y_pred=[0.5, 3.0], groups=["a", "a"]), "outside \\[0, 1\\]"),
    (dict(y_true=[0, 1], y_pred=[0, 1], groups=["a"]), "same length"),
    (dict(y_true=[0, 1], y_pred=[np.nan, 1.0], groups=["a", "a"]), "NaN"),
])
def test_bad_input_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    metrics.group_metrics(**kwargs, n_boot=0)
