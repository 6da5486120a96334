"""Faster convolutions for XLA:CPU (oneDNN, phase decomposition, batch chunks), same values.

Models do not call this module's functions directly: they take the convolution as an
argument, ``nnx.Conv(..., conv_general_dilated=conv_fn(conv_impl))`` (as flax's ResNet
takes ``conv=``), and ``get_model(..., conv_impl=...)`` / ``config.model.conv_impl``
choose it. Two models built with different choices run their own kernels in one
process, and nothing global changes what a compiled function does.

Choices (``CONV_IMPLS``):

* ``"auto"`` (default): oneDNN on a single CPU device when it is available
  (``onednn.unavailable_reason()`` says why not), else the phase forms and batch chunks
  below, only on the CPU backend and only for the shapes where they were measured
  faster; elsewhere XLA's own convolutions. Decided when a function is traced. The
  environment variable ``FACEBIAS_CONV_IMPL`` (``xla``, ``onednn``, ``fast``), read when
  a model is built, replaces ``"auto"``.
* ``"onednn"``: oneDNN for every eligible convolution; an error names what is missing.
* ``"fast"``: phase forms and batch chunks for every eligible convolution, never oneDNN.
* ``"xla"``: plain ``lax.conv_general_dilated`` everywhere.

*oneDNN* (``facebias_jax.ops.onednn``, built on first use): forward and both gradients
of every plain convolution (stride, padding, no lhs dilation) through the XLA FFI, what
PyTorch runs on the CPU; 1.3x to 3x faster than XLA:CPU's kernels for ResNet layers.
Transposed convolutions take the phase form, whose strided convolutions then run on
oneDNN as well.

*Phase decomposition* (the fallback): the input gradient of a stride-``s`` convolution,
and the forward pass of a transposed one, are convolutions with ``lhs_dilation=s``,
which XLA:CPU (jaxlib 0.10) runs on Eigen's slow generic path, multiplying every
inserted zero. Output pixel ``q = s * m + r`` only meets kernel taps of one parity
class, so all ``s * s`` phases are ONE stride-1 convolution of the undilated input with
a kernel that stacks every phase's taps along its output channels, then a
depth-to-space reshape (6x for the standard CNN's 5x5 stride-2 input gradients).

*Batch chunks* (the fallback, one CPU device): YNNPACK's filter gradients run 2x to 6x
faster per image on 16 images than on 256, so eligible passes run over chunks of
``chunk`` images (``FACEBIAS_CONV_CHUNK``, default 16, 0 = off) and are summed or
concatenated (``_chunk_plan`` says which passes).

Parameters are untouched (HWIO kernels, same shapes and names as ``nnx.Conv``), so
checkpoints and the torch import do not depend on the choice; values and gradients
match the plain ones up to float32 summation order (``tests/test_fast_conv.py``,
``tests/test_onednn.py``; measurements in docs/performance.md).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from facebias_jax.ops import onednn, phase

CONV_IMPLS = ("auto", "onednn", "fast", "xla")
CONV_IMPL_ENV = "FACEBIAS_CONV_IMPL"
CONV_CHUNK_ENV = "FACEBIAS_CONV_CHUNK"
NHWC_DIMS = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))
# "auto" uses the phase input gradient of a strided conv when in_channels *
# out_channels is at most this and the kernel is larger than the stride. Measured on a
# 2-core AMD EPYC (AVX-512): faster for 5x5 12->24 (6x) and 3x3 24->48 (1.4x), slower
# from 3x3 48->72 and for the ResNet stages (64+ channels), where XLA's dilated
# convolution is already efficient. Transposed convolutions (lhs-dilated forward) use
# the phase form on CPU at every measured size (DB-VAE decoder: 1.2x to 4x per layer).
_AUTO_MAX_CHANNEL_PRODUCT = 2048
# Batch chunking, measured per layer at batch 256 on the same machine: filter
# gradients of the standard CNN's 5x5 layers 44 -> 13 and 36 -> 13 ms; ResNet-18 at
# 128 px 4.0 s -> 1.3 s over its six kinds of layer.
DEFAULT_CHUNK = 16
# Forward passes and input gradients gain from chunks only with few channels (standard
# CNN 12 -> 24: forward 26 -> 14 ms, dilated input gradient 107 -> 31 ms; ResNet stem
# and 64 -> 64: 5-15%); from 128 -> 128 channels on they lose 10-25%.
_CHUNK_MAX_CHANNEL_PRODUCT = 64 * 64
# Forward passes that Eigen runs (16 or fewer channels on both sides, e.g. the first
# layer's 3 -> 12) gain nothing from chunks and would pay for the concatenation.
_FWD_CHUNK_MIN_CHANNELS = 16


def check_impl(impl: str) -> str:
  """``impl`` if it is one of ``CONV_IMPLS``, else a ValueError naming the choices."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r} (check "
                     f"config.model.conv_impl or the {CONV_IMPL_ENV} environment variable).")
  return impl


def check_chunk(chunk: int | str) -> int:
  """``chunk`` as a non-negative int, else a ValueError."""
  try:
    value = int(chunk)
  except (TypeError, ValueError):
    value = -1
  if value < 0:
    raise ValueError(f"conv chunk must be a non-negative integer (0 = no chunking), got "
                     f"{chunk!r} (check the {CONV_CHUNK_ENV} environment variable).")
  return value


def resolve_impl(impl: str = "auto") -> str:
  """The choice a model built now gets: ``impl``, with ``"auto"`` replaced by
  ``$FACEBIAS_CONV_IMPL`` when that is set."""
  impl = check_impl(impl)
  if impl == "auto":
    impl = check_impl(os.environ.get(CONV_IMPL_ENV, "auto") or "auto")
  return impl


def default_chunk() -> int:
  """Images per batch chunk: ``$FACEBIAS_CONV_CHUNK``, else ``DEFAULT_CHUNK``."""
  return check_chunk(os.environ.get(CONV_CHUNK_ENV, DEFAULT_CHUNK))


@functools.lru_cache(maxsize=None)
def _conv_fn(impl: str, chunk: int) -> Callable[..., jax.Array]:
  return functools.partial(fast_conv_general_dilated, impl=impl, chunk=chunk)


def conv_fn(impl: str = "auto", chunk: int | None = None) -> Callable[..., jax.Array]:
  """The ``conv_general_dilated`` a model's layers use for the choice ``impl``.

  The same object for the same resolved choice and chunk, so models built separately
  share graph definitions and compiled steps.

  Args:
    impl: one of ``CONV_IMPLS`` (``"auto"`` honours ``$FACEBIAS_CONV_IMPL``).
    chunk: images per batch chunk of the fallback (default ``default_chunk()``).

  Returns:
    A drop-in for ``jax.lax.conv_general_dilated``.
  """
  return _conv_fn(resolve_impl(impl), default_chunk() if chunk is None else check_chunk(chunk))


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
    return dimension_numbers == NHWC_DIMS
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


def _chunk_plan(lhs: jax.Array, rhs: jax.Array, impl: str, chunk: int) -> ChunkPlan | None:
  """The batch chunking of one convolution, or None to run it whole.

  "auto" chunks only on a single CPU device: the speed-up is YNNPACK's, and slicing a
  batch that is sharded over several devices would move data between them. Forward
  passes and input gradients are chunked only up to ``_CHUNK_MAX_CHANNEL_PRODUCT``
  (forward passes also only where YNNPACK runs them); "fast" chunks every pass.
  """
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
                              preferred_element_type=None, out_sharding=None, *,
                              impl: str = "auto", chunk: int = DEFAULT_CHUNK):
  """``lax.conv_general_dilated`` with the phase forms and batch chunks where they pay off.

  Same signature, values and gradients as ``jax.lax.conv_general_dilated``; pass it as
  ``nnx.Conv(..., conv_general_dilated=conv_fn(impl))``. Convolutions that are not
  eligible (float32 NHWC/HWIO 2-D, no groups or kernel dilation, explicit padding for
  lhs-dilated ones), or that ask for a precision, preferred element type or output
  sharding, go to ``lax.conv_general_dilated``.

  Args:
    lhs, rhs, window_strides, ...: as ``jax.lax.conv_general_dilated``.
    impl: one of ``CONV_IMPLS`` (see the module docstring); ``"auto"`` is decided when
      the function is traced.
    chunk: images per batch chunk of the XLA fallback (0 = no chunks).
  """
  impl = check_impl(impl)
  chunk = check_chunk(chunk)
  strides = tuple(int(v) for v in window_strides)
  dilation = tuple(int(v) for v in (lhs_dilation or (1,) * len(strides)))
  if (impl != "xla" and precision is None and preferred_element_type is None
      and out_sharding is None
      and _plain_2d(lhs, rhs, rhs_dilation, dimension_numbers, feature_group_count,
                    batch_group_count)):
    use_onednn = onednn.use_onednn(impl)
    if use_onednn and all(s == 1 for s in dilation):
      return onednn.strided_conv(lhs, rhs, strides,
                           _pad_pairs(padding, lhs.shape[1:3], rhs.shape[:2], strides), impl)
    conv = functools.partial(lax.conv_general_dilated, window_strides=strides,
                             padding=padding, lhs_dilation=dilation,
                             dimension_numbers=NHWC_DIMS)
    if all(s == 1 for s in dilation) and any(s > 1 for s in strides):
      if _pays_off(rhs, strides, impl, _AUTO_MAX_CHANNEL_PRODUCT):
        pads = _pad_pairs(padding, lhs.shape[1:3], rhs.shape[:2], strides)
        conv = functools.partial(phase.phase_conv, strides=strides, padding=pads, impl=impl)
    elif all(s == 1 for s in strides) and any(s > 1 for s in dilation):
      # A transposed convolution's forward pass (gradients: _phase_dilated_bwd).
      if _pays_off(rhs, dilation, impl, None) and not isinstance(padding, str):
        conv = functools.partial(phase.phase_dilated, lhs_dilation=dilation, padding=tuple(
            (int(lo), int(hi)) for lo, hi in padding), impl=impl)
    # Chunks help XLA's own kernels; oneDNN's run whole batches well.
    plan = None if use_onednn else _chunk_plan(lhs, rhs, impl, chunk)
    return conv(lhs, rhs) if plan is None else _batch_chunked(conv, plan, lhs, rhs)
  kwargs = {} if out_sharding is None else {"out_sharding": out_sharding}
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  batch_group_count, precision, preferred_element_type,
                                  **kwargs)


