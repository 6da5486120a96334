"""bfloat16 mixed-precision training (``config.train.dtype``, ``models.precision``).

bf16 computes activations, float32 keeps parameters, optimizer state, BatchNorm
statistics and the loss; evaluation stays float32. On CPU it is checked for what it
must guarantee: the compiled step really computes in bf16, everything stored stays
float32, and a few steps stay finite and close to the float32 ones from the same start.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facebias_jax import runs
from facebias_jax.models import get_model, precision
from facebias_jax.train import config as config_lib
from facebias_jax.train import loop, steps
import train_testlib

MODELS = {
    "standard_cnn": dict(filters=4, hidden_dim=8, image_size=16),
    "resnet18": dict(small_inputs=True, width=0.125),
    "dbvae": dict(filters=4, hidden_dim=8, image_size=16, latent_dim=4),
}


def _batch(size=8, side=16):
  rng = np.random.default_rng(0)
  labels = (np.arange(size) % 2).astype(np.int32)
  return {"image": jnp.asarray(rng.uniform(size=(size, side, side, 3)), jnp.float32),
          "label": jnp.asarray(labels), "mask": jnp.ones((size,), bool),
          "vae_mask": jnp.asarray(labels == 1)}


def _run_steps(name, compute_dtype, num_steps=3):
  model = get_model(name, rngs=nnx.Rngs(0), **MODELS[name])
  tx = steps.make_optimizer(1e-3, total_steps=10)
  model_def, state = steps.create_train_state(model, tx, jax.random.PRNGKey(0),
                                              compute_dtype=compute_dtype)
  kind = "dbvae" if name == "dbvae" else "classifier"
  train_step = steps.make_train_step(model_def, tx, kind=kind)
  batch = _batch()
  hlo = train_step.lower(state, batch).as_text()
  losses = []
  for _ in range(num_steps):
    state, metrics = train_step(state, batch)
    losses.append(float(metrics["loss"]))
    assert bool(metrics["finite"])
  return model_def, state, np.asarray(losses), hlo


def _float_dtypes(tree):
  return {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bfloat16_steps_are_finite_close_to_float32_and_store_float32(name):
  _, state32, losses32, hlo32 = _run_steps(name, "float32")
  model_def, state16, losses16, hlo16 = _run_steps(name, "bfloat16")
  # The compiled step convolves in bf16; the float32 one never touches bf16.
  assert "bf16" not in hlo32
  assert any("convolution" in line and "bf16" in line for line in hlo16.splitlines())
  # Stored state stays float32: parameters, Adam's moments, BatchNorm statistics.
  for tree in (state16.params, state16.opt_state, state16.model_state):
    assert _float_dtypes(tree) <= {"float32"}
  # bf16 keeps 8 bits of mantissa: a few steps from the same start agree to ~1%.
  np.testing.assert_allclose(losses16, losses32, rtol=3e-2)
  for a, b in zip(jax.tree.leaves(state16.params), jax.tree.leaves(state32.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-2, rtol=0)
  # Evaluation (validation, CAM, everything built from a checkpoint) is float32.
  model = model_def.merge(state16)
  out = model(_batch()["image"], rngs=jax.random.PRNGKey(0)) if name == "dbvae" \
      else model(_batch()["image"])
  assert out[0].dtype == jnp.float32
  assert _float_dtypes(out[1]) == {"float32"}


def test_set_compute_dtype_switches_layers_and_back():
  model = get_model("resnet18", small_inputs=True, width=0.125)
  x = jnp.ones((2, 16, 16, 3))
  precision.set_compute_dtype(model, "bfloat16")
  assert model(x)[0].dtype == jnp.bfloat16
  precision.set_compute_dtype(model, "float32")
  assert model(x)[0].dtype == jnp.float32
  with pytest.raises(ValueError, match="compute dtype must be one of"):
    precision.set_compute_dtype(model, "float16")


def test_config_refuses_an_unknown_dtype(tmp_path):
  config = train_testlib.tiny_config("cnn", str(tmp_path), dtype="float16")
  with pytest.raises(ValueError, match=r"config.train.dtype='float16' is not one of"):
    config_lib.validate_config(config)


@pytest.mark.slow
def test_bfloat16_run_trains_checkpoints_float32_and_evaluates(data_dir, tmp_path):
  workdir = str(tmp_path / "bf16")
  config = train_testlib.tiny_config("cnn", data_dir, dtype="bfloat16", max_steps=6)
  report = loop.train_and_evaluate(config, workdir)
  records = runs.read_metrics(workdir)
  assert records and all(np.isfinite(r["loss"]) for r in records if "loss" in r)
  assert runs.finished_steps(workdir)[-1] == 6
  model, saved = runs.load_model(workdir)
  assert saved.train.dtype == "bfloat16"
  _, params, _ = nnx.split(model, nnx.Param, ...)
  assert _float_dtypes(params) == {"float32"}
  assert report["training"]["dtype"] == "bfloat16"
  assert 0.0 < report["metrics"]["overall"]["accuracy"] <= 1.0
