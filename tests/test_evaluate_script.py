"""Tests for facebias_jax.eval.evaluate, studies.alpha_sweep and the evaluate / sweep_alpha scripts."""

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from experiments.configs import evaluate as evaluate_config
from facebias_jax import runs
from facebias_jax.eval import evaluate, report
from facebias_jax.studies import alpha_sweep as sweep
from facebias_jax.models import get_model
import train_testlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_batches(images, labels, attributes, batch_size):
  """Eval-style batches: the last one padded, with a mask."""
  n = len(images)
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    real = idx < n
    idx = np.where(real, idx, 0)
    yield {"image": images[idx], "label": labels[idx], "index": idx.astype(np.int64), "mask": real,
           "attributes": {k: v[idx] for k, v in attributes.items()}}


def _quick_model(name, num_classes=1, **kwargs):
  """A registered model with random weights, built without running its initialisers.

  Eager initialisers compile one XLA program per parameter shape (tens of seconds on
  2 busy cores); ``nnx.eval_shape`` skips them and the weights are filled from numpy.
  """
  abstract = nnx.eval_shape(lambda: get_model(name, num_classes, **kwargs))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(0)

  def fill(path, x):
    name = jax.tree_util.keystr(path)
    if x.ndim >= 2:  # kernels: LeCun-normal scale keeps activations O(1).
      return (rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)
    if "var" in name or "scale" in name:  # BatchNorm variances / scales must be positive.
      return rng.uniform(0.5, 1.5, x.shape).astype(x.dtype)
    return rng.normal(0.0, 0.1, x.shape).astype(x.dtype)

  return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def _data(n=10, size=16, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.random((n, size, size, 3)).astype(np.float32)
  labels = rng.integers(0, 2, n).astype(np.int32)
  attributes = {"Male": rng.integers(0, 2, n).astype(np.int32),
                "skin_type": rng.integers(1, 7, n).astype(np.int32)}
  return images, labels, attributes


@pytest.mark.parametrize("name, num_classes", [("standard_cnn", 1), ("standard_cnn", 2), ("dbvae", 1)])
def test_predict_drops_padding_and_matches_model(name, num_classes):
  images, labels, attributes = _data()
  model = _quick_model(name, num_classes, image_size=16, filters=4,
                       **({"latent_dim": 4} if name == "dbvae" else {}))
  model.train()  # predict must use an eval-mode copy and leave this model as it is.
  preds = evaluate.predict(model, _fake_batches(images, labels, attributes, batch_size=4))
  assert preds["prob"].shape == (10,) and preds["prob"].dtype == np.float32
  assert preds["index"].tolist() == list(range(10))
  assert preds["label"].tolist() == labels.tolist()
  assert preds["attributes"]["Male"].tolist() == attributes["Male"].tolist()
  model.eval()
  logits = np.asarray(nnx.jit(lambda m, x: m(x)[0])(model, images))  # dbvae: rngs=None by default
  expected = (1 / (1 + np.exp(-logits[:, 0])) if num_classes == 1
              else np.exp(logits[:, 1]) / np.exp(logits).sum(1))
  np.testing.assert_allclose(preds["prob"], expected, rtol=1e-4, atol=1e-5)


def test_evaluate_predictions_groups_and_detection():
  images, labels, attributes = _data(n=40)
  preds = {"prob": np.linspace(0, 1, 40).astype(np.float32), "label": labels,
           "attributes": attributes}
  m = evaluate.evaluate_predictions(preds, group_spec="skin,Male", n_boot=50)
  assert set(m["groups"]) <= {"darker_female", "darker_male", "lighter_female", "lighter_male"}
  assert sum(g["n"] for g in m["groups"].values()) == 40
  det = dict(preds, is_face=np.ones(40, bool))  # detection: the hard decisions are used
  assert evaluate.evaluate_predictions(det, group_spec="Male", n_boot=0)["overall"]["selection_rate"] == 1.0
  with pytest.raises(ValueError):
    evaluate.evaluate_predictions(preds, group_spec="Nonexistent", n_boot=0)
  with pytest.raises(ValueError, match="no attributes"):
    evaluate.evaluate_predictions({"prob": preds["prob"], "label": labels, "attributes": {}},
                                  group_spec="Male")


def test_predict_detection_on_batches():
  class Bright(nnx.Module):
    def __call__(self, x):
      return (20.0 * x.mean(axis=(1, 2, 3)) - 10.0)[:, None], {}

  images = np.zeros((3, 32, 32, 3), np.float32)
  images[0, 8:16, 8:16] = 1.0
  labels = np.ones(3, np.int32)
  attrs = {"Male": np.array([1, 0, 1], np.int32)}
  preds = evaluate.predict_detection(Bright(), _fake_batches(images, labels, attrs, batch_size=2),
                                     input_size=8, scales=(0.25,), stride_frac=0.5)
  assert preds["is_face"].tolist() == [True, False, False]
  assert preds["best_box"][0].tolist() == [8, 8, 8, 8]


def _eval_config(**fields):
  config = evaluate_config.get_config()
  for key, value in fields.items():
    node = config
    *sections, last = key.split(".")
    for section in sections:
      node = node[section]
    node[last] = value
  return config


def test_run_evaluation_config_errors(tmp_path):
  with pytest.raises(ValueError, match="Nothing to evaluate"):
    evaluate.run_evaluation(_eval_config(), str(tmp_path))
  with pytest.raises(ValueError, match="not both"):
    evaluate.run_evaluation(_eval_config(run="a", compare="b,c"), str(tmp_path))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    evaluate.run_evaluation(_eval_config(run=str(tmp_path / "missing")), str(tmp_path))
  with pytest.raises(ValueError, match="--labels has 1 names but 2"):
    evaluate.run_evaluation(_eval_config(compare=f"{tmp_path},{tmp_path}", labels="a"),
                            str(tmp_path))
  with pytest.raises(ValueError, match="config.protocol must be one of"):
    evaluate.run_evaluation(_eval_config(run="a", protocol="windows"), str(tmp_path))
  with pytest.raises(ValueError, match="config.detection.scales"):
    evaluate.run_evaluation(_eval_config(**{"run": "a", "detection.scales": (1.5,)}),
                            str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--run", "--checkpoint"])
def test_evaluate_script_missing_run_is_clear_error(tmp_path, flag):
  proc = subprocess.run([sys.executable, "-m", "experiments.evaluate",
                         f"{flag}={tmp_path / 'nope'}", f"--workdir={tmp_path}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert "evaluate: error:" in proc.stderr and "does not exist" in proc.stderr
  assert "Traceback" not in proc.stderr


def _fake_report(mean_acc, var):
  return {"metrics": {"fairness": {"mean_group_accuracy": mean_acc, "accuracy_variance": var,
                                   "worst_group_accuracy": mean_acc},
                      "overall": {"accuracy": mean_acc}, "groups": {"a": {"accuracy": mean_acc}}}}


def test_run_alpha_sweep_with_stub_training(tmp_path):
  config = ml_collections.ConfigDict({"seed": 0, "debias": {"smoothing": 0.001}})
  calls = []

  def train_fn(cfg, workdir):
    calls.append((cfg.debias.smoothing, cfg.seed, workdir))
    rep = dict(_fake_report(0.9 - cfg.debias.smoothing, cfg.debias.smoothing / 10 + cfg.seed * 1e-4),
               config=cfg.to_dict())
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "report.json"), "w") as f:
      json.dump(rep, f)
    return rep

  out = sweep.run_alpha_sweep(config, str(tmp_path), alphas=[0.1, 0.01], seeds=[0, 1], train_fn=train_fn)
  assert len(calls) == 4 and config.debias.smoothing == 0.001  # the base config is not mutated
  assert calls[0][2] == sweep.run_dir(str(tmp_path), 0.1, 0)
  assert [r["alpha"] for r in out["rows"]] == [0.01, 0.1]
  assert out["rows"][1]["mean_accuracy"] == pytest.approx(0.8)
  assert out["rows"][1]["accuracy_variance_std"] == pytest.approx(np.std([0.01, 0.0101], ddof=1))
  for ext in ("json", "md", "png"):
    assert os.path.exists(tmp_path / f"sweep.{ext}")
  # A second call reuses the finished runs.
  sweep.run_alpha_sweep(config, str(tmp_path), alphas=[0.1, 0.01], seeds=[0, 1], train_fn=train_fn)
  assert len(calls) == 4
  with pytest.raises(ValueError, match="> 0"):
    sweep.run_alpha_sweep(config, str(tmp_path), alphas=[0.0], seeds=[0], train_fn=train_fn)
  assert report.load_report(sweep.run_dir(str(tmp_path), 0.01, 1))["config"]["seed"] == 1


def test_evaluate_model_on_record_source():
  images, labels, attributes = _data(n=12)
  source = [{"image": (images[i] * 255).astype(np.uint8), "label": int(labels[i]),
             **{k: int(v[i]) for k, v in attributes.items()}} for i in range(12)]
  model = _quick_model("standard_cnn", 1, image_size=16, filters=4)
  m = evaluate.evaluate_model(model, source, group_spec="Male", batch_size=5, image_size=16,
                              normalize="unit", n_boot=20)
  assert m["overall"]["n"] == 12
  assert {g: b["n"] for g, b in m["groups"].items()} == {
      "male": int(attributes["Male"].sum()), "female": int(12 - attributes["Male"].sum())}
  det = evaluate.evaluate_model(model, source, group_spec="skin", batch_size=4, image_size=None,
                                normalize="unit", n_boot=0, protocol="detection",
                                detection_options={"input_size": 16, "scales": (1.0,)})
  assert det["overall"]["n"] == 12
  with pytest.raises(ValueError, match="input_size"):
    evaluate.evaluate_model(model, source, group_spec="skin", batch_size=4, image_size=None,
                            normalize="unit", protocol="detection")


def test_run_evaluation_single_and_detection_with_fakes(tmp_path, monkeypatch):
  from facebias_jax.data import sources

  images, labels, attributes = _data(n=12)
  source = [{"image": (images[i] * 255).astype(np.uint8), "label": int(labels[i]),
             **{k: int(v[i]) for k, v in attributes.items()}} for i in range(12)]
  config = ml_collections.ConfigDict({
      "seed": 0, "model": {"name": "standard_cnn"},
      "data": {"name": "fake/cfg", "eval_split": "test", "data_dir": None, "manual_dir": None,
               "image_size": 16, "normalize": "unit", "label_key": "label"},
      "eval": {"groups": "skin,Male", "batch_size": 8}})
  model = _quick_model("standard_cnn", 1, image_size=16, filters=4)
  loaded = []
  def fake_load_run(workdir, step=None):
    loaded.append((workdir, step))
    return runs.Run(model=model, config=config, step=step or 7, workdir=workdir)

  monkeypatch.setattr(runs, "load_run", fake_load_run)
  monkeypatch.setattr(sources, "load_source", lambda name, **kw: source)
  run = tmp_path / "run"
  run.mkdir()
  out = evaluate.run_evaluation(_eval_config(run=str(run), n_boot=10), None)
  rep = out["reports"]["run"]
  assert rep["files"]["json"] == str(run / "report.json")  # the config's own split: in place
  assert rep["dataset"]["name"] == "fake/cfg" and rep["dataset"]["groups"] == "skin,Male"
  assert rep["metrics"]["overall"]["n"] == 12 and out["comparison"] is None
  assert rep["model"]["step"] == 7  # The step evaluated is recorded.
  det = evaluate.run_evaluation(_eval_config(**{
      "run": str(run), "protocol": "detection", "n_boot": 0, "groups": "skin", "step": 3,
      "detection.scales": (1.0, 0.5), "detection.stride_frac": 0.5}), None)
  rep = det["reports"]["run"]
  assert loaded[-1] == (str(run), 3) and rep["model"]["step"] == 3
  assert rep["dataset"]["protocol"] == "detection"
  assert rep["dataset"]["detection"]["scales"] == [1.0, 0.5]
  assert os.path.dirname(rep["files"]["json"]) == str(run / "eval_fake_cfg_test_detection")
  assert set(rep["metrics"]["groups"]) <= {"darker", "lighter"}
  assert sum(g["n"] for g in rep["metrics"]["groups"].values()) == 12


# ----------------------------------------------------------------------------- end to end

_TINY = "tiny_eval16"


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
  """A tiny prepared synthetic faces-vs-non-faces dataset (16 px), readable by name."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  train_testlib.prepare_tiny_dataset(data_dir, name=_TINY, train=48, validation=8, test=32)
  return data_dir


def _script(args, env_dir, timeout=400):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             # Both scripts compile the same model: share compilations between the processes.
             JAX_COMPILATION_CACHE_DIR=str(env_dir / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, env=env)


@pytest.mark.slow
def test_sweep_and_evaluate_end_to_end(tiny_data_dir, tmp_path):
  sweep_dir = tmp_path / "sweep"
  proc = _script(["experiments.sweep_alpha", "--flagfile=experiments/flags/sweep_alpha_synthetic.flags",
                  f"--workdir={sweep_dir}", "--alphas=0.001,0.1", "--seeds=0",
                  f"--config.data.name=facebias_synthetic_faces/{_TINY}",
                  f"--config.data.data_dir={tiny_data_dir}", "--config.data.image_size=16",
                  "--config.data.num_threads=0", "--config.model.latent_dim=4",
                  "--config.model.filters=4", "--config.model.hidden_dim=16",
                  "--config.train.batch_size=8", "--config.train.max_steps=2",
                  "--config.train.progress_bar=False", "--config.eval.batch_size=32",
                  "--config.eval.n_boot=20", "--config.eval.min_group_size=0"], tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(sweep_dir / "sweep.json"))
  assert [r["alpha"] for r in summary["rows"]] == [0.001, 0.1]
  assert all(r["num_seeds"] == 1 for r in summary["rows"])
  assert 0.0 <= summary["rows"][0]["mean_accuracy"] <= 1.0
  assert "| 0.001 | 1 |" in (sweep_dir / "sweep.md").read_text()
  assert (sweep_dir / "sweep.png").stat().st_size > 5000
  run_a, run_b = (sweep.run_dir(str(sweep_dir), a, 0) for a in (0.001, 0.1))
  assert report.load_report(run_b)["config"]["debias"]["smoothing"] == 0.1

  out = tmp_path / "compare"
  proc = _script(["experiments.evaluate", f"--compare={run_a},{run_b}", f"--workdir={out}",
                  "--config.n_boot=20", "--config.groups=skin,Male"], tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  comparison = json.load(open(out / "comparison.json"))
  assert comparison["labels"] == ["alpha_0.001/seed_0", "alpha_0.1/seed_0"]
  rep = report.load_report(str(out / "alpha_0.001_seed_0"))
  assert rep["dataset"]["name"] == f"facebias_synthetic_faces/{_TINY}"
  assert rep["dataset"]["split"] == "test" and rep["model"]["name"] == "dbvae"
  assert rep["metrics"]["overall"]["n"] == 32
  assert "unknown" in rep["metrics"]["groups"]  # the non-faces: reported, not in fairness
  assert "unknown" not in rep["metrics"]["fairness"]["groups"]
  # Same checkpoint and split as training: identical predictions, identical metrics.
  trained = report.load_report(run_a)["metrics"]
  assert rep["metrics"]["overall"]["accuracy"] == trained["overall"]["accuracy"]
  # Paired differences from the first run, on the same test images: the two sides are
  # the runs' own numbers, and the images were resampled once for both.
  paired = comparison["paired"]
  assert paired["reference"] == "alpha_0.001/seed_0" and not paired["skipped"]
  other = report.load_report(str(out / "alpha_0.1_seed_0"))["metrics"]
  worst = paired["runs"]["alpha_0.1/seed_0"]["fairness"]["worst_group_accuracy"]
  assert worst["a"] == pytest.approx(rep["metrics"]["fairness"]["worst_group_accuracy"])
  assert worst["b"] == pytest.approx(other["fairness"]["worst_group_accuracy"])
  assert worst["difference"] == pytest.approx(worst["b"] - worst["a"])
  assert paired["runs"]["alpha_0.1/seed_0"]["settings"]["paired"] is True
  assert "Paired differences from alpha_0.001/seed_0" in (out / "comparison.md").read_text()
  assert (out / "comparison_paired.png").stat().st_size > 5000
