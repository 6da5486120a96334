"""Sub-pixel (phase) forms of lhs-dilated convolutions: no multiplication by inserted zeros.

The input gradient of a stride-``s`` convolution, and the forward pass of a transposed
convolution, are convolutions of an input dilated by ``s`` (``s - 1`` zeros between
pixels). XLA:CPU (jaxlib 0.10) hands those to Eigen's generic spatial convolution,
which multiplies every inserted zero. Output pixel ``q = s * m + r`` of such a
convolution only meets kernel taps of one parity class, so all ``s * s`` phases are ONE
stride-1 convolution of the undilated input with a ``ceil(k / s)``-sized kernel that
stacks every phase's taps along its output channels, followed by a depth-to-space
reshape. The stride-1 convolution runs on oneDNN or XLA's fast path
(``onednn.strided_conv``).

* ``phase_dilated_conv`` / ``phase_input_gradient``: the two forms as functions.
* ``phase_conv``: a strided convolution whose input gradient is the phase form
  (``jax.custom_vjp``; XLA's forward and filter gradient).
* ``phase_dilated``: an lhs-dilated convolution in phase form whose gradients both come
  from one strided convolution.

``impl`` is the convolution choice of ``ops.conv`` (``"auto"``, ``"onednn"``...).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from facebias_jax.ops import onednn

_NHWC = ("NHWC", "HWIO", "NHWC")


def _phase_taps(kernel: int, dilation: int, pad_lo: int) -> tuple[np.ndarray, int]:
  """Kernel-tap table of the phase decomposition along one spatial dimension.

  For a stride-1 convolution of an input dilated by ``dilation`` (``s``) and padded by
  ``pad_lo``, output ``q = s * m + r`` meets input ``i`` through tap
  ``t = s * (i - m) + pad_lo - r``. Writing ``e = i - m``, phase ``r`` is a stride-1
  correlation of the undilated input with taps ``e`` in ``[e_lo, e_hi]``.

  Returns:
    ``(taps [D, s] int, -1 where a phase has no tap at that offset; e_lo)``.
  """
  s = dilation
  e_lo = min(-((pad_lo - r) // s) for r in range(s))  # ceil((r - pad_lo) / s)
  e_hi = max((kernel - 1 - pad_lo + r) // s for r in range(s))
  taps = np.array([[s * e + pad_lo - r for r in range(s)] for e in range(e_lo, e_hi + 1)])
  taps[(taps < 0) | (taps >= kernel)] = -1
  return taps, e_lo


def phase_dilated_conv(x: jax.Array, w: jax.Array, lhs_dilation: Sequence[int],
                       padding: Sequence[tuple[int, int]], impl: str = "auto") -> jax.Array:
  """``conv_general_dilated(x, w, (1, 1), padding, lhs_dilation)`` by phase decomposition.

  This is the forward pass of a transposed convolution and (with a flipped kernel) the
  input gradient of a strided one. Instead of convolving the zero-interleaved input,
  one stride-1 convolution of the original ``x`` with a kernel that stacks the taps of
  all ``s * s`` output phases along its output channels is reshaped depth-to-space.

  Args:
    x: ``[N, H, W, I]`` (NHWC).
    w: ``[KH, KW, I, O]`` (HWIO).
    lhs_dilation: ``(sh, sw)``.
    padding: explicit ``((lo, hi), (lo, hi))`` of the dilated input (may be negative).
    impl: the convolution choice its stride-1 convolution follows (``conv_fn``).

  Returns:
    ``[N, OH, OW, O]`` with ``OH = (H - 1) * sh + 1 + lo + hi - KH + 1``.
  """
  n, h, wd, _ = x.shape
  kh, kw, ci, co = w.shape
  sh, sw = (int(v) for v in lhs_dilation)
  (ly, hy), (lx, hx) = padding
  out_h = (h - 1) * sh + 1 + ly + hy - kh + 1
  out_w = (wd - 1) * sw + 1 + lx + hx - kw + 1
  taps_y, ey_lo = _phase_taps(kh, sh, ly)
  taps_x, ex_lo = _phase_taps(kw, sw, lx)
  dy, dx = taps_y.shape[0], taps_x.shape[0]
  # Phase kernel V[jy, jx, i, (ry, rx, o)] = w[taps_y[jy, ry], taps_x[jx, rx], i, o].
  gathered = w[np.maximum(taps_y, 0)[:, None, :, None], np.maximum(taps_x, 0)[None, :, None, :]]
  valid = (taps_y >= 0)[:, None, :, None] & (taps_x >= 0)[None, :, None, :]
  gathered = gathered * jnp.asarray(valid, w.dtype)[..., None, None]
  kernel = gathered.transpose(0, 1, 4, 2, 3, 5).reshape(dy, dx, ci, sh * sw * co)
  my, mx = -(-out_h // sh), -(-out_w // sw)
  # Pad (or crop, where negative) x so that a VALID conv yields exactly my x mx rows.
  x = lax.pad(x, jnp.zeros((), x.dtype),
              ((0, 0, 0), (-ey_lo, my + dy - 1 + ey_lo - h, 0),
               (-ex_lo, mx + dx - 1 + ex_lo - wd, 0), (0, 0, 0)))
  out = onednn.strided_conv(x, kernel, (1, 1), ((0, 0), (0, 0)), impl)
  out = out.reshape(n, my, mx, sh, sw, co).transpose(0, 1, 3, 2, 4, 5)
  return out.reshape(n, my * sh, mx * sw, co)[:, :out_h, :out_w]


def phase_input_gradient(g: jax.Array, w: jax.Array, strides: Sequence[int],
                         padding: Sequence[tuple[int, int]], in_hw: Sequence[int],
                         impl: str = "auto") -> jax.Array:
  """Input gradient of an NHWC/HWIO strided convolution by phase decomposition.

  Args:
    g: output gradient ``[N, OH, OW, O]``.
    w: kernel ``[KH, KW, I, O]``.
    strides: ``(sh, sw)``.
    padding: explicit ``((lo, hi), (lo, hi))`` of the forward convolution.
    in_hw: ``(H, W)`` of the forward input.
    impl: as for :func:`phase_dilated_conv`.

  Returns:
    ``[N, H, W, I]``, the transpose of the forward convolution applied to ``g``.
  """
  # The transpose of a strided conv is a conv of the dilated gradient with the
  # spatially flipped, in/out-swapped kernel (what jax.grad emits, minus the zeros).
  kh, kw = w.shape[:2]
  oh, ow = g.shape[1:3]
  pads = []
  for k, s, (lo, _), size, out in zip((kh, kw), strides, padding, in_hw, (oh, ow)):
    lo_t = k - 1 - lo
    pads.append((lo_t, size + k - 1 - (out - 1) * s - 1 - lo_t))
  w_t = jnp.flip(w, (0, 1)).swapaxes(2, 3)
  return phase_dilated_conv(g, w_t, strides, pads, impl)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def phase_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                padding: tuple[tuple[int, int], ...], impl: str) -> jax.Array:
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC)


def _phase_conv_fwd(x, w, strides, padding, impl):
  return phase_conv(x, w, strides, padding, impl), (x, w)


def _phase_conv_bwd(strides, padding, impl, residuals, g):
  x, w = residuals
  dx = phase_input_gradient(g, w, strides, padding, x.shape[1:3], impl)
  # Filter gradient: XLA's own (it runs through YNNPACK and is competitive).
  _, w_vjp = jax.vjp(
      lambda w_: lax.conv_general_dilated(x, w_, strides, padding,
                                          dimension_numbers=_NHWC), w)
  return dx, w_vjp(g)[0]


phase_conv.defvjp(_phase_conv_fwd, _phase_conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def phase_dilated(x: jax.Array, w: jax.Array, lhs_dilation: tuple[int, int],
                   padding: tuple[tuple[int, int], ...], impl: str) -> jax.Array:
  return phase_dilated_conv(x, w, lhs_dilation, padding, impl)


def _phase_dilated_fwd(x, w, lhs_dilation, padding, impl):
  return phase_dilated(x, w, lhs_dilation, padding, impl), (x, w)


def _phase_dilated_bwd(lhs_dilation, padding, impl, residuals, g):
  x, w = residuals
  kh, kw = w.shape[:2]
  h, wd = x.shape[1:3]
  # Both gradients come from ONE stride-s convolution over the padded g:
  #   dx[i] = sum_t g[s*i + t - (k-1-lo)] w[k-1-t]  (JAX's transpose, written out), and
  #   dw[k-1-t] = sum_i x[i] g[s*i + t - (k-1-lo)]  (that convolution's filter gradient
  #   for output gradient x, flipped). JAX would emit the latter as another lhs-dilated
  #   convolution, slow on CPU; a strided one runs on the fast paths.
  g_pad = lax.pad(g, jnp.zeros((), g.dtype), (
      (0, 0, 0),
      (kh - 1 - padding[0][0], lhs_dilation[0] * (h - 1) + padding[0][0] + 1 - g.shape[1], 0),
      (kw - 1 - padding[1][0], lhs_dilation[1] * (wd - 1) + padding[1][0] + 1 - g.shape[2], 0),
      (0, 0, 0)))
  w_flipped_t = jnp.flip(w, (0, 1)).swapaxes(2, 3)
  dx, w_vjp = jax.vjp(lambda v: onednn.strided_conv(g_pad, v, lhs_dilation, ((0, 0), (0, 0)), impl),
                      w_flipped_t)
  dw = jnp.flip(w_vjp(x)[0], (0, 1)).swapaxes(2, 3)
  return dx, dw


phase_dilated.defvjp(_phase_dilated_fwd, _phase_dilated_bwd)
