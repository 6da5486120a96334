"""BatchNorm whose training pass runs on oneDNN, optionally fused with the ReLU after it.

Why: with the convolutions on oneDNN (``ops.onednn``), a ResNet train step spends most
of what is left in XLA's BatchNorm: the statistics, the normalisation and their
gradients make four or five memory-bound passes over each activation. oneDNN's
primitive (``csrc/onednn_norm.cc``) reads it once or twice: on 2 cores, forward and
backward of the ResNet-18 stem's BatchNorm + ReLU (batch 32, 64 x 64 x 64) take 14.1
against 15.8 ms once freed memory is reused (``facebias_jax.host_memory``; 37 against
77 ms before), and the ResNet-18 step 0.96x the time with XLA's (``docs/performance.md``).

What: :class:`BatchNorm` is ``nnx.BatchNorm`` with the same variables, the same
statistics (batch mean and biased variance, averaged into ``mean``/``var`` with the
same momentum) and the same results, plus a ``relu=`` flag for the ReLU that follows
it. In training mode on a single CPU device (``onednn.use_onednn``), with float32
NHWC input, scale and bias, no mask and a shape oneDNN takes, it calls
:func:`batch_norm_relu`; everywhere else (eval mode, bfloat16 compute or parameters,
several devices, other backends) it is ``nnx.BatchNorm`` followed by ``jax.nn.relu``.

Gradients: :func:`batch_norm_relu` is a ``jax.custom_vjp`` over oneDNN's backward
primitive. The batch statistics it returns feed only the running averages, behind
``stop_gradient``, so their cotangents are symbolic zeros and cost nothing; when a
caller does differentiate them, their exact terms are added (tested).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn import dtypes
from jax.custom_derivatives import SymbolicZero

from facebias_jax.ops import conv as conv_lib
from facebias_jax.ops import onednn


def _forward(x: jax.Array, scale: jax.Array, shift: jax.Array, epsilon: float,
             relu: bool):
  c = x.shape[-1]
  if x.ndim != 4 or x.dtype != jnp.float32 or scale.shape != (c,) or shift.shape != (c,):
    raise ValueError(f"batch_norm_relu takes float32 NHWC x and [C] scale and shift, got "
                     f"x {x.shape} {x.dtype}, scale {scale.shape}, shift {shift.shape}")
  workspace = onednn.norm_workspace_bytes(x.shape, epsilon, relu) if relu else 1
  if workspace < 0:
    raise onednn.OnednnUnavailable(f"oneDNN has no BatchNorm for input {x.shape}")
  stat = jax.ShapeDtypeStruct((c,), jnp.float32)
  return onednn.call(
      "norm_forward", (jax.ShapeDtypeStruct(x.shape, jnp.float32), stat, stat,
                       jax.ShapeDtypeStruct((max(workspace, 1),), jnp.uint8)),
      x, scale, shift, epsilon=np.float32(epsilon), relu=bool(relu))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_relu(x: jax.Array, scale: jax.Array, shift: jax.Array, epsilon: float,
                    relu: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode BatchNorm over the batch and spatial axes of NHWC ``x``, on oneDNN.

  Args:
    x: ``[N, H, W, C]`` float32.
    scale: ``[C]``.
    shift: ``[C]``.
    epsilon: added to the variance.
    relu: apply ``max(0, .)`` to the output in the same pass.

  Returns:
    ``(y, mean, var)``: ``y = relu?((x - mean) / sqrt(var + epsilon) * scale + shift)``
    and the batch mean and biased variance per channel.
  """
  y, mean, var, _ = _forward(x, scale, shift, epsilon, relu)
  return y, mean, var


def _batch_norm_relu_fwd(x, scale, shift, epsilon, relu):
  x, scale, shift = x.value, scale.value, shift.value
  y, mean, var, workspace = _forward(x, scale, shift, epsilon, relu)
  return (y, mean, var), (x, scale, mean, var, workspace)


def _batch_norm_relu_bwd(epsilon, relu, residuals, cotangents):
  x, scale, mean, var, workspace = residuals
  dy, dmean, dvar = cotangents
  if isinstance(dy, SymbolicZero):
    dy = jnp.zeros(x.shape, x.dtype)
  param = jax.ShapeDtypeStruct(scale.shape, jnp.float32)
  dx, dscale, dshift = onednn.call(
      "norm_backward", (jax.ShapeDtypeStruct(x.shape, jnp.float32), param, param),
      x, scale, mean, var, dy, workspace, epsilon=np.float32(epsilon), relu=bool(relu))
  # The statistics' own paths back to x: d mean / dx = 1/M, d var / dx = 2 (x - mean)/M.
  count = x.size // x.shape[-1]
  if not isinstance(dmean, SymbolicZero):
    dx = dx + dmean / count
  if not isinstance(dvar, SymbolicZero):
    dx = dx + dvar * 2.0 * (x - mean) / count
  return dx, dscale, dshift


batch_norm_relu.defvjp(_batch_norm_relu_fwd, _batch_norm_relu_bwd, symbolic_zeros=True)


class BatchNorm(nnx.BatchNorm):
  """``nnx.BatchNorm`` (same arguments and variables) with oneDNN's training pass.

  Args:
    num_features: channels (the last axis).
    impl: the kernel choice, as the convolutions' (``facebias_jax.ops.conv``):
      ``"auto"`` (or ``$FACEBIAS_CONV_IMPL``, read now) uses oneDNN on a single CPU
      device when it is built, ``"onednn"`` insists on it, ``"fast"`` and ``"xla"``
      keep XLA's BatchNorm.
    **kwargs: ``nnx.BatchNorm``'s (``momentum``, ``epsilon``, ``rngs``, ...).
  """

  def __init__(self, num_features: int, *, impl: str = "auto", **kwargs):
    super().__init__(num_features, **kwargs)
    self.impl = conv_lib.resolve_impl(impl)

  def _on_onednn(self, x: jax.Array, relu: bool) -> bool:
    plain = (x.ndim == 4 and x.shape[-1] == self.num_features and x.dtype == jnp.float32
             and self.dtype in (None, jnp.float32) and self.use_scale and self.use_bias
             and self.scale.dtype == jnp.float32 and self.bias.dtype == jnp.float32
             and self.promote_dtype is dtypes.promote_dtype and self.axis in (-1, 3)
             and self.axis_name is None)
    if not (plain and onednn.use_onednn(self.impl)):
      return False
    # oneDNN builds the primitive for this shape or says it cannot (-1): "auto" then
    # keeps XLA's BatchNorm, "onednn" lets batch_norm_relu raise.
    return (self.impl == "onednn"
            or onednn.norm_workspace_bytes(x.shape, self.epsilon, relu) >= 0)

  def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
               mask: jax.Array | None = None, relu: bool = False) -> jax.Array:
    """Normalises ``x``; with ``relu=True`` returns ``relu(batch_norm(x))``.

    Args:
      x: ``[..., C]``.
      use_running_average: as ``nnx.BatchNorm`` (None: the module's setting).
      mask: as ``nnx.BatchNorm``: which positions the statistics cover (XLA's path).
      relu: apply a ReLU after the normalisation (fused on oneDNN).
    """
    running = self.use_running_average if use_running_average is None else use_running_average
    if running is not None and not running and mask is None and self._on_onednn(x, relu):
      y, mean, var = batch_norm_relu(x, self.scale[...], self.bias[...],
                                     float(self.epsilon), bool(relu))
      self.mean[...] = jax.lax.stop_gradient(
          self.momentum * self.mean[...] + (1 - self.momentum) * mean)
      self.var[...] = jax.lax.stop_gradient(
          self.momentum * self.var[...] + (1 - self.momentum) * var)
      return y
    y = super().__call__(x, use_running_average, mask=mask)
    return jax.nn.relu(y) if relu else y
