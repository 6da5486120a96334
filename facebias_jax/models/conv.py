"""Faster convolutions for XLA:CPU (oneDNN, phase decomposition, batch chunks), same values.

First choice, *oneDNN*: on a single CPU device, every plain convolution (stride,
padding, no lhs dilation) runs forward and backward on oneDNN's primitives, what
PyTorch runs on the CPU, through the XLA FFI (``facebias_jax.models.onednn``, built on
first use). They are 1.3x to 3x faster than XLA:CPU's own kernels for ResNet layers and
for most gradients. Transposed convolutions take the phase form below, whose strided
convolutions then run on oneDNN as well. Where oneDNN is not available (no compiler, no
oneDNN wheel: ``onednn.unavailable_reason()`` says why), the rest of this module applies.

Why the rest: the input gradient of a stride-``s`` convolution, and the forward pass of
a transposed convolution, are convolutions with ``lhs_dilation=s`` (an input with
``s - 1`` zeros between pixels). XLA:CPU (jaxlib 0.10) hands convolutions to YNNPACK
only when they have no base (lhs) dilation (and more than 16 channels on one side);
a dilated one falls back to Eigen's generic spatial convolution, whose patch
extraction with inflation is slow and multiplies every inserted zero. For the 5x5
stride-2 layers of the MIT standard CNN that input gradient costs 6x the forward
convolution, and the DB-VAE decoder's transposed convolutions are 3x to 6x slower than
necessary (numbers in docs/performance.md).

What: the *sub-pixel (phase) decomposition*. Output pixel ``q = s * m + r`` of a
dilated convolution only meets kernel taps of one parity class, so all ``s * s``
phases are ONE stride-1 convolution of the undilated input with a ``ceil(k / s)``-sized
kernel that stacks every phase's taps along its output channels, followed by a
depth-to-space reshape. No zero is multiplied and XLA runs the stride-1 convolution on
its fast path.

- ``fast_conv_general_dilated``: drop-in for ``jax.lax.conv_general_dilated`` (the
  ``conv_general_dilated=`` argument of ``nnx.Conv``). Strided convs keep XLA's forward
  and filter gradient and get the phase input gradient (``jax.custom_vjp``);
  lhs-dilated convs (transposed convs) run forward in phase form, with both gradients
  from one strided convolution.
- ``fast_conv_transpose`` / ``ConvTranspose``: ``lax.conv_transpose`` /
  ``nnx.ConvTranspose`` through that path.

Second, *batch chunks*: XLA:CPU's YNNPACK convolutions, above all their filter
gradients, run 2x to 6x faster per image on 16 images than on 256, so on a single CPU
device without oneDNN every eligible filter gradient is computed over chunks of
``get_conv_chunk()`` images (16 by default; ``set_conv_chunk`` or the
``FACEBIAS_CONV_CHUNK`` environment variable, 0 = off) and summed, and forward passes
and input gradients of layers with few channels are computed over chunks and
concatenated (``_batch_chunked``, a ``jax.custom_vjp``; ``_chunk_plan`` says which
passes). Each chunk still takes the phase forms above where they apply.

Switch: ``set_conv_impl("auto" | "onednn" | "fast" | "xla")`` (or the
``FACEBIAS_CONV_IMPL`` environment variable). ``"auto"`` (default) takes oneDNN on a
single CPU device when it is available and otherwise the phase path and batch chunks
only on the CPU backend and only for the shapes where they were measured faster;
``"onednn"`` insists on oneDNN (an error names what is missing); ``"fast"`` takes the
phase path and chunks for every eligible float32 NHWC 2-D convolution, never oneDNN;
``"xla"`` none of them. The choice is made when a function is traced, so set it before
``jax.jit`` compiles the model. Parameters are untouched (HWIO kernels, same shapes and
names as ``nnx.Conv``/``nnx.ConvTranspose``), so checkpoints and the torch import are
identical whichever implementation runs; values and gradients match the plain ones up
to float32 summation order (``tests/test_fast_conv.py``, ``tests/test_onednn.py``).
"""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn.linear import canonicalize_padding
from jax import lax

from facebias_jax.models import onednn

CONV_IMPLS = ("auto", "onednn", "fast", "xla")
_NHWC_DIMS = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))
# "auto" uses the phase input gradient of a strided conv when in_channels *
# out_channels is at most this and the kernel is larger than the stride. Measured on a
# 2-core AMD EPYC (AVX-512): faster for 5x5 12->24 (6x) and 3x3 24->48 (1.4x), slower
# from 3x3 48->72 and for the ResNet stages (64+ channels), where XLA's dilated
# convolution is already efficient. Transposed convolutions (lhs-dilated forward) use
# the phase form on CPU at every measured size (DB-VAE decoder: 1.2x to 4x per layer).
_AUTO_MAX_CHANNEL_PRODUCT = 2048

# Batch chunking, measured per layer at batch 256 on the same machine: YNNPACK's filter
# gradients get 2x to 6x faster when they see 16 images at a time instead of 256 (the
# standard CNN's 5x5 layers: 44 -> 13 and 36 -> 13 ms; ResNet-18 at 128 px: 4.0 s ->
# 1.3 s over its six kinds of layer), so on one CPU device "auto" computes every
# eligible filter gradient over chunks of this many images and sums them.
_DEFAULT_CHUNK = 16
# Forward passes and input gradients gain from chunks only with few channels (standard
# CNN 12 -> 24: forward 26 -> 14 ms, dilated input gradient 107 -> 31 ms; ResNet stem
# and 64 -> 64: 5-15%); from 128 -> 128 channels on they lose 10-25%.
_CHUNK_MAX_CHANNEL_PRODUCT = 64 * 64
# Forward passes that Eigen runs (16 or fewer channels on both sides, e.g. the first
# layer's 3 -> 12) gain nothing from chunks and would pay for the concatenation.
_FWD_CHUNK_MIN_CHANNELS = 16

_conv_impl = os.environ.get("FACEBIAS_CONV_IMPL", "auto")
_conv_chunk = os.environ.get("FACEBIAS_CONV_CHUNK", str(_DEFAULT_CHUNK))


def _check_impl(impl: str) -> str:
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r} "
                     "(check FACEBIAS_CONV_IMPL or the set_conv_impl argument).")
  return impl


def set_conv_impl(impl: str) -> None:
  """Selects the convolution gradient implementation for functions traced afterwards.

  Args:
    impl: ``"auto"`` (oneDNN on a single CPU device when it is available, else the
      phase forms and batch chunks where measured faster), ``"onednn"`` (oneDNN for
      every eligible convolution; an error if it cannot be built), ``"fast"`` (phase
      forms and batch chunks for every eligible convolution, no oneDNN) or ``"xla"``
      (plain ``lax.conv_general_dilated`` everywhere).
  """
  global _conv_impl
  _conv_impl = _check_impl(impl)


def get_conv_impl() -> str:
  """The current implementation name (see ``set_conv_impl``)."""
  return _check_impl(_conv_impl)


def _check_chunk(chunk: int | str) -> int:
  try:
    value = int(chunk)
  except (TypeError, ValueError):
    value = -1
  if value < 0:
    raise ValueError(f"conv chunk must be a non-negative integer (0 = no chunking), got "
                     f"{chunk!r} (check FACEBIAS_CONV_CHUNK or the set_conv_chunk argument).")
  return value


def set_conv_chunk(chunk: int) -> None:
  """Sets how many images "auto"/"fast" give each chunk of a convolution (0: no chunks).

  Like ``set_conv_impl``, it applies to functions traced afterwards. Values and
  gradients do not depend on it (up to the float32 summation order of filter
  gradients).

  Args:
    chunk: images per chunk; batches of at most this size run whole.
  """
  global _conv_chunk
  _conv_chunk = _check_chunk(chunk)


def get_conv_chunk() -> int:
  """Images per convolution chunk (see ``set_conv_chunk``)."""
  return _check_chunk(_conv_chunk)


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


def _plain_2d(lhs, rhs, rhs_dilation, dimension_numbers, feature_group_count,
              batch_group_count) -> bool:
  """A float32 NHWC/HWIO 2-D convolution without groups or kernel dilation."""
  return (lhs.ndim == 4 and _is_nhwc(dimension_numbers) and feature_group_count == 1
          and batch_group_count == 1 and lhs.dtype == jnp.float32
          and rhs.dtype == jnp.float32 and all(d == 1 for d in (rhs_dilation or (1, 1))))


def _pays_off(rhs, steps: Sequence[int], impl: str, max_channel_product: int | None) -> bool:
  """Whether "auto" (or "fast") should take the phase path for this kernel and step."""
  if impl == "fast":
    return True
  return (jax.default_backend() == "cpu"
          and all(k > s for k, s in zip(rhs.shape[:2], steps))
          and (max_channel_product is None
               or rhs.shape[2] * rhs.shape[3] <= max_channel_product))


def _onednn_on(impl: str) -> bool:
  """Whether convolutions traced now go to oneDNN (``facebias_jax.models.onednn``).

  "auto" uses it only on a single CPU device: its FFI calls have no sharding rule, so
  XLA would gather a batch sharded over several devices onto each of them.
  """
  if impl == "onednn":
    if jax.default_backend() != "cpu":
      raise ValueError(f"conv impl 'onednn' runs on the CPU backend only, but JAX's default "
                       f"backend is {jax.default_backend()!r}; use FACEBIAS_CONV_IMPL=auto.")
    if not onednn.available():
      raise onednn.OnednnUnavailable(
          f"conv impl 'onednn' was asked for but {onednn.unavailable_reason()} (or use "
          "FACEBIAS_CONV_IMPL=auto to fall back to XLA's convolutions).")
    return True
  return (impl == "auto" and jax.default_backend() == "cpu" and jax.device_count() == 1
          and onednn.available())


def _strided_conv(x: jax.Array, w: jax.Array, strides: Sequence[int],
                  padding: Sequence[tuple[int, int]]) -> jax.Array:
  """The plain NHWC/HWIO convolution the phase forms are made of: oneDNN's when it is
  on and takes this shape, else XLA's."""
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if _onednn_on(get_conv_impl()) and onednn.supports(x, w, strides, padding):
    return onednn.conv2d(x, w, strides, padding)
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC_DIMS)


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
                       padding: Sequence[tuple[int, int]]) -> jax.Array:
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
  out = _strided_conv(x, kernel, (1, 1), ((0, 0), (0, 0)))
  out = out.reshape(n, my, mx, sh, sw, co).transpose(0, 1, 3, 2, 4, 5)
  return out.reshape(n, my * sh, mx * sw, co)[:, :out_h, :out_w]


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
  return phase_dilated_conv(g, w_t, strides, pads)


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _phase_dilated(x: jax.Array, w: jax.Array, lhs_dilation: tuple[int, int],
                   padding: tuple[tuple[int, int], ...]) -> jax.Array:
  return phase_dilated_conv(x, w, lhs_dilation, padding)


def _phase_dilated_fwd(x, w, lhs_dilation, padding):
  return _phase_dilated(x, w, lhs_dilation, padding), (x, w)


def _phase_dilated_bwd(lhs_dilation, padding, residuals, g):
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
  dx, w_vjp = jax.vjp(lambda v: _strided_conv(g_pad, v, lhs_dilation, ((0, 0), (0, 0))),
                      w_flipped_t)
  dw = jnp.flip(w_vjp(x)[0], (0, 1)).swapaxes(2, 3)
  return dx, dw


_phase_dilated.defvjp(_phase_dilated_fwd, _phase_dilated_bwd)


class ChunkPlan(NamedTuple):
  """How ``_batch_chunked`` splits one convolution: images per chunk, and which passes.

  Filter gradients are always chunked; the forward pass and the input gradient only
  where ``_chunk_plan`` says they gain.
  """

  chunk: int
  forward: bool
  input_grad: bool


def _chunks(n: int, chunk: int) -> list[slice]:
  return [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _batch_chunked(conv, plan: ChunkPlan, x: jax.Array, w: jax.Array) -> jax.Array:
  """``conv(x, w)`` with its passes run ``plan.chunk`` images at a time."""
  if not plan.forward:
    return conv(x, w)
  return jnp.concatenate([conv(x[c], w) for c in _chunks(x.shape[0], plan.chunk)])


def _batch_chunked_fwd(conv, plan, x, w):
  return _batch_chunked(conv, plan, x, w), (x, w)


def _batch_chunked_bwd(conv, plan, residuals, g):
  # Each chunk's VJP of `conv` (phase or XLA). What is not used (the re-traced forward
  # passes, and the chunks' input gradients when the whole-batch one is taken) is dead
  # code, which XLA removes.
  x, w = residuals
  grads = [jax.vjp(conv, x[c], w)[1](g[c]) for c in _chunks(x.shape[0], plan.chunk)]
  dw = functools.reduce(jnp.add, [dw_c for _, dw_c in grads])
  if plan.input_grad:
    dx = jnp.concatenate([dx_c for dx_c, _ in grads])
  else:
    dx = jax.vjp(lambda x_: conv(x_, w), x)[1](g)[0]
  return dx, dw


_batch_chunked.defvjp(_batch_chunked_fwd, _batch_chunked_bwd)


def _chunk_plan(lhs: jax.Array, rhs: jax.Array, impl: str) -> ChunkPlan | None:
  """The batch chunking of one convolution, or None to run it whole.

  "auto" chunks only on a single CPU device: the speed-up is YNNPACK's, and slicing a
  batch that is sharded over several devices would move data between them. Forward
  passes and input gradients are chunked only up to ``_CHUNK_MAX_CHANNEL_PRODUCT``
  (forward passes also only where YNNPACK runs them); "fast" chunks every pass.
  """
  chunk = get_conv_chunk()
  if chunk == 0 or lhs.shape[0] <= chunk:
    return None
  if impl == "fast":
    return ChunkPlan(chunk, True, True)
  if jax.default_backend() != "cpu" or jax.device_count() != 1:
    return None
  few_channels = rhs.shape[2] * rhs.shape[3] <= _CHUNK_MAX_CHANNEL_PRODUCT
  ynn_forward = max(rhs.shape[2:]) > _FWD_CHUNK_MIN_CHANNELS
  return ChunkPlan(chunk, few_channels and ynn_forward, few_channels)


def fast_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                              rhs_dilation=None, dimension_numbers=None,
                              feature_group_count=1, batch_group_count=1, precision=None,
                              preferred_element_type=None, out_sharding=None):
  """``lax.conv_general_dilated`` with the phase forms and batch chunks where they pay off.

  Same signature, values and gradients as ``jax.lax.conv_general_dilated``; pass it as
  ``nnx.Conv(..., conv_general_dilated=fast_conv_general_dilated)``. Convolutions that
  are not eligible (see ``set_conv_impl``: float32 NHWC/HWIO 2-D, no groups or kernel
  dilation, explicit padding for lhs-dilated ones), or that ask for a precision,
  preferred element type or output sharding, go to ``lax.conv_general_dilated``.
  """
  impl = get_conv_impl()
  strides = tuple(int(v) for v in window_strides)
  dilation = tuple(int(v) for v in (lhs_dilation or (1,) * len(strides)))
  if (impl != "xla" and precision is None and preferred_element_type is None
      and out_sharding is None
      and _plain_2d(lhs, rhs, rhs_dilation, dimension_numbers, feature_group_count,
                    batch_group_count)):
    use_onednn = _onednn_on(impl)
    if use_onednn and all(s == 1 for s in dilation):
      return _strided_conv(lhs, rhs, strides,
                           _pad_pairs(padding, lhs.shape[1:3], rhs.shape[:2], strides))
    conv = functools.partial(lax.conv_general_dilated, window_strides=strides,
                             padding=padding, lhs_dilation=dilation,
                             dimension_numbers=_NHWC_DIMS)
    if all(s == 1 for s in dilation) and any(s > 1 for s in strides):
      if _pays_off(rhs, strides, impl, _AUTO_MAX_CHANNEL_PRODUCT):
        pads = _pad_pairs(padding, lhs.shape[1:3], rhs.shape[:2], strides)
        conv = functools.partial(_phase_conv, strides=strides, padding=pads)
    elif all(s == 1 for s in strides) and any(s > 1 for s in dilation):
      # A transposed convolution's forward pass (gradients: _phase_dilated_bwd).
      if _pays_off(rhs, dilation, impl, None) and not isinstance(padding, str):
        conv = functools.partial(_phase_dilated, lhs_dilation=dilation, padding=tuple(
            (int(lo), int(hi)) for lo, hi in padding))
    # Chunks help XLA's own kernels; oneDNN's run whole batches well.
    plan = None if use_onednn else _chunk_plan(lhs, rhs, impl)
    return conv(lhs, rhs) if plan is None else _batch_chunked(conv, plan, lhs, rhs)
  kwargs = {} if out_sharding is None else {"out_sharding": out_sharding}
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  batch_group_count, precision, preferred_element_type,
                                  **kwargs)


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
                        padding: str | Sequence[tuple[int, int]]) -> jax.Array:
  """``lax.conv_transpose`` (NHWC/HWIO, ``transpose_kernel=False``) via the phase form.

  Args:
    lhs: ``[N, H, W, I]``.
    rhs: ``[KH, KW, I, O]``.
    strides: ``(sh, sw)`` upsampling factors.
    padding: ``"SAME"``/``"VALID"`` (of the forward conv) or explicit ``(lo, hi)``
      pairs applied to the dilated input, as for ``lax.conv_transpose``.

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
  return fast_conv_general_dilated(lhs, rhs, (1, 1), pads, lhs_dilation=tuple(strides),
                                   dimension_numbers=_NHWC_DIMS)


class ConvTranspose(nnx.ConvTranspose):
  """``nnx.ConvTranspose`` whose plain 2-D case runs through ``fast_conv_transpose``.

  Same constructor, parameters (HWIO ``kernel``, ``bias``) and outputs as
  ``nnx.ConvTranspose``; masked, circular-padded, kernel-dilated, transposed-kernel
  or non-float32 layers fall back to the parent implementation.
  """

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
    y = fast_conv_transpose(inputs, self.kernel[...], strides, padding)
    if self.bias is not None:
      y = y + self.bias[...]
    return y
