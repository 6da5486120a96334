"""Tests of facebias_jax.ops.pooling: max_pool equals nnx.max_pool, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facebias_jax.models import get_model
from facebias_jax.ops import onednn, pooling

# The XLA form always; oneDNN's primitive where it is built.
IMPLS = ["xla", pytest.param("onednn", marks=pytest.mark.skipif(
    not onednn.available(), reason="oneDNN not built"))]


@pytest.mark.parametrize("shape,window,strides,padding", [
    ((3, 16, 16, 5), (3, 3), (2, 2), ((1, 1), (1, 1))),   # the ResNet stem's pool
    ((2, 9, 7, 3), (3, 2), (2, 1), ((1, 0), (0, 1))),     # odd sizes, unequal windows
    ((2, 8, 8, 2), (2, 2), (2, 2), ((0, 0), (0, 0))),     # non-overlapping
])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("impl", IMPLS)
def test_values_and_gradients_match_nnx_max_pool(shape, window, strides, padding, ties,
                                                 impl):
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape).astype(np.float32)
  if ties:  # After a ReLU and rounding, most windows hold several equal maxima.
    x = np.round(np.maximum(x, 0) * 2)
  x = jnp.asarray(x)

  def ref(x):
    return nnx.max_pool(x, window, strides=strides, padding=padding)

  def new(x):
    return pooling.max_pool(x, window, strides, padding, impl)

  g = jnp.asarray(rng.standard_normal(ref(x).shape), jnp.float32)
  np.testing.assert_array_equal(new(x), ref(x))
  for wrap in (lambda f: f, jax.jit):
    dx_ref = wrap(lambda x, g: jax.vjp(ref, x)[1](g)[0])(x, g)
    dx_new = wrap(lambda x, g: jax.vjp(new, x)[1](g)[0])(x, g)
    np.testing.assert_allclose(dx_new, dx_ref, atol=1e-6)


@pytest.mark.slow
def test_resnet_gradients_match_under_jit_with_nnx_max_pool(monkeypatch):
  """Inside a jitted ResNet the pool's input is recomputed by XLA in several fusions;
  the gradient must still equal that of nnx.max_pool (it did not when the backward
  pass compared the input with the saved forward maximum)."""
  images = jnp.asarray(np.random.default_rng(5).random((5, 32, 32, 3)), jnp.float32)

  def grads():
    model = get_model("resnet18", 1, width=0.125)

    def loss(model):
      return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(model(images)))

    return jax.tree.leaves(nnx.jit(nnx.grad(loss))(model))

  new = grads()
  monkeypatch.setattr(pooling, "max_pool", lambda x, w, s, p, impl="auto": nnx.max_pool(
      x, w, strides=s, padding=p))
  ref = grads()
  assert len(ref) == len(new) > 0
  for a, b in zip(ref, new):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(a))))


def test_windows_wholly_in_the_padding_stay_on_xla():
  """Padding as wide as the window: XLA gives those windows -inf (oneDNN would give the
  lowest finite float), so the pool keeps XLA's form."""
  x = jnp.asarray(np.random.default_rng(3).standard_normal((1, 4, 4, 2)), jnp.float32)
  args = ((1, 1), (1, 1), ((1, 1), (1, 1)))
  text = str(jax.make_jaxpr(lambda x: pooling.max_pool(x, *args, "auto"))(x))
  assert "ffi_call" not in text
  y = pooling.max_pool(x, *args, "auto")
  np.testing.assert_array_equal(y, nnx.max_pool(x, (1, 1), strides=(1, 1), padding=args[2]))
  assert np.isneginf(np.asarray(y)[0, 0, 0, 0])
  # The ResNet stem's pool reads the input in every window.
  assert pooling._every_window_reads_input((1, 64, 64, 8), (3, 3), (2, 2), ((1, 1), (1, 1)))
  assert not pooling._every_window_reads_input((1, 5, 5, 1), (2, 2), (2, 2), ((0, 3), (0, 0)))
