"""Tests of facebias_jax.ops.conv: phase forms and batch chunks equal the plain convolutions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from conv_testlib import (DN, RTOL, STRIDED, TINY_MODELS, assert_model_trains_like_xla,
                          assert_strided_conv_matches_lax, rel_err, values_and_grads)
from facebias_jax.models import get_model
from facebias_jax.ops import conv, onednn, transpose


FAST = functools.partial(conv.fast_conv_general_dilated, impl="fast")


@pytest.fixture
def no_onednn(monkeypatch):
  """The "auto" rule as on a machine where oneDNN could not be built."""
  monkeypatch.setattr(onednn, "available", lambda: False)


@pytest.mark.parametrize("x_shape,w_shape,strides,padding", STRIDED)
def test_strided_conv_values_and_gradients_match_lax(x_shape, w_shape, strides, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)
  assert_strided_conv_matches_lax(x, w, strides, padding, "fast")


@pytest.mark.parametrize("x_shape,w_shape,dilation,padding", [
    ((2, 4, 4, 6), (3, 3, 6, 5), (2, 2), ((1, 2), (1, 2))),   # conv_transpose k3 SAME
    ((2, 5, 5, 4), (5, 5, 4, 3), (2, 2), ((3, 2), (3, 2))),   # conv_transpose k5 SAME
    ((2, 5, 4, 3), (4, 3, 3, 4), (3, 2), ((0, -1), (2, 1))),  # negative pad, unequal
])
def test_lhs_dilated_conv_values_and_gradients_match_lax(x_shape, w_shape, dilation,
                                                          padding):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)
  ref = values_and_grads(lax.conv_general_dilated, x, w, (1, 1), padding, dilation)
  new = values_and_grads(FAST, x, w, (1, 1), padding, dilation)
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(new)):
    assert a.shape == b.shape
    assert rel_err(a, b) < RTOL


@pytest.mark.parametrize("kernel,padding", [(3, "SAME"), (5, "SAME"), (3, "VALID"),
                                            (4, ((1, 2), (1, 2)))])
@pytest.mark.slow
def test_conv_transpose_layer_matches_nnx(kernel, padding):
  ref = nnx.ConvTranspose(6, 5, (kernel, kernel), strides=(2, 2), padding=padding,
                          rngs=nnx.Rngs(0))
  new = transpose.ConvTranspose(6, 5, (kernel, kernel), strides=(2, 2), padding=padding,
                                rngs=nnx.Rngs(0), conv_impl="fast")
  for layer in (ref, new):
    layer.bias[...] = jnp.arange(5.0)
  assert jax.tree.map(jnp.shape, nnx.state(ref)) == jax.tree.map(jnp.shape, nnx.state(new))
  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 5, 5, 6)), jnp.float32)

  def loss(model, x):
    return jnp.sum(jnp.sin(model(x)))

  assert rel_err(ref(x), new(x)) < RTOL
  g_ref = nnx.grad(loss, argnums=(0, 1))(ref, x)
  g_new = nnx.grad(loss, argnums=(0, 1))(new, x)
  assert rel_err(g_ref[0]["kernel"][...], g_new[0]["kernel"][...]) < RTOL
  assert rel_err(g_ref[0]["bias"][...], g_new[0]["bias"][...]) < RTOL
  assert rel_err(g_ref[1], g_new[1]) < RTOL


def test_nnx_conv_hook_keeps_parameters_and_outputs():
  plain = nnx.Conv(3, 4, (5, 5), strides=(2, 2), padding="SAME", rngs=nnx.Rngs(0))
  fast = nnx.Conv(3, 4, (5, 5), strides=(2, 2), padding="SAME", rngs=nnx.Rngs(0),
                  conv_general_dilated=conv.conv_fn("fast"))
  assert jax.tree.map(jnp.shape, nnx.state(plain)) == jax.tree.map(jnp.shape, nnx.state(fast))
  x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 16, 16, 3)), jnp.float32)
  assert rel_err(plain(x), fast(x)) < RTOL


def _uses_phase_path(x_shape, w_shape, strides, padding, impl) -> bool:
  x = jnp.zeros(x_shape, jnp.float32)
  w = jnp.zeros(w_shape, jnp.float32)
  jaxpr = jax.make_jaxpr(lambda x, w: conv.fast_conv_general_dilated(
      x, w, strides, padding, dimension_numbers=DN, impl=impl))(x, w)
  return "custom_vjp" in str(jaxpr)


def test_impl_choice_selects_paths(no_onednn):
  standard_cnn_block = ((2, 16, 16, 12), (5, 5, 12, 24), (2, 2), "SAME")
  resnet_block = ((2, 8, 8, 64), (3, 3, 64, 128), (2, 2), ((1, 1), (1, 1)))
  stride_one = ((2, 8, 8, 12), (3, 3, 12, 24), (1, 1), "SAME")
  # Tests run on CPU (conftest).
  assert _uses_phase_path(*standard_cnn_block, "auto")
  assert not _uses_phase_path(*resnet_block, "auto")
  assert not _uses_phase_path(*stride_one, "auto")
  assert _uses_phase_path(*resnet_block, "fast")
  assert not _uses_phase_path(*standard_cnn_block, "xla")


def test_bad_impl_name_is_a_clear_error():
  with pytest.raises(ValueError, match="conv_impl must be one of"):
    conv.conv_fn("cudnn")
  with pytest.raises(ValueError, match="conv_impl must be one of"):
    get_model("standard_cnn", image_size=16, filters=2, conv_impl="cudnn")


def test_environment_variable_is_the_default_of_auto(monkeypatch):
  monkeypatch.setenv(conv.CONV_IMPL_ENV, "xla")
  assert conv.resolve_impl("auto") == "xla" and conv.resolve_impl("fast") == "fast"
  assert conv.conv_fn("auto") is conv.conv_fn("xla")
  monkeypatch.setenv(conv.CONV_IMPL_ENV, "bogus")
  with pytest.raises(ValueError, match="FACEBIAS_CONV_IMPL"):
    conv.resolve_impl("auto")
  monkeypatch.delenv(conv.CONV_IMPL_ENV)
  assert conv.resolve_impl("auto") == "auto"


# Batch chunking: a batch of 7 in chunks of 3 (a short last chunk) through each path
# the chunks can take: phase strided conv (first-layer-like, forward left whole), plain
# XLA conv (stride 1, forward chunked) and a transposed conv (phase forward).
CHUNKED = [
    ((7, 16, 16, 3), (5, 5, 3, 4), (2, 2), "SAME", None),
    ((7, 8, 8, 12), (3, 3, 12, 24), (1, 1), ((1, 1), (1, 1)), None),
    ((7, 4, 4, 20), (3, 3, 20, 6), (1, 1), ((1, 2), (1, 2)), (2, 2)),
]


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,dilation", CHUNKED)
def test_batch_chunked_conv_values_and_gradients_match_lax(x_shape, w_shape, strides,
                                                           padding, dilation):
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)
  ref = values_and_grads(lax.conv_general_dilated, x, w, strides, padding, dilation)
  new = values_and_grads(conv.conv_fn("fast", chunk=3), x, w, strides, padding, dilation)
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(new)):
    assert a.shape == b.shape
    assert rel_err(a, b) < RTOL


def _forward_conv_count(x_shape, w_shape, impl="auto", chunk=4) -> int:
  x = jnp.zeros(x_shape, jnp.float32)
  w = jnp.zeros(w_shape, jnp.float32)
  jaxpr = jax.make_jaxpr(lambda x, w: conv.fast_conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=DN, impl=impl, chunk=chunk))(x, w)
  return str(jaxpr).count("conv_general_dilated[")


def test_chunk_rule_splits_large_batches_and_keeps_small_forward_passes_whole(no_onednn):
  # "auto": tests run on one CPU device (conftest).
  assert _forward_conv_count((10, 8, 8, 12), (3, 3, 12, 24)) == 3  # 4 + 4 + 2 images.
  assert _forward_conv_count((4, 8, 8, 12), (3, 3, 12, 24)) == 1   # Fits one chunk.
  # 3 -> 12 channels: Eigen's forward, not chunked (its gradients still are).
  assert _forward_conv_count((10, 8, 8, 3), (3, 3, 3, 12)) == 1
  assert _forward_conv_count((10, 8, 8, 12), (3, 3, 12, 24), chunk=0) == 1
  assert _forward_conv_count((10, 8, 8, 12), (3, 3, 12, 24), impl="xla") == 1


def test_bad_chunk_is_a_clear_error(monkeypatch):
  with pytest.raises(ValueError, match="conv chunk must be a non-negative integer"):
    conv.conv_fn("fast", chunk=-2)
  monkeypatch.setenv(conv.CONV_CHUNK_ENV, "many")
  with pytest.raises(ValueError, match="FACEBIAS_CONV_CHUNK"):
    conv.conv_fn("fast")


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs", TINY_MODELS)
def test_models_train_identically_with_batch_chunks(name, kwargs, monkeypatch):
  """Loss and every parameter gradient with 5 images in chunks of 2 equal plain XLA's."""
  monkeypatch.setenv(conv.CONV_CHUNK_ENV, "2")
  assert_model_trains_like_xla(name, kwargs, "fast")
