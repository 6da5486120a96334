"""Helpers shared by the convolution tests (test_fast_conv.py, test_onednn.py)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facebias_jax.models import get_model
from facebias_jax.ops import conv

DN = ("NHWC", "HWIO", "NHWC")
RTOL = 1e-4


def rel_err(a, b) -> float:
  a, b = np.asarray(a), np.asarray(b)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))


def values_and_grads(conv_fn, x, w, strides, padding, lhs_dilation=None):
  def loss(x, w):
    y = conv_fn(x, w, strides, padding, lhs_dilation=lhs_dilation, dimension_numbers=DN)
    # A non-linear loss so the cotangent differs per pixel.
    return jnp.sum(jnp.sin(y)), y
  (_, y), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(x, w)
  return y, grads


def assert_strided_conv_matches_lax(x, w, strides, padding, impl):
  """``conv.conv_fn(impl)`` gives the values and both gradients of
  ``lax.conv_general_dilated`` for a strided convolution."""
  y_ref, (dx_ref, dw_ref) = values_and_grads(jax.lax.conv_general_dilated, x, w, strides,
                                             padding)
  y, (dx, dw) = values_and_grads(conv.conv_fn(impl), x, w, strides, padding)
  assert y.shape == y_ref.shape and dx.shape == x.shape and dw.shape == w.shape
  assert rel_err(y_ref, y) < RTOL
  assert rel_err(dx_ref, dx) < RTOL
  assert rel_err(dw_ref, dw) < RTOL


# (input NHWC, kernel HWIO, strides, padding): the standard CNN's blocks, the ResNet
# stem / stride-2 3x3 / 1x1 projection, odd sizes and unequal strides.
STRIDED = [
    ((2, 16, 16, 3), (5, 5, 3, 4), (2, 2), "SAME"),
    ((2, 15, 13, 4), (3, 3, 4, 6), (2, 2), "SAME"),
    ((2, 17, 17, 3), (7, 7, 3, 4), (2, 2), ((3, 3), (3, 3))),
    ((2, 10, 10, 4), (3, 3, 4, 5), (2, 2), ((1, 1), (1, 1))),
    ((2, 9, 9, 3), (1, 1, 3, 4), (2, 2), ((0, 0), (0, 0))),
    ((2, 12, 10, 3), (4, 3, 3, 5), (3, 2), "VALID"),
]

# (model name, get_model kwargs) for whole-model comparisons at 32 px.
TINY_MODELS = [
    ("standard_cnn", dict(image_size=32, filters=4)),
    ("resnet18", dict(width=0.125)),
    ("dbvae", dict(image_size=32, filters=4, latent_dim=4)),
]


def assert_model_trains_like_xla(name, kwargs, impl):
  """A whole model in training mode (BatchNorm over the full batch of 5 images) gives
  the same loss and parameter gradients with ``conv_impl=impl`` (and the batch chunk
  of ``$FACEBIAS_CONV_CHUNK``) as with plain XLA convolutions."""
  images = jnp.asarray(np.random.default_rng(5).random((5, 32, 32, 3)), jnp.float32)

  def loss_and_grads(impl):
    model = get_model(name, 1, conv_impl=impl, **kwargs)

    def loss(model):
      return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(model(images)))

    return nnx.jit(nnx.value_and_grad(loss))(model)

  loss_ref, grads_ref = loss_and_grads("xla")
  loss_new, grads_new = loss_and_grads(impl)
  assert rel_err(loss_ref, loss_new) < RTOL
  flat_ref, flat_new = jax.tree.leaves(grads_ref), jax.tree.leaves(grads_new)
  assert len(flat_ref) == len(flat_new) > 0
  for a, b in zip(flat_ref, flat_new):
    assert rel_err(a, b) < 1e-3
