"""The dtype a model computes in: float32, or bfloat16 for mixed-precision training.

Parameters, optimizer state and BatchNorm statistics stay float32 whatever the compute
dtype: flax's layers take a ``dtype`` (what they compute in) apart from their
``param_dtype`` (what they store), cast the float32 parameters and inputs to it on the
way in, and BatchNorm reduces its batch statistics in float32
(``force_float32_reductions``) before normalising in the compute dtype. So switching a
built model between the two only sets the ``dtype`` attribute of its layers, as
``model.train()`` sets ``use_running_average``; its variables and a checkpoint of them
do not change.

The library's oneDNN convolutions are float32 only; a bfloat16 layer takes XLA's own
convolution (``ops.onednn.supports``), which is what GPUs and TPUs want and what CPUs
run slowly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

COMPUTE_DTYPES = ("float32", "bfloat16")


def check_compute_dtype(dtype: str) -> None:
  if dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute dtype must be one of {COMPUTE_DTYPES}, got {dtype!r}")


def set_compute_dtype(model: nnx.Module, dtype: str) -> None:
  """Makes every layer of ``model`` compute in ``dtype`` (``COMPUTE_DTYPES``), in place.

  ``"float32"`` restores flax's default (``dtype=None``: the dtype of the float32
  parameters and inputs).
  """
  check_compute_dtype(dtype)
  value = None if dtype == "float32" else jnp.dtype(dtype)
  # Every flax layer with a compute dtype (Conv, ConvTranspose, Linear, BatchNorm,
  # LayerNorm...) has the attribute; activations and pooling follow their inputs.
  model.set_attributes(dtype=value, raise_if_not_found=False)


def to_float32(tree):
  """Every floating array of ``tree`` as float32 (losses and metrics are computed in it)."""
  return jax.tree.map(
      lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
