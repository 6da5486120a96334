"""Models: ResNets with global average pooling, the standard CNN and the DB-VAE.

Every model is called as ``logits, aux = model(images)`` with images float32
``[B, H, W, 3]`` and also has ``feature_map(images)``, ``logits_from_feature_map(fmap)``
and ``linear_head()`` (see the Models section of the design). Build one by name::

  model = get_model("resnet18", num_classes=1, small_inputs=True, conv_impl="auto")

``MODELS`` is the explicit registry (scenic style): name -> constructor taking
``num_classes`` and keyword options. Every model takes ``conv_impl`` (the convolution
kernels, ``facebias_jax.ops.conv``). ``inference.eval_fn`` runs any function of a
model as a compiled eval-mode copy (evaluation, CAM, detection, the demo).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from facebias_jax.models.cnn import StandardCNN
from facebias_jax.models.dbvae import DBVAE
from facebias_jax.models.inference import binary_logit, eval_fn, logits
from facebias_jax.models.resnet import RESNETS, BasicBlock, Bottleneck, ResNet

MODELS: dict[str, Callable[..., nnx.Module]] = {
    **RESNETS,
    "standard_cnn": StandardCNN,
    "dbvae": DBVAE,
}


def get_model(name: str, num_classes: int = 1, *, rngs: nnx.Rngs | None = None,
              **kwargs: Any) -> nnx.Module:
  """Builds a registered model.

  Args:
    name: one of ``MODELS`` (``resnet18``, ``resnet34``, ``resnet50``,
      ``standard_cnn``, ``dbvae``).
    num_classes: number of logits (1 for binary tasks).
    rngs: parameter initialisation keys; defaults to ``nnx.Rngs(0)``.
    **kwargs: model options, e.g. ``small_inputs``, ``width``, ``head_dims`` (ResNets),
      ``filters``, ``image_size`` (standard_cnn, dbvae), ``latent_dim``, ``encoder``
      (dbvae); ``conv_impl`` for all (``"auto"``, ``"onednn"``, ``"fast"``, ``"xla"``).

  Returns:
    The model, in training mode (call ``model.eval()`` for inference).
  """
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}.")
  if int(num_classes) != num_classes or num_classes < 1:
    raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
  try:
    # Every new parameter shape compiles its own small initialiser program on first
    # use; with the partitionable threefry PRNG (JAX's default) those compile several
    # times slower on CPU (seconds per shape for a ResNet). Initial values come from
    # the non-partitionable variant instead: still deterministic from the seed, and
    # the global setting is restored on exit.
    with jax.threefry_partitionable(False):
      return MODELS[name](int(num_classes), rngs=rngs or nnx.Rngs(0), **kwargs)
  except TypeError as e:
    if "unexpected keyword argument" not in str(e):
      raise
    raise TypeError(f"get_model({name!r}): {e}. Check the model options "
                    "(config.model fields).") from e


__all__ = ["MODELS", "get_model", "ResNet", "BasicBlock", "Bottleneck", "StandardCNN",
           "DBVAE", "binary_logit", "eval_fn", "logits"]
