"""Tests of eval/seeds.py: summaries over seeds (the alpha sweep, the methods table)
against hand computations."""

import csv
import json
import math

import numpy as np
import pytest

from facebias_jax.eval import seeds


def _png_ok(path):
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_summarize_sweep_and_write(tmp_path):
  def rep(mean_acc, var):
    return {"metrics": {"fairness": {"mean_group_accuracy": mean_acc, "accuracy_variance": var,
                                     "worst_group_accuracy": mean_acc - 0.1},
                        "overall": {"accuracy": mean_acc},
                        "groups": {"a": {"accuracy": mean_acc, "in_fairness": True},
                                   "unknown": {"accuracy": 0.5, "in_fairness": False}}}}

  summary = seeds.summarize_sweep({"0.1": [rep(0.8, 0.01)], 0.001: [rep(0.9, 0.002), rep(0.8, 0.004)]})
  rows = summary["rows"]
  assert [r["alpha"] for r in rows] == [0.001, 0.1]  # sorted numerically
  assert rows[0]["num_seeds"] == 2
  assert rows[0]["mean_accuracy"] == pytest.approx(0.85)
  assert rows[0]["mean_accuracy_std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
  assert rows[0]["accuracy_variance"] == pytest.approx(0.003)
  assert rows[1]["mean_accuracy_std"] == 0.0
  assert summary["groups"] == ["a"]  # "unknown" is not a demographic group.
  out = seeds.write_sweep(summary, str(tmp_path))
  md = (tmp_path / "sweep.md").read_text()
  assert "| 0.001 | 2 | 85.00 ± 7.07 | 30.00 ± 14.14 |" in md
  assert json.load(open(tmp_path / "sweep.json"))["rows"][1]["alpha"] == 0.1
  assert _png_ok(tmp_path / "sweep.png") and out["files"]["png"].endswith("sweep.png")
  with pytest.raises(ValueError, match="no reports"):
    seeds.summarize_sweep({0.1: []})


def _report(accs, step=6, per_epoch=3, overall=None):
  groups = {g: {"accuracy": a, "in_fairness": True} for g, a in accs.items()}
  vals = list(accs.values())
  return {"metrics": {"fairness": {"mean_group_accuracy": float(np.mean(vals)),
                                   "accuracy_variance": float(np.var(vals)),
                                   "worst_group_accuracy": min(vals)},
                      "overall": {"accuracy": overall if overall is not None else
                                  float(np.mean(vals))},
                      "groups": groups},
          "selection": {"step": step}, "training": {"steps_per_epoch": per_epoch,
                                                    "wall_time_s": 10.0}}


def test_t_interval_matches_a_hand_computation():
  lo, hi = seeds.t_interval([0.7, 0.8, 0.9])
  half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n)
  assert (lo, hi) == (pytest.approx(0.8 - half), pytest.approx(0.8 + half))
  assert all(math.isnan(v) for v in seeds.t_interval([0.5]))
  assert seeds.mean_std([0.5, None, 0.7]) == (pytest.approx(0.6), pytest.approx(0.1414213))


def test_summarize_and_write_methods(tmp_path):
  reports = {"erm": [_report({"maj": 0.95, "min": 0.60}), _report({"maj": 0.97, "min": 0.50})],
             "dfr": [_report({"maj": 0.90, "min": 0.85}, step=3),
                     _report({"maj": 0.88, "min": 0.87}, step=9)]}
  shares = {"maj": 0.99, "min": 0.01}
  summary = seeds.summarize_methods(reports, train_shares=shares, steps_per_epoch=3)
  erm, dfr = summary["rows"]
  assert erm["method"] == "erm" and erm["num_seeds"] == 2
  assert erm["worst_group_accuracy"] == pytest.approx(0.55)
  assert erm["worst_group_accuracy_std"] == pytest.approx(np.std([0.6, 0.5], ddof=1))
  assert erm["worst_group_accuracy_values"] == [0.6, 0.5]
  # Average accuracy: test group accuracies weighted by the training shares.
  assert erm["average_accuracy"] == pytest.approx(np.mean([0.99 * 0.95 + 0.01 * 0.6,
                                                           0.99 * 0.97 + 0.01 * 0.5]))
  assert dfr["selected_epoch_values"] == [1.0, 3.0]
  assert dfr["train_time_s"] == 20.0
  assert summary["ranking"] == ["dfr", "erm"]
  assert summary["groups"] == ["maj", "min"]
  out = seeds.write_methods(summary, str(tmp_path), title="toy")
  md = (tmp_path / "methods.md").read_text()
  assert "| dfr | 2 | 86.00 ± 1.41 |" in md and "dfr > erm" in md
  with open(tmp_path / "methods.csv") as f:
    rows = list(csv.reader(f))
  assert rows[0][:3] == ["method", "num_seeds", "worst_group_accuracy"]
  assert float(rows[2][2]) == pytest.approx(0.86)
  assert json.load(open(tmp_path / "methods.json"))["ranking"] == ["dfr", "erm"]
  assert _png_ok(tmp_path / "methods.png") and out["files"]["png"].endswith("methods.png")
  # Without training shares the average is the plain test accuracy.
  plain = seeds.summarize_methods({"erm": [_report({"a": 0.8, "b": 0.6}, overall=0.75)]})
  assert plain["rows"][0]["average_accuracy"] == pytest.approx(0.75)
  with pytest.raises(ValueError, match="no reports"):
    seeds.summarize_methods({"erm": []})
