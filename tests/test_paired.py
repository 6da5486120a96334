"""Tests of the paired bootstrap (eval/paired.py): coverage on simulated classifiers,
narrower than independent resampling when the errors are correlated, and the point
estimates equal to group_metrics' numbers."""

import numpy as np
import pytest

from facebias_jax.eval import metrics, paired

TRUE_A = np.array([0.92, 0.82, 0.70])  # Per-group accuracy of model A (the population).
TRUE_B = np.array([0.94, 0.86, 0.75])
N_PER_GROUP = 300


def _test_set(rng, correlation=0.8):
  """A test set of two classifiers whose correctness is correlated: B reuses A's
  uniform draw with probability ``correlation``."""
  g = np.repeat(np.arange(3), N_PER_GROUP)
  y = rng.integers(0, 2, g.size)
  u = rng.random(g.size)
  v = np.where(rng.random(g.size) < correlation, u, rng.random(g.size))
  a = np.where(u < TRUE_A[g], y, 1 - y)
  b = np.where(v < TRUE_B[g], y, 1 - y)
  return y, a, b, np.array(["g0", "g1", "g2"])[g]


def test_paired_interval_covers_the_true_difference_at_the_nominal_rate():
  rng = np.random.default_rng(0)
  truths = {"worst_group_accuracy": TRUE_B.min() - TRUE_A.min(),
            "accuracy": TRUE_B.mean() - TRUE_A.mean()}
  covered = {k: 0 for k in truths}
  widths = {True: [], False: []}
  sims = 200
  for s in range(sims):
    y, a, b, g = _test_set(rng)
    for is_paired in (True, False):
      result = paired.paired_differences(y, a, b, g, n_boot=500, seed=s, paired=is_paired)
      lo, hi = result["fairness"]["worst_group_accuracy"]["ci"]
      widths[is_paired].append(hi - lo)
      if is_paired:
        covered["worst_group_accuracy"] += lo <= truths["worst_group_accuracy"] <= hi
        lo, hi = result["overall"]["accuracy"]["ci"]
        covered["accuracy"] += lo <= truths["accuracy"] <= hi
  for key, hits in covered.items():
    assert 0.9 <= hits / sims <= 0.99, (key, hits / sims)
  # Correlated errors: the paired interval is much narrower than two independent ones.
  assert np.mean(widths[True]) < 0.75 * np.mean(widths[False])


def test_point_estimates_are_the_models_own_metrics():
  rng = np.random.default_rng(1)
  y, a, b, g = _test_set(rng)
  result = paired.paired_differences(y, a, b, g, n_boot=50, seed=0)
  for side, pred in (("a", a), ("b", b)):
    own = metrics.group_metrics(y, pred, g, n_boot=0)
    for key in paired.DIFFERENCES:
      assert result["fairness"][key][side] == pytest.approx(own["fairness"][key]), key
    assert result["overall"]["accuracy"][side] == pytest.approx(own["overall"]["accuracy"])
    for name, block in own["groups"].items():
      assert result["groups"][name][side] == pytest.approx(block["accuracy"])
  entry = result["fairness"]["accuracy_gap"]
  assert entry["difference"] == pytest.approx(entry["b"] - entry["a"])


def test_identical_models_differ_by_exactly_zero():
  rng = np.random.default_rng(2)
  y, a, _, g = _test_set(rng)
  result = paired.paired_differences(y, a, a.copy(), g, n_boot=100, seed=0)
  for entry in [result["overall"]["accuracy"], *result["fairness"].values(),
                *result["groups"].values()]:
    assert entry["ci"] == [0.0, 0.0] and not entry["excludes_zero"]


def test_a_clear_improvement_excludes_zero_and_small_groups_leave_the_summary():
  y = np.array([0, 1] * 200)
  g = np.array(["big"] * 380 + ["tiny"] * 20)
  a = np.where(np.arange(400) % 4 == 0, 1 - y, y)  # 75% right.
  b = y.copy()                                        # 100% right.
  result = paired.paired_differences(y, a, b, g, n_boot=200, seed=0, min_group_size=25)
  assert result["overall"]["accuracy"]["excludes_zero"]
  assert result["settings"]["fairness_groups"] == ["big"]
  with pytest.raises(ValueError, match="same|one value per example"):
    paired.paired_differences(y, a, b[:10], g)
  with pytest.raises(ValueError, match="n_boot"):
    paired.paired_differences(y, a, b, g, n_boot=0)
