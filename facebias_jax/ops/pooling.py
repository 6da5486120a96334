"""Max-pooling with a cheap gradient on CPU, same values and gradients as ``nnx.max_pool``.

``max_pool`` runs oneDNN's pooling primitive (``csrc/onednn_norm.cc``) where the
convolutions do (``onednn.use_onednn``: a single CPU device), in training and eval mode:
its forward pass records each window's argmax, the backward pass scatters to it, 11.0
ms forward and backward for the ResNet-18 stem's pool at batch 32 on 2 cores against
20.5 ms for the XLA form below. Elsewhere it is that XLA form. Both give the same values
and gradients for finite inputs (ties included, tested); for NaN and -inf they differ
(oneDNN's max does not propagate NaN), which cannot arise after the stem's ReLU unless
the BatchNorm before it is already NaN.

Why: JAX differentiates ``lax.reduce_window(max)`` through ``select_and_gather_add``,
which XLA:CPU lowers to a reduce-window over packed (value, index) pairs. For the
ResNet stem's 3x3/2 pool at 128 px (batch 32, 64 channels) the forward and backward
pass take 150 ms on 2 cores, 15% of a ResNet-18 train step once its convolutions run
on oneDNN.

What: ``max_pool`` keeps the reduce-window forward pass and writes the backward pass out
as one masked, strided add per window tap: each output's gradient goes to the first
input of its window (in row-major order) that holds the maximum, which is what XLA's
own gradient does (select-and-scatter), ties included. 34 ms for the same pool.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from facebias_jax.ops import onednn


def _tap_end(start: Sequence[int], strides: Sequence[int],
             out_hw: Sequence[int]) -> list[int]:
  """One past the last input row/column that window tap ``start`` reads."""
  return [s + st * (o - 1) + 1 for s, st, o in zip(start, strides, out_hw)]


def max_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int],
             padding: tuple[tuple[int, int], tuple[int, int]],
             impl: str = "auto") -> jax.Array:
  """2-D max-pooling of NHWC ``x`` (padding with ``-inf``), as ``nnx.max_pool``.

  Args:
    x: ``[N, H, W, C]``.
    window: ``(wh, ww)``.
    strides: ``(sh, sw)``.
    padding: explicit ``((top, bottom), (left, right))``.
    impl: the kernel choice, as the convolutions' (``facebias_jax.ops.conv``):
      ``"auto"``/``"onednn"`` use oneDNN where ``onednn.use_onednn`` says so.

  Returns:
    ``[N, OH, OW, C]``.
  """
  window, strides = tuple(map(int, window)), tuple(map(int, strides))
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if (x.ndim == 4 and x.dtype == jnp.float32
      and _every_window_reads_input(x.shape, window, strides, padding)
      and onednn.use_onednn(impl)
      # A shape oneDNN refuses (-1) stays on XLA under "auto"; "onednn" raises below.
      and (impl == "onednn" or onednn.pool_workspace_bytes(
          x.shape, window, strides, [*padding[0], *padding[1]]) >= 0)):
    return _onednn_max_pool(x, window, strides, padding)
  return _xla_max_pool(x, window, strides, padding)


def _every_window_reads_input(shape, window, strides, padding) -> bool:
  """Whether no window lies wholly in the padding: XLA gives such a window -inf, oneDNN
  the lowest finite float, so those pools stay on XLA."""
  out_hw = onednn.out_shape(shape, window, strides, padding, shape[3])[1:3]
  for size, k, s, (lo, _), out in zip(shape[1:3], window, strides, padding, out_hw):
    if lo >= k or -lo + s * (out - 1) > size - 1:  # The first or the last window.
      return False
  return True


def _pool_attrs(window, strides, padding) -> dict:
  return {"window": np.asarray(window, np.int64), **onednn.window_attrs(strides, padding)}


def _onednn_pool_forward(x, window, strides, padding):
  attrs = _pool_attrs(window, strides, padding)
  workspace = onednn.pool_workspace_bytes(x.shape, window, strides, attrs["padding"])
  if workspace < 0:
    raise onednn.OnednnUnavailable(f"oneDNN has no max-pool {window}/{strides} for {x.shape}")
  out = jax.ShapeDtypeStruct(
      onednn.out_shape(x.shape, window, strides, padding, x.shape[3]), x.dtype)
  return onednn.call("pool_forward", (out, jax.ShapeDtypeStruct((workspace,), jnp.uint8)),
                     x, **attrs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _onednn_max_pool(x, window, strides, padding):
  return _onednn_pool_forward(x, window, strides, padding)[0]


def _onednn_max_pool_fwd(x, window, strides, padding):
  y, workspace = _onednn_pool_forward(x, window, strides, padding)
  return y, (workspace, jax.ShapeDtypeStruct(x.shape, x.dtype))


def _onednn_max_pool_bwd(window, strides, padding, residuals, g):
  workspace, x = residuals
  return (onednn.call("pool_backward", x, g, workspace,
                      **_pool_attrs(window, strides, padding)),)


_onednn_max_pool.defvjp(_onednn_max_pool_fwd, _onednn_max_pool_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _xla_max_pool(x, window, strides, padding):
  return lax.reduce_window(x, jnp.array(-jnp.inf, x.dtype), lax.max, (1, *window, 1),
                           (1, *strides, 1), ((0, 0), *padding, (0, 0)))


def _max_pool_fwd(x, window, strides, padding):
  return _xla_max_pool(x, window, strides, padding), x


def _max_pool_bwd(window, strides, padding, x, g):
  out_hw = g.shape[1:3]
  xp = lax.pad(x, jnp.array(-jnp.inf, x.dtype),
               ((0, 0, 0), (*padding[0], 0), (*padding[1], 0), (0, 0, 0)))
  taps = [(i, j) for i in range(window[0]) for j in range(window[1])]
  ends = [_tap_end(tap, strides, out_hw) for tap in taps]
  # The first tap holding each window's maximum, found again from x rather than by
  # comparing with the forward output: XLA may recompute x in another fusion with
  # different rounding, and an equality test against the saved maximum would then miss.
  best = argbest = None
  for t, ((i, j), end) in enumerate(zip(taps, ends)):
    # The tap (i, j) of every output's window: xp[:, i::sh, j::sw], cropped.
    value = lax.slice(xp, (0, i, j, 0), (xp.shape[0], *end, xp.shape[3]), (1, *strides, 1))
    if best is None:
      best, argbest = value, jnp.zeros(value.shape, jnp.int32)
    else:
      better = value > best
      best, argbest = jnp.where(better, value, best), jnp.where(better, t, argbest)
  dxp = jnp.zeros_like(xp)
  for t, ((i, j), end) in enumerate(zip(taps, ends)):
    # Back to the tap's input pixels: the transpose of that strided slice.
    dxp = dxp + lax.pad(jnp.where(argbest == t, g, 0), jnp.zeros((), g.dtype), (
        (0, 0, 0), (i, xp.shape[1] - end[0], strides[0] - 1),
        (j, xp.shape[2] - end[1], strides[1] - 1), (0, 0, 0)))
  (top, _), (left, _) = padding
  return (dxp[:, top:top + x.shape[1], left:left + x.shape[2]],)


_xla_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
