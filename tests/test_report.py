"""Tests for facebias_jax.eval.report: report files, comparison, sweep table, plots."""

import csv
import json
import math
import os

import numpy as np
import pytest

from facebias_jax.eval import metrics, plots, report

_GROUPS = ("darker_female", "darker_male", "lighter_female", "lighter_male")


def _metrics(accuracies, seed=0, n=400, small=None):
  """group_metrics of fake predictions with the given per-group accuracies."""
  rng = np.random.default_rng(seed)
  y_true, y_pred, groups = [], [], []
  for g, acc in zip(_GROUPS, accuracies):
    m = 10 if g == small else n
    t = rng.integers(0, 2, m)
    y_true.append(t)
    y_pred.append(np.where(rng.random(m) < acc, t, 1 - t))
    groups += [g] * m
  return metrics.group_metrics(np.concatenate(y_true), np.concatenate(y_pred), np.array(groups),
                               n_boot=100, seed=seed)


def _png_ok(path):
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 5000


def test_to_jsonable_nan_numpy_configdict():
  import ml_collections
  cfg = ml_collections.ConfigDict({"a": 1, "b": {"c": (1, 2)}})
  out = report.to_jsonable({"x": np.float32(np.nan), "y": np.int64(3), "z": np.array([1.5, np.inf]),
                            "cfg": cfg, 4: True})
  assert out == {"x": None, "y": 3, "z": [1.5, None], "cfg": {"a": 1, "b": {"c": [1, 2]}}, "4": True}
  json.dumps(out, allow_nan=False)


def test_write_report_files_and_schema(tmp_path):
  m = _metrics([0.6, 0.8, 0.9, 0.95], small="darker_female")
  m["groups"]["darker_female"]["fpr"] = math.nan  # an undefined rate must become null.
  rep = report.write_report(str(tmp_path), metrics=m, dataset={"name": "synthetic", "split": "test"},
                            model={"name": "standard_cnn", "workdir": "/w"},
                            config={"seed": 0}, extra={"protocol": "classification"})
  with open(tmp_path / "report.json") as f:
    data = json.load(f)  # strict JSON: no NaN tokens
  assert {"metrics", "dataset", "model", "config", "protocol"} <= set(data)
  assert data["metrics"]["groups"]["darker_female"]["fpr"] is None
  assert data["metrics"]["groups"]["darker_female"]["small_sample"] is True
  assert set(data["metrics"]["fairness"]) >= {"worst_group_accuracy", "accuracy_gap", "accuracy_variance",
                                             "demographic_parity_difference",
                                             "equalized_odds_difference"}
  assert rep["metrics"] == data["metrics"]
  md = (tmp_path / "report.md").read_text()
  for g in _GROUPS:
    assert f"| {g} | " in md
  assert "small sample" in md and "Equalized odds difference" in md and "n/a" in md
  with open(tmp_path / "report.csv") as f:
    rows = list(csv.reader(f))
  assert rows[0][:3] == ["group", "n", "accuracy"]
  assert [r[0] for r in rows[1:]] == list(_GROUPS) + ["overall"]
  assert rows[1][1] == "10"
  assert _png_ok(tmp_path / "report_groups.png")
  assert report.load_report(str(tmp_path))["model"]["name"] == "standard_cnn"
  with pytest.raises(ValueError, match="overwrite"):
    report.write_report(str(tmp_path), metrics=m, dataset="d", model="m", config={},
                        extra={"metrics": 1})


def test_load_report_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match="experiments.evaluate"):
    report.load_report(str(tmp_path))


def test_compare_runs(tmp_path):
  reps = {label: {"metrics": _metrics(accs), "model": label}
          for label, accs in (("standard", [0.6, 0.8, 0.9, 0.95]), ("balanced", [0.8, 0.85, 0.88, 0.9]),
                              ("dbvae", [0.85, 0.87, 0.9, 0.92]))}
  out = report.compare_runs(reps, str(tmp_path))
  assert out["labels"] == ["standard", "balanced", "dbvae"]
  assert out["groups"] == list(_GROUPS)
  assert out["accuracy"]["dbvae"]["lighter_male"] == reps["dbvae"]["metrics"]["groups"]["lighter_male"]["accuracy"]
  md = (tmp_path / "comparison.md").read_text()
  assert "| Group | standard | balanced | dbvae |" in md
  with open(tmp_path / "comparison.csv") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["group", "standard", "balanced", "dbvae"]
  assert json.load(open(tmp_path / "comparison.json"))["fairness"]["standard"]["worst_group"] == "darker_female"
  assert _png_ok(tmp_path / "comparison.png")


def test_plot_training_curves_tolerates_missing_keys(tmp_path):
  path = tmp_path / "metrics.jsonl"
  # The keys the loop writes: training records, then a validation record.
  lines = [{"step": s, "loss": 1.0 / (s + 1), "accuracy": 0.5 + s / 100, "epoch": 0}
           for s in range(5, 50, 5)]
  lines += [{"step": 50, "val_accuracy": 0.8, "val_loss": 0.4,
             "val_group_accuracy": {"a": 0.7, "b": 0.9}}, {"step": 55, "note": "x"}]
  path.write_text("\n".join(json.dumps(l) for l in lines) + "\n{\"step\": 60, \"train/lo")
  out = plots.plot_training_curves(str(tmp_path), str(tmp_path / "curves.png"))
  assert _png_ok(out)
  plots.plot_training_curves({"a": str(path), "b": str(path)}, str(tmp_path / "two.png"))
  (tmp_path / "empty.jsonl").write_text(json.dumps({"step": 1, "lr": 0.1}) + "\n")
  with pytest.raises(ValueError, match="No loss or accuracy"):
    plots.plot_training_curves(str(tmp_path / "empty.jsonl"), str(tmp_path / "x.png"))


def test_plot_latent_histograms_and_extremes(tmp_path):
  rng = np.random.default_rng(0)
  mu = rng.normal(size=(200, 5))
  hists = [np.histogram(mu[:, d], bins=8, density=True) for d in range(5)]
  dens, edges = np.stack([h[0] for h in hists]), np.stack([h[1] for h in hists])
  assert _png_ok(plots.plot_latent_histograms((dens, edges), str(tmp_path / "h.png")))
  assert _png_ok(plots.plot_latent_histograms((edges, dens), str(tmp_path / "h2.png"), max_dims=2))
  with pytest.raises(ValueError, match="bins\\+1"):
    plots.plot_latent_histograms((dens, dens), str(tmp_path / "bad.png"))
  low = rng.random((4, 16, 16, 3)).astype(np.float32)
  high = rng.integers(0, 255, (3, 16, 16, 3)).astype(np.uint8)
  assert _png_ok(plots.plot_extreme_samples(low, high, str(tmp_path / "e.png"),
                                             probs_low=[1e-4] * 4, probs_high=[0.1] * 3))
  with pytest.raises(ValueError, match="one image size"):
    plots.plot_extreme_samples(low, high[:, :8], str(tmp_path / "bad.png"))
