"""Transposed convolutions through ``ops.conv`` (phase form on the CPU), same values.

``fast_conv_transpose`` computes ``lax.conv_transpose`` (NHWC/HWIO,
``transpose_kernel=False``) as an lhs-dilated convolution of ``ops.conv``, so on the CPU
it takes the phase form of ``ops.phase`` (no multiplication by the inserted zeros) and
its strided convolutions run on oneDNN where the choice allows. ``ConvTranspose`` is
``nnx.ConvTranspose`` with that path and a ``conv_impl`` choice, as ``nnx.Conv`` takes
``conv_general_dilated=``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn.linear import canonicalize_padding

from facebias_jax.ops import conv as conv_lib

def _conv_transpose_pads(kernel: int, stride: int, padding) -> tuple[int, int]:
  """Padding of ``lax.conv_transpose`` for one dimension (same rule as JAX's)."""
  if padding == "SAME":
    pad_len = kernel + stride - 2
    pad_a = kernel - 1 if stride > kernel - 1 else int(np.ceil(pad_len / 2))
  elif padding == "VALID":
    pad_len = kernel + stride - 2 + max(kernel - stride, 0)
    pad_a = kernel - 1
  else:
    raise ValueError(f"padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}")
  return pad_a, pad_len - pad_a


def fast_conv_transpose(lhs: jax.Array, rhs: jax.Array, strides: Sequence[int],
                        padding: str | Sequence[tuple[int, int]], *,
                        conv_impl: str = "auto") -> jax.Array:
  """``lax.conv_transpose`` (NHWC/HWIO, ``transpose_kernel=False``) via the phase form.

  Args:
    lhs: ``[N, H, W, I]``.
    rhs: ``[KH, KW, I, O]``.
    strides: ``(sh, sw)`` upsampling factors.
    padding: ``"SAME"``/``"VALID"`` (of the forward conv) or explicit ``(lo, hi)``
      pairs applied to the dilated input, as for ``lax.conv_transpose``.
    conv_impl: the convolution choice (``ops.conv.CONV_IMPLS``).

  Returns:
    The same values as ``lax.conv_transpose(lhs, rhs, strides, padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))``.
  """
  if isinstance(padding, str):
    # As lax.conv_transpose: a string names the padding of the forward conv.
    pads = tuple(_conv_transpose_pads(k, int(s), padding)
                 for k, s in zip(rhs.shape[:2], strides))
  else:
    # Explicit pairs pad the dilated input directly (lax.conv_transpose semantics).
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return conv_lib.conv_fn(conv_impl)(lhs, rhs, (1, 1), pads, lhs_dilation=tuple(strides),
                                     dimension_numbers=conv_lib.NHWC_DIMS)


class ConvTranspose(nnx.ConvTranspose):
  """``nnx.ConvTranspose`` whose plain 2-D case runs through ``fast_conv_transpose``.

  Same constructor (plus ``conv_impl``), parameters (HWIO ``kernel``, ``bias``) and
  outputs as ``nnx.ConvTranspose``; masked, circular-padded, kernel-dilated,
  transposed-kernel or non-float32 layers fall back to the parent implementation.
  """

  def __init__(self, *args, conv_impl: str = "auto", **kwargs):
    super().__init__(*args, **kwargs)
    # Resolved now (environment default included), like the models' nnx.Conv layers.
    self.conv_impl = conv_lib.resolve_impl(conv_impl)

  def __call__(self, inputs: jax.Array) -> jax.Array:
    kernel_dilation = self.kernel_dilation or 1
    simple = (inputs.ndim == 4 and self.mask is None and not self.transpose_kernel
              and self.padding != "CIRCULAR" and self.dtype in (None, jnp.float32)
              and inputs.dtype == jnp.float32 and self.precision is None
              and self.preferred_element_type is None
              and all(d == 1 for d in np.atleast_1d(kernel_dilation)))
    if not simple:
      return super().__call__(inputs)
    strides = self.strides or 1
    strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
    padding = self.padding
    if not isinstance(padding, str):
      padding = canonicalize_padding(padding, 2)
    y = fast_conv_transpose(inputs, self.kernel[...], strides, padding,
                            conv_impl=self.conv_impl)
    if self.bias is not None:
      y = y + self.bias[...]
    return y
