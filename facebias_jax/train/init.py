"""Where a run's first weights come from: fresh, torchvision's, or another run's.

``config.model.init_from`` (empty: a fresh model from ``config.seed``):

* a torchvision state dict (``.pth``/``.pt`` through ``torch.load(weights_only=True)``,
  or ``.safetensors``): the backbone of an ImageNet-pretrained ResNet
  (``models.torch_import.from_torchvision``). Its weights expect torchvision's 7x7 stem
  (``config.model.small_inputs=False``) and ImageNet normalisation
  (``config.data.normalize="imagenet"``); anything else is an error naming the option;
* another run's workdir (its ``config.json`` and checkpoints): that run's selected
  checkpoint (``report.json``'s ``selection.step``, else the newest).

The head is re-initialised (from ``config.seed``) for ``num_classes`` unless
``config.model.init_head`` is True and its shapes match. Every other variable must
match in shape; a mismatch is an error listing each one.

``config.train.backbone_lr_scale`` (``steps.make_optimizer``) then trains the backbone
at a fraction of the head's learning rate (0: a linear probe).
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
from absl import logging
from flax import nnx

from facebias_jax import runs
from facebias_jax.models import RESNETS
from facebias_jax.models import torch_import
from facebias_jax.train.steps import HEAD, is_head_path


def check_init_from(config: Any) -> None:
  """Refuses an ``init_from`` that cannot start this run, before anything is written.

  Raises:
    FileNotFoundError: no such file or run workdir.
    ValueError: torchvision weights with a non-ResNet model, the small-input stem or
      another normalisation than ImageNet's (the message names the option to change).
  """
  if not config.model.get("init_from"):
    return
  source = os.path.expanduser(str(config.model.init_from))
  if os.path.isdir(source):
    return
  if not os.path.isfile(source):
    raise FileNotFoundError(f"config.model.init_from={source!r} is neither a file (a "
                            "torchvision .pth/.safetensors state dict) nor a run workdir")
  name = config.model.name
  if name not in RESNETS:
    raise ValueError(f"config.model.init_from is a torchvision state dict, which only the "
                     f"ResNets take; config.model.name={name!r} (use one of {sorted(RESNETS)}, "
                     "or a run workdir as init_from)")
  if config.model.get("small_inputs", False):
    raise ValueError("config.model.init_from holds torchvision weights, whose stem is a 7x7 "
                     "stride-2 conv with max-pool: set config.model.small_inputs=False (and "
                     "train at 128-224 px)")
  if config.data.normalize != "imagenet":
    raise ValueError("torchvision weights were trained on ImageNet-normalised inputs: set "
                     f"config.data.normalize='imagenet' (got {config.data.normalize!r})")


def _source_model(config: Any) -> tuple[nnx.Module, str]:
  """The model whose weights start the run, and a description of where it came from."""
  check_init_from(config)
  source = os.path.expanduser(str(config.model.init_from))
  if os.path.isdir(source):
    run = runs.load_run(source, step=runs.selected_step(source))
    return run.model, f"run {source} (step {run.step})"
  _, kwargs = runs.model_kwargs(config)
  head = None if config.model.get("init_head", False) else "reinit"
  try:
    model = torch_import.from_torchvision(source, arch=config.model.name, head=head,
                                          rngs=nnx.Rngs(int(config.seed)), **kwargs)
  except ValueError as e:
    if head is not None:
      raise
    raise ValueError(f"{e} Set config.model.init_head=False to start a fresh head.") from e
  return model, f"torchvision weights {source}"


def initialize_from(config: Any, model: nnx.Module) -> str | None:
  """Overwrites ``model``'s weights from ``config.model.init_from`` (in place).

  Args:
    config: the training config.
    model: the freshly built model (its head stays fresh unless ``init_head``).

  Returns:
    Where the weights came from, or None when ``init_from`` is empty.

  Raises:
    FileNotFoundError / ValueError: a missing source, or options that do not fit its
      weights (the message names the option).
  """
  if not config.model.get("init_from"):
    return None
  source, where = _source_model(config)
  keep_head = bool(config.model.get("init_head", False))
  target = nnx.state(model)
  loaded = dict(nnx.to_flat_state(nnx.state(source)))
  mismatched, copied = [], 0
  updates = {}
  for path, variable in nnx.to_flat_state(target):
    if is_head_path(path) and not keep_head:
      continue
    key = "/".join(str(p) for p in path)
    other = loaded.get(path)
    if other is None:
      mismatched.append(f"{key}: not in {where}")
      continue
    value, current = other.get_value(), variable.get_value()
    if value.shape != current.shape:
      mismatched.append(f"{key}: {where} has {tuple(value.shape)}, the model "
                        f"{tuple(current.shape)}")
      continue
    updates[path] = jnp.asarray(value, current.dtype)
    copied += 1
  if mismatched:
    hint = (" (the head: set config.model.init_head=False)"
            if all(m.startswith(HEAD) for m in mismatched) else "")
    raise ValueError(f"config.model.init_from: the model does not fit {where}{hint}: "
                     + "; ".join(mismatched[:12]) + (" ..." if len(mismatched) > 12 else ""))
  for path, variable in nnx.to_flat_state(target):
    if path in updates:
      variable.set_value(updates[path])
  nnx.update(model, target)
  logging.info("Initialised %d variables of %s from %s", copied, config.model.name, where)
  return where
