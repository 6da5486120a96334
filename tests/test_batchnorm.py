"""Tests of facebias_jax.ops.batchnorm: oneDNN's training-mode BatchNorm (+ ReLU) equals
nnx.BatchNorm in values, running statistics and gradients, and is used only where it
should be."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facebias_jax.models import get_model
from facebias_jax.ops import batchnorm, onednn

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="no C++ compiler to build the oneDNN handlers")

SHAPES = [(4, 6, 5, 16), (2, 3, 7, 5), (1, 4, 4, 64)]  # C a multiple of 16 or not; N = 1.


@pytest.fixture(autouse=True)
def _onednn_built():
  assert onednn.available(), onednn.unavailable_reason()


def _x(shape, seed=0):
  # Mean 1 and scale 2: the statistics matter; no value sits on the ReLU's kink.
  return jnp.asarray(np.random.default_rng(seed).normal(1.0, 2.0, shape), jnp.float32)


def _pair(channels, impl="onednn"):
  kwargs = dict(momentum=0.9, epsilon=1e-5, use_running_average=False)
  ours = batchnorm.BatchNorm(channels, impl=impl, rngs=nnx.Rngs(0), **kwargs)
  ref = nnx.BatchNorm(channels, rngs=nnx.Rngs(0), **kwargs)
  # Non-trivial affine parameters, the same in both.
  for m in (ours, ref):
    m.scale[...] = jnp.linspace(0.5, 1.5, channels)
    m.bias[...] = jnp.linspace(-0.3, 0.3, channels)
  return ours, ref


def _ref_call(ref, x, relu):
  y = ref(x)
  return jax.nn.relu(y) if relu else y


def _jaxpr(module, call, x) -> str:
  """The jaxpr of ``call(module, x)``, with the module's state as an input (a module
  cannot update its BatchNorm statistics from inside a bare ``make_jaxpr``)."""
  graphdef, state = nnx.split(module)
  return str(jax.make_jaxpr(lambda state, x: call(nnx.merge(graphdef, state), x))(state, x))


def _ffi_calls(module, call, x) -> int:
  return _jaxpr(module, call, x).count("ffi_call")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_values_and_running_statistics_match_nnx(shape, relu):
  x = _x(shape)
  ours, ref = _pair(shape[-1])
  for _ in range(2):  # The second call starts from updated running averages.
    np.testing.assert_allclose(ours(x, relu=relu), _ref_call(ref, x, relu), atol=2e-6)
  np.testing.assert_allclose(ours.mean[...], ref.mean[...], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ours.var[...], ref.var[...], rtol=1e-5)
  assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(ref))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_gradients_match_nnx(shape, relu):
  x = _x(shape, seed=1)
  ours, ref = _pair(shape[-1])
  weights = _x(shape, seed=2)

  def loss(model, x, use_ours):
    y = model(x, relu=relu) if use_ours else _ref_call(model, x, relu)
    return jnp.sum(jnp.sin(y) * weights)

  for wrap in (lambda f: f, nnx.jit):
    g_ours = wrap(nnx.grad(lambda m, x: loss(m, x, True), argnums=(0, 1)))(ours, x)
    g_ref = wrap(nnx.grad(lambda m, x: loss(m, x, False), argnums=(0, 1)))(ref, x)
    np.testing.assert_allclose(g_ours[1], g_ref[1], rtol=1e-4, atol=1e-5)
    for name in ("scale", "bias"):
      np.testing.assert_allclose(g_ours[0][name][...], g_ref[0][name][...], rtol=1e-4,
                                 atol=1e-5)


def test_gradients_through_the_batch_statistics_are_exact():
  """A caller that differentiates the returned mean and variance gets their terms too."""
  x = _x((3, 4, 5, 16), seed=3)
  scale, shift = jnp.full((16,), 1.3), jnp.full((16,), 0.2)

  def ours(x):
    y, mean, var = batchnorm.batch_norm_relu(x, scale, shift, 1e-5, False)
    return jnp.sum(jnp.sin(y)) + jnp.sum(mean ** 2) + jnp.sum(jnp.cos(var))

  def ref(x):
    mean = x.mean((0, 1, 2))
    var = jnp.square(x - mean).mean((0, 1, 2))
    y = (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + shift
    return jnp.sum(jnp.sin(y)) + jnp.sum(mean ** 2) + jnp.sum(jnp.cos(var))

  np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(ref)(x), rtol=1e-4, atol=1e-6)


def test_runs_on_onednn_only_in_training_mode_with_float32_and_the_choice():
  x = _x((2, 4, 4, 16))
  train, _ = _pair(16, "auto")
  assert _ffi_calls(train, lambda m, x: m(x, relu=True), x) == 1  # One fused call.
  grad = jax.grad(lambda x: jnp.sum(batchnorm.batch_norm_relu(
      x, jnp.ones(16), jnp.zeros(16), 1e-5, True)[0]))
  assert str(jax.make_jaxpr(grad)(x)).count("ffi_call") == 2  # Forward and backward.
  assert _ffi_calls(train, lambda m, x: m(x, use_running_average=True), x) == 0  # Eval.
  assert _ffi_calls(train, lambda m, x: m(x, mask=jnp.ones(x.shape, bool)), x) == 0
  assert _ffi_calls(train, lambda m, x: m(x.astype(jnp.bfloat16)), x) == 0
  xla, _ = _pair(16, "xla")
  assert _ffi_calls(xla, lambda m, x: m(x, relu=True), x) == 0


def test_other_parameter_dtypes_stay_on_xla_and_match_nnx():
  x = _x((2, 4, 4, 16))
  kwargs = dict(use_running_average=False, param_dtype=jnp.bfloat16)
  ours = batchnorm.BatchNorm(16, impl="onednn", rngs=nnx.Rngs(0), **kwargs)
  ref = nnx.BatchNorm(16, rngs=nnx.Rngs(0), **kwargs)
  assert _ffi_calls(ours, lambda m, x: m(x), x) == 0
  np.testing.assert_array_equal(ours(x, relu=True), jax.nn.relu(ref(x)))


def test_wrong_shapes_are_a_clear_error():
  with pytest.raises(ValueError, match="float32 NHWC x and \\[C\\] scale"):
    batchnorm.batch_norm_relu(jnp.ones((2, 4, 16)), jnp.ones(16), jnp.zeros(16), 1e-5, False)
  with pytest.raises(ValueError, match="scale \\(8,\\)"):
    batchnorm.batch_norm_relu(jnp.ones((2, 4, 4, 16)), jnp.ones(8), jnp.zeros(16), 1e-5, True)


def test_environment_choice_applies_to_batchnorm(monkeypatch):
  monkeypatch.setenv("FACEBIAS_CONV_IMPL", "xla")
  assert batchnorm.BatchNorm(4, rngs=nnx.Rngs(0)).impl == "xla"
  with pytest.raises(ValueError, match="FACEBIAS_CONV_IMPL"):
    monkeypatch.setenv("FACEBIAS_CONV_IMPL", "fastest")
    batchnorm.BatchNorm(4, rngs=nnx.Rngs(0))


def test_resnet_runs_batchnorm_and_max_pool_on_onednn_in_training_only():
  model = get_model("resnet18", 1, width=0.125, conv_impl="onednn")
  images = _x((2, 32, 32, 3))
  text = _jaxpr(model, lambda m, x: m(x)[0], images)
  # 20 convolutions, 20 BatchNorms and the stem's max-pool.
  assert text.count("ffi_call") == 41, text.count("ffi_call")
  assert "norm_forward" in text and "pool_forward" in text
  model.eval()
  text = _jaxpr(model, lambda m, x: m(x)[0], images)
  assert "norm_forward" not in text and "pool_forward" in text  # Eval: running averages.


_THREADS_CHILD = r"""
import hashlib, json, sys
import numpy as np
import torch
if sys.argv[1] == "1":
  torch.set_num_threads(1)  # Shares its libgomp with our oneDNN handlers.
import jax, jax.numpy as jnp
from facebias_jax.ops import batchnorm
x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 16, 16, 8)), jnp.float32)
out = jax.jit(lambda x: batchnorm.batch_norm_relu(x, jnp.ones(8), jnp.zeros(8), 1e-5, True))(x)
print(json.dumps({"hash": hashlib.sha1(b"".join(np.asarray(a).tobytes() for a in out)).hexdigest(),
                  "torch_threads": torch.get_num_threads()}))
"""


def test_results_do_not_depend_on_pytorchs_thread_setting():
  """oneDNN splits the statistics by OpenMP team size; PyTorch in the same process
  shares the OpenMP runtime, so the handlers pin the team size (and leave PyTorch's
  setting as it was). Without that, a resumed run's weights differed."""
  pytest.importorskip("torch")
  import json
  import subprocess
  import sys

  def child(arg):
    out = subprocess.run([sys.executable, "-c", _THREADS_CHILD, arg], capture_output=True,
                         text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])

  default, one_thread = child("0"), child("1")
  assert one_thread["hash"] == default["hash"]
  assert one_thread["torch_threads"] == 1
