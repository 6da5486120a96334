"""Tests of the training methods (train/methods.py, jtt.py, dfr.py, logistic.py, the Group
DRO step) against hand computations, scikit-learn and recomputation."""

import json
import os
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sklearn.linear_model import LogisticRegression

import train_testlib
from facebias_jax import cam, runs
from facebias_jax.data import pipeline, sampling, sources
from facebias_jax.models import get_model, inference
from facebias_jax.train import dfr, jtt, logistic, loop, losses, methods, plan, steps


# ----------------------------------------------------------------------------- Group DRO


def test_group_dro_update_matches_hand_computation():
  q = jnp.asarray([0.25, 0.25, 0.5])
  loss = jnp.asarray([1.0, 0.2, 0.0])
  adj = jnp.asarray([0.1, 0.0, 0.3])
  got = losses.group_dro_update(q, loss, eta=0.5, adjustment=adj)
  raw = np.array([0.25 * np.exp(0.5 * 1.1), 0.25 * np.exp(0.5 * 0.2), 0.5 * np.exp(0.5 * 0.3)])
  np.testing.assert_allclose(got, raw / raw.sum(), rtol=1e-6)
  means, counts = losses.group_means(jnp.asarray([1.0, 3.0, 5.0, 7.0]),
                                     jnp.asarray([0, 0, 2, 1]),
                                     jnp.asarray([True, True, True, False]), 3)
  np.testing.assert_allclose(means, [2.0, 0.0, 5.0])  # group 1's only row is padding.
  np.testing.assert_allclose(counts, [2, 0, 1])


@pytest.mark.slow
def test_group_dro_step_weights_over_two_steps():
  """Two steps of the jitted step with a zero learning rate (fixed weights, so fixed
  per-example losses): q and the loss follow Sagawa et al.'s Algorithm 1 by hand."""
  model = get_model("standard_cnn", filters=2, hidden_dim=8, image_size=16, rngs=nnx.Rngs(0))
  tx = steps.make_optimizer(0.0, total_steps=2, optimizer="sgd", momentum=0.0)
  model_def, state = steps.create_train_state(model, tx, jax.random.PRNGKey(0), num_groups=3)
  rng = np.random.default_rng(1)
  batch = {"image": jnp.asarray(rng.uniform(size=(6, 16, 16, 3)), jnp.float32),
           "label": jnp.asarray([1, 0, 1, 1, 0, 0]),
           "mask": jnp.asarray([True, True, True, True, True, False]),
           "group": jnp.asarray([0, 0, 1, 1, 1, 0], jnp.int32)}  # group 2 absent.
  eta, adjustment = 0.7, (0.2, 0.1, 0.4)
  step = steps.make_train_step(model_def, tx, group_dro=steps.GroupDRO(eta, adjustment))
  # The same train-mode forward the step runs (batch statistics), by hand.
  logits, _ = nnx.merge(model_def.train, state.params, state.model_state, copy=True)(
      batch["image"])
  per = np.asarray(losses.sigmoid_cross_entropy_per_example(logits, batch["label"]))
  group_loss = np.array([per[[0, 1]].mean(), per[[2, 3, 4]].mean(), 0.0])
  q = np.full(3, 1 / 3)
  for _ in range(2):
    state, metrics = step(state, batch)
    q = q * np.exp(eta * (group_loss + np.asarray(adjustment)))
    q /= q.sum()
    np.testing.assert_allclose(np.asarray(state.group_weights), q, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss"]), q @ group_loss, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["average_loss"]), per[:5].mean(), rtol=1e-5)
  assert float(metrics["max_group_weight"]) == pytest.approx(q.max(), rel=1e-5)


# ----------------------------------------------------------------------------- reweighting, sampling


def _groups(sizes):
  codes = np.repeat(np.arange(len(sizes)), sizes).astype(np.int32)
  return methods.Groups(tuple(f"g{i}" for i in range(len(sizes))), codes,
                        np.asarray(sizes, np.int64))


def test_reweighting_gives_every_group_the_same_total_weight():
  groups = _groups([90, 8, 2])
  w = methods.example_weights(groups)
  totals = np.bincount(groups.codes, weights=w)
  np.testing.assert_allclose(totals, [100 / 3] * 3, rtol=1e-6)
  np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
  # The weighted batch loss is sum(w l) / sum(w), by hand.
  logits = jnp.asarray([[0.3], [-1.0], [2.0]])
  labels = jnp.asarray([1, 0, 0])
  weights = jnp.asarray([w[0], w[95], 0.0])  # A padding row weighs 0.
  loss, _ = losses.classification_loss(logits, labels, weights)
  per = np.asarray(losses.sigmoid_cross_entropy_per_example(logits, labels))
  assert float(loss) == pytest.approx((w[0] * per[0] + w[95] * per[1]) / (w[0] + w[95]),
                                      rel=1e-6)
  # Sampled instead: each group drawn about equally often.
  draws = sampling.weighted_indices(methods.inverse_frequency(groups), 30_000, seed=0, epoch=0)
  shares = np.bincount(groups.codes[draws], minlength=3) / draws.size
  np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.01)


def test_subsample_is_one_fixed_balanced_subset_and_oversample_covers_everyone():
  groups = _groups([30, 10, 4])
  first = sampling.subsample_indices(groups.codes, seed=3, epoch=0)
  second = sampling.subsample_indices(groups.codes, seed=3, epoch=1)
  assert sorted(first.tolist()) == sorted(second.tolist())
  assert first.tolist() != second.tolist()  # Reshuffled every epoch.
  assert np.bincount(groups.codes[first]).tolist() == [4, 4, 4]
  assert sorted(first.tolist()) != sorted(sampling.subsample_indices(
      groups.codes, seed=4, epoch=0).tolist())
  over = sampling.balanced_indices(groups.codes, seed=3, epoch=0, mode="oversample")
  assert np.bincount(groups.codes[over]).tolist() == [30, 30, 30]
  assert set(over.tolist()) == set(range(44))


def test_jtt_repeats_the_error_set():
  repeats = methods.jtt_repeats(6, np.array([1, 4]), 5)
  assert repeats.tolist() == [1, 5, 1, 1, 5, 1]
  order = sampling.repeated_indices(repeats, seed=0, epoch=2)
  assert np.bincount(order, minlength=6).tolist() == repeats.tolist()


def test_methods_that_need_groups_name_the_missing_attribute(data_dir):
  config = train_testlib.tiny_config("cnn", data_dir, method="group_dro", groups="race")
  with pytest.raises(ValueError, match=r"method='group_dro' needs group labels .*race"):
    plan.TrainData(config)


# ----------------------------------------------------------------------------- DFR


def _sklearn_l1(x, y, c):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # scikit-learn 1.8+ deprecates penalty= for l1_ratio=.
    fit = LogisticRegression(penalty="l1", C=c, solver="liblinear", tol=1e-10,
                             max_iter=100_000).fit(x, y)
  return fit.coef_[0], float(fit.intercept_[0])


@pytest.mark.parametrize("n,d,c", [(200, 16, 1.0), (80, 64, 3.0), (400, 32, 0.05)])
def test_l1_logistic_regression_equals_liblinear(n, d, c):
  rng = np.random.default_rng(n)
  x = rng.normal(size=(n, d))
  y = (x @ (rng.normal(size=d) * (rng.random(d) < 0.3)) + rng.normal(size=n) > 0).astype(int)
  w, b = logistic.l1_logistic_regression(x, y, c=c)
  w_ref, b_ref = _sklearn_l1(x, y, c)
  np.testing.assert_allclose(w, w_ref, atol=2e-5)
  assert b == pytest.approx(b_ref, abs=2e-5)
  assert (w == 0).sum() == (w_ref == 0).sum()  # The same sparsity pattern.
  assert logistic.objective(x, y, w, b, c=c) == pytest.approx(
      logistic.objective(x, y, w_ref, b_ref, c=c), rel=1e-9)


def test_l1_logistic_regression_errors():
  with pytest.raises(ValueError, match="both classes"):
    logistic.l1_logistic_regression(np.ones((3, 2)), np.zeros(3), c=1.0)
  with pytest.raises(ValueError, match="binary"):
    logistic.l1_logistic_regression(np.ones((3, 2)), np.array([0, 1, 2]), c=1.0)


def test_dfr_fit_equals_sklearn_on_a_balanced_set():
  """With every group the same size, each balanced subset is the whole set, so the
  averaged fit is liblinear's on the standardised features."""
  rng = np.random.default_rng(0)
  codes = np.repeat(np.arange(4), 40)
  labels = codes // 2
  feats = rng.normal(size=(160, 12)) + labels[:, None] * rng.normal(size=12) + 3.0
  fit = dfr.fit_last_layer(feats, labels, codes, c_grid=(1.0, 0.1), tune_retrains=2,
                           num_retrains=3, seed=0)
  assert fit["c"] in (1.0, 0.1) and set(fit["scores"]) == {1.0, 0.1}
  z = (feats - feats.mean(0)) / feats.std(0)
  w_ref, b_ref = _sklearn_l1(z, labels, fit["c"])
  np.testing.assert_allclose(fit["coef"], w_ref, atol=2e-5)
  assert fit["intercept"] == pytest.approx(b_ref, abs=2e-5)
  # Folding the standardisation into the weights gives the same decisions.
  w, b = dfr.folded_weights(fit)
  np.testing.assert_allclose(feats @ w + b, z @ w_ref + b_ref, atol=1e-3)


@pytest.mark.parametrize("name,kwargs", [
    ("standard_cnn", dict(filters=2, hidden_dim=8, image_size=16)),
    ("resnet18", dict(width=0.125, small_inputs=True))])
def test_set_last_layer_makes_the_logit_a_linear_function_of_pre_logits(name, kwargs):
  for classes in (1, 2):
    model = get_model(name, num_classes=classes, rngs=nnx.Rngs(0), **kwargs)
    model.eval()
    features = inference.pre_logits(model, jnp.ones((2, 16, 16, 3)))
    w = np.linspace(-1, 1, features.shape[1])
    dfr.set_last_layer(model, w, 0.5)
    log_odds = inference.binary_logit(model(jnp.ones((2, 16, 16, 3)))[0])
    np.testing.assert_allclose(log_odds, np.asarray(features) @ w + 0.5, rtol=1e-4, atol=1e-4)
    if name == "resnet18" and classes == 1:
      # The refit head is still linear: CAM applies, logit = mean(CAM) + bias.
      maps = cam.compute(model, jnp.ones((2, 16, 16, 3)), "cam", 1, upsample=False)
      np.testing.assert_allclose(np.asarray(maps).mean(axis=(1, 2)) + 0.5, log_odds,
                                 rtol=1e-4, atol=1e-4)
  chained = get_model("resnet18", width=0.125, head_dims=(4,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="head_dims"):
    inference.last_layer(chained)


@pytest.mark.slow
def test_dfr_run_refits_the_base_runs_last_layer(data_dir, tmp_path):
  base_dir = str(tmp_path / "erm")
  base_config = train_testlib.tiny_config("cnn", data_dir, max_steps=6)
  loop.train_and_evaluate(base_config, base_dir)
  config = train_testlib.tiny_config("cnn", data_dir, method="dfr", groups="is_face")
  config.dfr.base_run = base_dir
  config.dfr.num_retrains = 2
  workdir = str(tmp_path / "dfr")
  result = loop.train_and_evaluate(config, workdir)
  record = result["training"]["dfr"]
  assert record["base_step"] == 6 and result["selection"]["step"] == 6
  assert record["validation_groups"] == {"is_face": 8, "not_is_face": 8}
  assert os.path.exists(os.path.join(workdir, "report.json"))
  refit, base = runs.load_run(workdir), runs.load_run(base_dir)
  # Only the last layer changed.
  flat = lambda m: dict(nnx.to_flat_state(nnx.state(m)))
  a, b = flat(refit.model), flat(base.model)
  changed = {k[0] for k in a if not np.array_equal(a[k].get_value(), b[k].get_value())}
  assert changed == {"out"}
  # The new head is the folded fit on the validation embeddings, recomputed here.
  source = sources.load_source(config.data.name, split="validation", data_dir=data_dir)
  emb = dfr.embed(config, base.model, source)
  groups = methods.assign(emb["attributes"], "is_face")
  fit = dfr.fit_last_layer(emb["features"], emb["label"], groups.codes,
                           c_grid=tuple(config.dfr.c_grid), num_retrains=2, seed=0)
  w, bias = dfr.folded_weights(fit)
  np.testing.assert_allclose(np.asarray(refit.model.out.kernel[...])[:, 0], w, rtol=1e-4,
                             atol=1e-5)
  # Rerunning finds the checkpoint and only re-evaluates.
  again = loop.train_and_evaluate(config, workdir)
  assert again["metrics"]["overall"] == result["metrics"]["overall"]
  assert bias == pytest.approx(float(np.asarray(refit.model.out.bias[...])[0]), abs=1e-4)


# ----------------------------------------------------------------------------- JTT


@pytest.mark.slow
def test_jtt_error_set_is_what_stage_one_gets_wrong(data_dir, tmp_path):
  config = train_testlib.tiny_config("cnn", data_dir, method="jtt", max_steps=4,
                                     groups="is_face")
  config.jtt.upweight = 4
  workdir = str(tmp_path / "jtt")
  result = loop.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, jtt.ERROR_SET_FILE)) as f:
    record = json.load(f)
  # Recompute stage 1's mistakes from its final checkpoint with a plain forward pass.
  stage1 = runs.load_run(os.path.join(workdir, jtt.IDENTIFY_DIR))
  assert stage1.step == record["identify_step"] == 8  # One epoch of 64 / 8.
  source = sources.load_source(config.data.name, split="train", data_dir=data_dir)
  wrong = []
  for batch in pipeline.batches(source, np.arange(len(source)), batch_size=16, image_size=16,
                                train=False, process_index=0, process_count=1):
    logit = np.asarray(stage1.model(jnp.asarray(batch["image"]))[0])[:, 0]
    keep = batch["mask"]
    wrong += batch["index"][keep][(logit[keep] > 0).astype(int) != batch["label"][keep]].tolist()
  assert record["indices"] == sorted(wrong)
  assert record["size"] == len(wrong) == result["training"]["jtt"]["size"]
  counts = record["by_group"]
  assert sum(g["errors"] for g in counts.values()) == len(wrong)
  # Stage 2's epochs hold every error-set example `upweight` times.
  assert result["training"]["steps_per_epoch"] == (64 + 3 * len(wrong)) // 8
  data = types.SimpleNamespace(repeats=methods.jtt_repeats(64, np.array(wrong, int), 4))
  order = plan.epoch_plan(config, data, epoch=0)
  assert np.bincount(order, minlength=64)[wrong].tolist() == [4] * len(wrong)
