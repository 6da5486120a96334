"""A faster backward pass for strided convolutions on XLA:CPU.

Why: the input gradient of a stride-``s`` convolution is a convolution of the output
gradient with ``lhs_dilation=s`` (the gradient with ``s - 1`` zeros between pixels).
XLA:CPU (jaxlib 0.10) runs convolutions through YNNPACK only when they have no base
(lhs) dilation; a dilated one falls back to Eigen's generic spatial convolution, whose
patch extraction with inflation is scalar and also multiplies all the inserted zeros.
For the 5x5 stride-2 layers of the MIT standard CNN this input gradient costs 6x the
forward convolution (see docs/performance.md).

What: ``fast_conv_general_dilated`` is a drop-in replacement for
``jax.lax.conv_general_dilated`` (the ``conv_general_dilated=`` argument of
``nnx.Conv``) whose forward pass and filter gradient are the plain XLA ones but whose
input gradient uses the *sub-pixel (phase) decomposition*: output pixel ``p`` of the
input gradient only meets kernel taps ``t`` with ``t = (p + pad) mod s``, so all
``s * s`` phases are computed by ONE stride-1 convolution of the (undilated) output
gradient with a ``ceil(k / s)``-sized kernel holding the taps of every phase in its
output channels, followed by a depth-to-space reshape. No zeros are multiplied and the
convolution is a plain stride-1 one that XLA:CPU runs fast. Values are identical up to
float32 summation order (tested against ``jax.grad`` of the plain convolution).

Switch: ``set_conv_impl("auto" | "fast" | "xla")`` (or the ``FACEBIAS_CONV_IMPL``
environment variable). ``"auto"`` (default) uses the phase gradient only on the CPU
backend and only for the layer shapes where it was measured faster (few channels,
kernel larger than the stride: the standard CNN's first blocks); ``"fast"`` uses it for
every eligible strided 2-D convolution; ``"xla"`` never. The choice is made when a
function is traced, so set it before ``jax.jit`` compiles the model. Parameters are
untouched (HWIO kernel, same shapes as ``nnx.Conv``), so checkpoints and the torch
import are identical whichever implementation runs.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

CONV_IMPLS = ("auto", "fast", "xla")
_NHWC_DIMS = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))
# "auto" uses the phase gradient when in_channels * out_channels is at most this and
# the kernel is larger than the stride. Measured on a 2-core AMD EPYC (AVX-512): faster
# for 5x5 12->24 (6x) and 3x3 24->48 (1.4x), slower from 3x3 48->72 and for the ResNet
# stages (64+ channels), where XLA's dilated convolution is already efficient.
_AUTO_MAX_CHANNEL_PRODUCT = 2048

_conv_impl = os.environ.get("FACEBIAS_CONV_IMPL", "auto")


def _check_impl(impl: str) -> str:
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r} "
                     "(check FACEBIAS_CONV_IMPL or the set_conv_impl argument).")
  return impl


def set_conv_impl(impl: str) -> None:
  """Selects the convolution gradient implementation for functions traced afterwards.

  Args:
    impl: ``"auto"`` (phase input gradient on CPU where measured faster), ``"fast"``
      (phase input gradient for every eligible strided convolution) or ``"xla"``
      (plain ``lax.conv_general_dilated`` everywhere).
  """
  global _conv_impl
  _conv_impl = _check_impl(impl)


def get_conv_impl() -> str:
  """The current implementation name (see ``set_conv_impl``)."""
  return _check_impl(_conv_impl)


def _pad_pairs(padding: str | Sequence[tuple[int, int]], in_hw: Sequence[int],
               kernel_hw: Sequence[int], strides: Sequence[int]) -> tuple[tuple[int, int], ...]:
  """Explicit (low, high) padding per spatial dim, as lax resolves string paddings."""
  if isinstance(padding, str):
    return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, kernel_hw, strides, padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _is_nhwc(dimension_numbers: Any) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return dimension_numbers == _NHWC_DIMS
  return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")


def _eligible(lhs, rhs, window_strides, lhs_dilation, rhs_dilation, dimension_numbers,
              feature_group_count, batch_group_count, impl: str) -> bool:
  """Whether the phase input gradient applies to (and, for "auto", pays off on) a conv."""
  if impl == "xla":
    return False
  if (lhs.ndim != 4 or not _is_nhwc(dimension_numbers) or feature_group_count != 1
      or batch_group_count != 1 or lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32):
    return False
  if any(d != 1 for d in (lhs_dilation or (1, 1))) or any(
      d != 1 for d in (rhs_dilation or (1, 1))):
    return False
  strides = tuple(window_strides)
  if all(s == 1 for s in strides):
    return False  # The input gradient of a stride-1 conv has no dilation anyway.
  if impl == "fast":
    return True
  kernel_hw = rhs.shape[:2]
  return (jax.default_backend() == "cpu"
          and all(k > s for k, s in zip(kernel_hw, strides))
          and rhs.shape[2] * rhs.shape[3] <= _AUTO_MAX_CHANNEL_PRODUCT)


def _phase_taps(kernel: int, stride: int, pad_lo: int) -> tuple[np.ndarray, int, int]:
  """Kernel-tap table of the phase decomposition along one spatial dimension.

  Input pixel ``p = stride * m + r`` received ``g[i] * w[t]`` from every output ``i``
  with ``stride * i + t - pad_lo = p``, i.e. ``t = r + pad_lo - stride * e`` with
  ``e = i - m``. The phase conv reads ``g[m + e]`` for ``e`` in ``[e_lo, e_hi]``.

  Returns:
    ``(taps [D, stride] int, with -1 where no tap, e_lo, e_hi)``.
  """
  us = [r + pad_lo for r in range(stride)]
  e_lo = min(-((kernel - 1 - u) // stride) for u in us)  # ceil((u - k + 1) / s)
  e_hi = max(u // stride for u in us)
  taps = np.array([[u - stride * e for u in us] for e in range(e_lo, e_hi + 1)])
  taps[(taps < 0) | (taps >= kernel)] = -1
  return taps, e_lo, e_hi


def phase_input_gradient(g: jax.Array, w: jax.Array, strides: Sequence[int],
                         padding: Sequence[tuple[int, int]], in_hw: Sequence[int]) -> jax.Array:
  """Input gradient of an NHWC/HWIO strided convolution by phase decomposition.

  Args:
    g: output gradient ``[N, OH, OW, O]``.
    w: kernel ``[KH, KW, I, O]``.
    strides: ``(sh, sw)``.
    padding: explicit ``((lo, hi), (lo, hi))`` of the forward convolution.
    in_hw: ``(H, W)`` of the forward input.

  Returns:
    ``[N, H, W, I]``, equal to the transpose of the forward convolution applied to ``g``.
  """
  n, oh, ow, _ = g.shape
  kh, kw, ci, co = w.shape
  (sh, sw), (h, wd) = strides, in_hw
  taps_y, ey_lo, ey_hi = _phase_taps(kh, sh, padding[0][0])
  taps_x, ex_lo, ex_hi = _phase_taps(kw, sw, padding[1][0])
  # Phase kernel V[jy, jx, o, (ry, rx, i)] = w[taps_y[jy, ry], taps_x[jx, rx], i, o].
  gathered = w[np.maximum(taps_y, 0)[:, None, :, None], np.maximum(taps_x, 0)[None, :, None, :]]
  valid = (taps_y >= 0)[:, None, :, None] & (taps_x >= 0)[None, :, None, :]
  gathered = gathered * jnp.asarray(valid, w.dtype)[..., None, None]
  dy, dx = taps_y.shape[0], taps_x.shape[0]
  kernel = gathered.transpose(0, 1, 5, 2, 3, 4).reshape(dy, dx, co, sh * sw * ci)
  my, mx = -(-h // sh), -(-wd // sw)
  # Pad (or crop, when negative) g so that a VALID conv yields exactly my x mx rows.
  g = lax.pad(g, jnp.zeros((), g.dtype),
              ((0, 0, 0), (-ey_lo, my - oh + ey_hi, 0), (-ex_lo, mx - ow + ex_hi, 0),
               (0, 0, 0)))
  out = lax.conv_general_dilated(g, kernel, (1, 1), "VALID", dimension_numbers=_NHWC_DIMS)
  out = out.reshape(n, my, mx, sh, sw, ci).transpose(0, 1, 3, 2, 4, 5)
  return out.reshape(n, my * sh, mx * sw, ci)[:, :h, :wd]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _phase_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                padding: tuple[tuple[int, int], ...]) -> jax.Array:
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC_DIMS)


def _phase_conv_fwd(x, w, strides, padding):
  return _phase_conv(x, w, strides, padding), (x, w)


def _phase_conv_bwd(strides, padding, residuals, g):
  x, w = residuals
  dx = phase_input_gradient(g, w, strides, padding, x.shape[1:3])
  # Filter gradient: XLA's own (it runs through YNNPACK and is competitive).
  _, w_vjp = jax.vjp(
      lambda w_: lax.conv_general_dilated(x, w_, strides, padding,
                                          dimension_numbers=_NHWC_DIMS), w)
  return dx, w_vjp(g)[0]


_phase_conv.defvjp(_phase_conv_fwd, _phase_conv_bwd)


def fast_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                              rhs_dilation=None, dimension_numbers=None,
                              feature_group_count=1, batch_group_count=1, precision=None,
                              preferred_element_type=None, out_sharding=None):
  """``lax.conv_general_dilated`` with the phase input gradient where it pays off.

  Same signature and forward values as ``jax.lax.conv_general_dilated``; pass it as
  ``nnx.Conv(..., conv_general_dilated=fast_conv_general_dilated)``. Convolutions that
  are not eligible (see ``set_conv_impl``), or that ask for a precision, preferred
  element type or output sharding, go to ``lax.conv_general_dilated`` unchanged.
  """
  impl = get_conv_impl()
  if (precision is None and preferred_element_type is None and out_sharding is None
      and _eligible(lhs, rhs, window_strides, lhs_dilation, rhs_dilation,
                    dimension_numbers, feature_group_count, batch_group_count, impl)):
    strides = tuple(int(s) for s in window_strides)
    pads = _pad_pairs(padding, lhs.shape[1:3], rhs.shape[:2], strides)
    return _phase_conv(lhs, rhs, strides, pads)
  kwargs = {} if out_sharding is None else {"out_sharding": out_sharding}
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  batch_group_count, precision, preferred_element_type,
                                  **kwargs)
