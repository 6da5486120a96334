"""Tests of the training steps and loop on a tiny prepared synthetic dataset."""

import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facebias_jax.models import get_model
from facebias_jax import runs
from facebias_jax.train import config as config_lib
from facebias_jax.train import loop, methods, plan, steps
import train_testlib


@pytest.mark.slow
@pytest.mark.parametrize("name,kind", [("standard_cnn", "classifier"), ("dbvae", "dbvae")])
def test_train_step_shapes_finiteness_and_updates(name, kind):
  kwargs = dict(filters=2, hidden_dim=8, image_size=16)
  if name == "dbvae":
    kwargs["latent_dim"] = 4
  model = get_model(name, rngs=nnx.Rngs(0), **kwargs)
  tx = steps.make_optimizer(1e-3, total_steps=10)
  model_def, state = steps.create_train_state(model, tx, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.uniform(size=(4, 16, 16, 3)), jnp.float32),
           "label": jnp.array([1, 0, 1, 0]), "mask": jnp.array([True, True, True, False]),
           "vae_mask": jnp.array([True, False, True, False])}
  params0 = jax.tree.map(np.asarray, state.params)
  stats0 = jax.tree.map(np.asarray, state.model_state)
  train_step = steps.make_train_step(model_def, tx, kind=kind)
  for _ in range(2):
    state, metrics = train_step(state, batch)
  assert int(state.step) == 2
  expected = {"loss", "accuracy", "grad_norm", "finite"}
  if kind == "dbvae":
    expected |= {"class_loss", "vae_loss", "kl", "recon"}
  assert set(metrics) == expected
  assert all(np.isfinite(v) and np.shape(v) == () for v in jax.device_get(metrics).values())
  assert bool(metrics["finite"])
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), params0,
                         jax.tree.map(np.asarray, state.params))
  assert all(jax.tree.leaves(changed))
  # BatchNorm running statistics moved (train mode).
  assert any(jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b), stats0,
                                          jax.tree.map(np.asarray, state.model_state))))
  eval_metrics = steps.make_eval_step(model_def, kind=kind)(state, batch)
  assert np.isfinite(eval_metrics["loss"])
  if kind == "dbvae":
    mu = steps.make_encode_step(model_def)(state, batch["image"])
    assert mu.shape == (4, 4)


@pytest.mark.slow
def test_classifier_run_writes_outputs_and_load_model(data_dir, tmp_path):
  workdir = str(tmp_path / "cnn")
  config = train_testlib.tiny_config("cnn", data_dir)
  report = loop.train_and_evaluate(config, workdir)
  for name in ("config.json", "metrics.jsonl", "report.json", "report.md",
               "training_curves.png", "tb"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert report["training"]["steps"] == 8 and report["training"]["steps_per_epoch"] == 8
  assert set(report["metrics"]["groups"]) >= {"lighter_female", "darker_male", "unknown"}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [2, 4, 6, 8]
  assert all(np.isfinite(r["loss"]) for r in records)
  model, saved = runs.load_model(workdir)
  assert saved.model.name == "standard_cnn"
  logits, _ = model(jnp.zeros((2, 16, 16, 3)))
  assert logits.shape == (2, 1)
  # Restarting a finished run resumes at its end and only re-evaluates.
  again = loop.train_and_evaluate(config, workdir)
  assert again["training"]["steps"] == 8
  np.testing.assert_allclose(again["metrics"]["overall"]["accuracy"],
                             report["metrics"]["overall"]["accuracy"])
  # A run with a different learning rate is another experiment: refused.
  config.train.learning_rate = 1e-2
  with pytest.raises(runs.ConfigMismatchError, match="train.learning_rate"):
    loop.train_and_evaluate(config, workdir)
  # Bookkeeping fields may change: accepted, and the new values are what config.json says.
  config.train.learning_rate = 5e-4
  config.train.log_every_steps = 3
  assert runs.config_changes(config, workdir) == (
      [], ["train.log_every_steps: saved 2 vs now 3"])
  runs.check_or_write_config(config, workdir)
  assert runs.read_config(workdir).train.log_every_steps == 3


@pytest.mark.slow
def test_dbvae_run_with_debiased_sampling(data_dir, tmp_path):
  workdir = str(tmp_path / "dbvae")
  config = train_testlib.tiny_config("dbvae", data_dir)
  report = loop.train_and_evaluate(config, workdir)
  assert report["training"]["method"] == "dbvae"
  debias = report["debias"]
  assert set(debias["groups"]) == {"lighter_female", "lighter_male", "darker_female",
                                   "darker_male"}
  np.testing.assert_allclose(sum(g["sampling_share"] for g in debias["groups"].values()), 1.0)
  for name in ("latent_histograms.png", "extreme_samples.png", "report.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    last = [json.loads(line) for line in f][-1]
  assert {"kl", "recon", "class_loss", "vae_loss"} <= set(last)
  model, _ = runs.load_model(workdir)
  logits, aux = model(jnp.zeros((2, 16, 16, 3)))
  assert aux["mu"].shape == (2, 4)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
  workdir = str(tmp_path / "nan")
  config = train_testlib.tiny_config("cnn", data_dir, checkpoint_every_steps=1,
                                     log_every_steps=5)
  real_inputs = loop._step_inputs
  calls = []

  def inject_nan_at_step_3(batch, data, **kwargs):
    inputs = real_inputs(batch, data, **kwargs)
    calls.append(1)
    if len(calls) == 3:
      inputs["image"] = np.full_like(inputs["image"], np.nan)
    return inputs

  monkeypatch.setattr(loop, "_step_inputs", inject_nan_at_step_3)
  with pytest.raises(loop.NonFiniteLossError, match=r"at step 3 .*last good checkpoint is step 2"):
    loop.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2"]
  model, _ = runs.load_model(workdir)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(nnx.state(model)))
  # An infinite learning rate makes the parameters non-finite at the first update:
  # stopped there, with nothing checkpointed.
  workdir = str(tmp_path / "inf_lr")
  monkeypatch.setattr(loop, "_step_inputs", real_inputs)
  config.train.learning_rate = float("inf")
  with pytest.raises(loop.NonFiniteLossError, match=r"at step 1 .*checkpoint is step None"):
    loop.train_and_evaluate(config, workdir)


def test_validate_config_errors(data_dir):
  config = train_testlib.tiny_config("cnn", data_dir)
  config_lib.validate_config(config, num_devices=4)
  cases = [("train.method", "bogus", "method='bogus' is not one of"),
           ("model.name", "vgg", "config.model.name='vgg'"),
           ("train.batch_size", 0, "batch_size must be positive"),
           ("debias.combine", "mean", "combine='mean'"),
           ("train.method", "dbvae", "needs config.model.name='dbvae'"),
           ("train.reweight_by", "magic", "reweight_by='magic' is not one of"),
           ("group_dro.eta", 0.0, "group_dro.eta must be > 0"),
           ("jtt.upweight", 0, "jtt.upweight must be >= 1"),
           ("dfr.c_grid", (1.0, -1.0), "c_grid must be positive")]
  methods = {"group_dro": "group_dro", "jtt": "jtt", "dfr": "dfr"}
  for field, value, message in cases:
    bad = train_testlib.tiny_config("cnn", data_dir)
    section, key = field.split(".")
    bad[section][key] = value
    if section in methods:
      bad.train.method = methods[section]
    with pytest.raises(ValueError, match=message):
      config_lib.validate_config(bad, num_devices=1)
  with pytest.raises(ValueError, match="batch_size=8 does not divide across 3 devices"):
    config_lib.validate_config(config, num_devices=3)


def test_balanced_epoch_plans_equalise_groups(data_dir):
  rng = np.random.default_rng(0)
  n = 60
  attributes = {"skin_type": rng.choice([1, 2, 5], size=n), "Male": rng.integers(0, 2, n)}
  groups = methods.assign(attributes, "skin,Male")
  data = types.SimpleNamespace(attributes=attributes, size=n, groups=groups)
  _, sizes = np.unique(groups.codes, return_counts=True)
  for method, target in (("oversample", sizes.max()), ("subsample", sizes.min())):
    config = train_testlib.tiny_config("cnn", data_dir, method=method, groups="skin,Male")
    indices = plan.epoch_plan(config, data, epoch=0)
    assert indices.size == plan.epoch_length(config, data) == target * sizes.size
    _, counts = np.unique(groups.codes[indices], return_counts=True)
    assert counts.tolist() == [target] * sizes.size, method


def test_load_model_missing_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="train"):
    runs.load_model(str(tmp_path / "nowhere"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="config.json"):
    runs.load_model(str(tmp_path / "empty"))
