"""Validation per group during training, checkpoint selection and early stopping."""

import json
import math
import os

import numpy as np
import pytest

import train_testlib
from facebias_jax import runs
from facebias_jax.data import sources
from facebias_jax.eval import evaluate
from facebias_jax.train import loop, selection


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  train_testlib.prepare_tiny_dataset(path, validation=24)
  return path


def _config(data_dir, **train):
  config = train_testlib.tiny_config("cnn", data_dir, **train)
  config.train.select_by = "worst_group_accuracy"
  config.eval.every_steps = 2
  config.train.keep_checkpoints = 1
  config.train.checkpoint_every_steps = 100
  return config


def _records(workdir):
  with open(os.path.join(workdir, runs.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_selected_step_is_the_best_validation_and_is_kept(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  report = loop.train_and_evaluate(_config(data_dir, learning_rate=3e-3), workdir)
  vals = [r for r in _records(workdir) if "val_accuracy" in r]
  assert [r["step"] for r in vals] == [2, 4, 6, 8]
  scores = [r["val_worst_group_accuracy"] for r in vals]
  best = vals[int(np.argmax(scores))]["step"]  # First of equal bests: only improvements count.
  assert report["selection"] == {"select_by": "worst_group_accuracy", "step": best,
                                 "value": max(scores), "patience": 0}
  assert report["model"]["step"] == best
  # Rotation keeps the newest checkpoint and the selected one, nothing else.
  assert runs.finished_steps(workdir) == sorted({best, 8})
  # The test report is the selected checkpoint's.
  model, config = runs.load_model(workdir, step=best)
  source = sources.load_source(config.data.name, split="test", data_dir=config.data.data_dir)
  again = evaluate.evaluate_model(model, source, group_spec="skin,Male", batch_size=16,
                                  image_size=16, normalize="unit", n_boot=20, seed=0)
  assert again["overall"]["accuracy"] == report["metrics"]["overall"]["accuracy"]
  # Per-group validation accuracies are logged and drawn.
  assert set(vals[0]["val_group_accuracy"]) >= {"lighter_female", "unknown"}
  assert os.path.getsize(os.path.join(workdir, "training_curves.png")) > 10_000


def test_early_stopping_and_resumed_selection(data_dir, tmp_path, monkeypatch):
  scripted = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.9])

  def fake_validation(self, model):
    del self, model
    return {"val_accuracy": 0.8, "val_loss": 0.5, "val_worst_group": "g",
            "val_worst_group_accuracy": next(scripted), "val_group_accuracy": {}}

  monkeypatch.setattr(selection.Validator, "__call__", fake_validation)
  config = _config(data_dir, patience=2, max_steps=12)
  report = loop.train_and_evaluate(config, str(tmp_path / "stop"))
  # 0.7 at step 4, then two validations without improvement: stop at step 8.
  assert report["training"]["steps"] == 8 and report["training"]["stopped_early"]
  assert report["selection"]["step"] == 4 and report["selection"]["value"] == 0.7
  assert report["model"]["step"] == 4


def test_selection_rules():
  by_loss = selection.Selection("loss")
  assert by_loss.update(2, {"val_loss": 0.5}) and not by_loss.update(4, {"val_loss": 0.6})
  assert by_loss.update(6, {"val_loss": 0.4}) and by_loss.best_step == 6
  worst = selection.Selection("worst_group_accuracy", patience=1)
  assert not worst.update(2, {"val_worst_group_accuracy": None})  # No group big enough.
  assert worst.best_step == -1 and worst.stop
  restored = selection.Selection("worst_group_accuracy")
  worst.update(4, {"val_worst_group_accuracy": 0.3})
  restored.restore(worst.state())
  assert (restored.best_step, restored.best_value, restored.bad) == (4, 0.3, 0)
  assert math.isnan(selection.Selection("accuracy").summary()["value"] or math.nan)
  record = selection.validation_record(
      {"overall": {"accuracy": 0.75}, "groups": {"a": {"accuracy": 0.5}},
       "fairness": {"worst_group_accuracy": math.nan, "worst_group": None,
                    "mean_group_accuracy": 0.5}}, 0.3)
  assert record["val_worst_group_accuracy"] is None and record["val_group_accuracy"] == {"a": 0.5}
  # Binary cross-entropy from logits against a hand computation.
  assert selection._bce(np.array([0.0, 2.0]), np.array([1, 0])) == pytest.approx(
      (math.log(2) + math.log(1 + math.exp(2))) / 2)


def test_no_validation_split_is_a_clear_error(tmp_path):
  data_dir = str(tmp_path / "tfds")
  train_testlib.prepare_tiny_dataset(data_dir, name="tiny_noval", validation=0)
  config = _config(data_dir)
  config.data.name = "facebias_synthetic_faces/tiny_noval"
  with pytest.raises(ValueError, match="(?s)has no split 'validation'.*select_by='last'"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  # Nothing written that blocks a rerun: no config.json, no checkpoint (the folder
  # itself and its lock file are created up front).
  assert sorted(os.listdir(tmp_path / "run")) == [".lock"]


@pytest.mark.slow
def test_progress_lines_without_a_terminal(data_dir, tmp_path, capsys):
  loop.train_and_evaluate(_config(data_dir, max_steps=4, log_every_steps=2),
                          str(tmp_path / "lines"))
  out = capsys.readouterr().out
  assert "step 2/4 epoch 0 loss" in out and "steps/s ETA" in out
  assert "validation step 4: accuracy" in out
