"""Running a model for inference: an eval-mode copy, split once, one compiled call.

Evaluation, the detection protocol, CAM, faithfulness metrics and the demo all need
the same thing: call some function of a model on arrays, in eval mode (BatchNorm
running statistics, no dropout, the DB-VAE with ``z = mu``), compiled, without touching
the caller's model or its train/eval mode. :func:`eval_fn` does it once for all of them:
the model is split into its static graph and its arrays here, and the compiled
function rebuilds a fresh eval-mode copy inside the trace. The compilation cache is
shared by every call with the same function, static options, model structure and
shapes (one ``jax.jit`` at module level, keyed on the graph definition), so building
``eval_fn`` again for another model of the same kind compiles nothing new.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from facebias_jax.models.cnn import StandardCNN
from facebias_jax.models.resnet import ResNet


def _eval_copy(graphdef: nnx.GraphDef, state: nnx.State) -> nnx.Module:
  model = nnx.merge(graphdef, state)
  model.eval()
  return model


def _call(fn, graphdef, state, args, static):
  return fn(_eval_copy(graphdef, state), *args, **dict(static))


_call_jit = jax.jit(_call, static_argnums=(0, 1), static_argnames=("static",))


def eval_fn(model: nnx.Module, fn: Callable[..., Any], *, jit: bool = True,
            **static: Any) -> Callable[..., Any]:
  """``fn(eval-mode copy of model, *args, **static)`` as a compiled function of ``args``.

  Args:
    model: any registered model (or NNX module). It is split now: later in-place
      weight updates (optimizer steps, ``nnx.update``, restores) are seen, structural
      changes (replaced submodules) are not; call ``eval_fn`` again after those.
    fn: a module-level function ``fn(model, *arrays, **static)``; it and ``static``
      are part of the compilation key, so pass the same function object each time.
    jit: ``False`` runs the same function eagerly (debugging).
    **static: hashable options of ``fn`` (method names, sizes, flags).

  Returns:
    ``call(*arrays)`` returning what ``fn`` returns.
  """
  graphdef, state = nnx.split(model)
  frozen = tuple(sorted(static.items()))
  run = _call_jit if jit else _call

  def call(*args: Any) -> Any:
    return run(fn, graphdef, state, args, static=frozen)

  return call


def logits(model: nnx.Module, images: jax.Array) -> jax.Array:
  """Logits ``[B, K]`` of any registered model; the DB-VAE runs with ``z = mu``.

  ``feature_map`` then ``logits_from_feature_map`` equals ``model(images)[0]`` by the
  models' contract, and skips the DB-VAE's decoder; any other module is called as
  ``model(images)[0]``.
  """
  if hasattr(model, "feature_map") and hasattr(model, "logits_from_feature_map"):
    return model.logits_from_feature_map(model.feature_map(images))
  return model(images)[0]


def binary_logit(logits_bk: jax.Array) -> jax.Array:
  """The positive-class log-odds ``[B]`` of 1-logit (sigmoid) or 2-logit (softmax) heads."""
  if logits_bk.ndim != 2 or logits_bk.shape[-1] not in (1, 2):
    raise ValueError(f"Expected logits of shape [B, 1] or [B, 2] for a binary task, got "
                     f"{logits_bk.shape}; per-group metrics need a binary classifier")
  if logits_bk.shape[-1] == 1:
    return logits_bk[:, 0]
  # log softmax[:, 1] - log softmax[:, 0] = l1 - l0: the same decision as softmax >= 0.5.
  return logits_bk[:, 1] - logits_bk[:, 0]


def _binary_logits(model: nnx.Module, images: jax.Array) -> jax.Array:
  return binary_logit(logits(model, images))


def binary_logit_fn(model: nnx.Module) -> Callable[[Any], jax.Array]:
  """A compiled ``images float32 [B,H,W,3] -> positive-class logit [B]`` of ``model``."""
  run = eval_fn(model, _binary_logits)
  return lambda images: run(jnp.asarray(images, jnp.float32))


def pre_logits(model: nnx.Module, images: jax.Array) -> jax.Array:
  """The input of the model's last Linear layer ``[B, D]`` (``aux["pre_logits"]``)."""
  return model(images)[1]["pre_logits"]


def last_layer(model: nnx.Module) -> nnx.Linear:
  """The Linear layer that maps ``aux["pre_logits"]`` to the logits.

  The standard CNN's ``out`` layer, a ResNet's one-layer head. What DFR retrains.

  Raises:
    ValueError: the model has no such single layer (a stacked ResNet head, the DB-VAE).
  """
  if isinstance(model, StandardCNN):
    return model.out
  if isinstance(model, ResNet):
    if model.head.hidden_dims:
      raise ValueError(f"the ResNet's head stacks {len(model.head.hidden_dims) + 1} Linear "
                       "layers, so aux['pre_logits'] is not the last layer's input; use "
                       "config.model.head_dims=() to retrain the last layer")
    return model.head.layers[0]
  raise ValueError(f"{type(model).__name__} has no single last Linear layer over "
                   "aux['pre_logits'] (the standard CNN and ResNets with one head layer do)")
