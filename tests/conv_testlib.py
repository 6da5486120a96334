"""Helpers shared by the convolution tests (test_fast_conv.py, test_onednn.py)."""

import jax
import jax.numpy as jnp
import numpy as np

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
