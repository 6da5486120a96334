"""Import torchvision ResNet weights into our NNX ResNets.

``from_torchvision`` accepts a state dict (torch tensors or numpy arrays), a
``.pth``/``.pt`` file (read with ``torch.load(..., weights_only=True)``) or a
``.safetensors`` file (read with the ``safetensors`` package in numpy mode, no torch
needed). It understands ``module.``-prefixed keys (``DataParallel``) and stacked heads
saved from ``nn.Sequential(resnet, nn.Linear(1000, K), ...)`` (keys ``0.conv1.weight``...,
``1.weight``), the layout of the original CAM studies.

Conversions: conv weights OIHW -> HWIO, linear weights (out, in) -> (in, out), BatchNorm
``weight``/``bias``/``running_mean``/``running_var`` -> ``scale``/``bias``/``mean``/``var``.
torch is imported lazily and only here; the library never needs it otherwise.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facebias_jax.models.heads import LinearChain
from facebias_jax.models.resnet import RESNETS, Bottleneck, ResNet

_TORCH_HINT = "pip install torch==2.13.0"
# Keys torch keeps that carry no weights we use.
_IGNORED_SUFFIXES = (".num_batches_tracked",)
_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
_MAX_LISTED = 12


def _require_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(f"Reading PyTorch checkpoints needs torch: {_TORCH_HINT} "
                      "(or convert the file to .safetensors).") from e
  return torch


def _to_numpy(value: Any, key: str) -> np.ndarray:
  if isinstance(value, np.ndarray):
    return value
  if hasattr(value, "detach"):  # a torch tensor; bfloat16 has no numpy dtype
    tensor = value.detach().cpu()
    if tensor.is_floating_point() and tensor.element_size() < 4:
      tensor = tensor.float()
    return tensor.numpy()
  try:
    return np.asarray(value)
  except Exception as e:  # pylint: disable=broad-except
    raise TypeError(f"State dict entry {key!r} is a {type(value).__name__}, "
                    "not an array or tensor.") from e


def load_state_dict(state_dict_or_path: Mapping[str, Any] | str | os.PathLike
                    ) -> dict[str, np.ndarray]:
  """Reads a state dict from a mapping, ``.pth``/``.pt`` or ``.safetensors`` file.

  Args:
    state_dict_or_path: the mapping itself, or a file path. A checkpoint dict wrapping
      the weights under ``"state_dict"`` or ``"model"`` is unwrapped.

  Returns:
    ``{key: numpy array}`` with ``module.`` prefixes and ``num_batches_tracked`` removed.
  """
  if isinstance(state_dict_or_path, (str, os.PathLike)):
    path = os.fspath(state_dict_or_path)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"No checkpoint file at {path!r}.")
    if path.endswith(".safetensors"):
      try:
        from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
      except ImportError as e:
        raise ImportError("Reading .safetensors needs the safetensors package: "
                          "pip install safetensors") from e
      raw = load_file(path)
    elif path.endswith((".pth", ".pt", ".bin", ".ckpt")):
      raw = _require_torch().load(path, map_location="cpu", weights_only=True)
    else:
      raise ValueError(f"Unsupported checkpoint file {path!r}: expected .pth, .pt, .bin, "
                       ".ckpt (torch.save) or .safetensors.")
  else:
    raw = state_dict_or_path
  if not isinstance(raw, Mapping):
    raise TypeError(f"Expected a state dict (mapping of names to tensors), got "
                    f"{type(raw).__name__}.")
  for wrapper in ("state_dict", "model"):
    if wrapper in raw and isinstance(raw[wrapper], Mapping):
      raw = raw[wrapper]
      break
  keys = list(raw)
  # DataParallel / DistributedDataParallel save every key under "module.".
  if keys and all(k.startswith("module.") for k in keys):
    raw = {k[len("module."):]: v for k, v in raw.items()}
  return {k: _to_numpy(v, k) for k, v in raw.items() if not k.endswith(_IGNORED_SUFFIXES)}


HeadLayer = tuple[str, np.ndarray, np.ndarray]  # (torch key prefix, weight, bias)


def split_stacked_head(state: Mapping[str, np.ndarray]
                       ) -> tuple[dict[str, np.ndarray], list[HeadLayer]]:
  """Separates the backbone from the chain of linear head layers.

  Handles a plain torchvision state dict (head = ``fc``) and one saved from
  ``nn.Sequential(resnet, nn.Linear(...), ...)`` (backbone under ``0.``, extra linear
  layers under ``1.``, ``2.``, ...).

  Args:
    state: state dict with numpy values.

  Returns:
    ``(backbone state without fc, [(key prefix, weight (out, in), bias (out,)), ...])``
    in order, the prefix being ``fc``, ``0.fc``, ``1``, ``2``... as in the checkpoint.
  """
  stacked = bool(state) and all(re.match(r"\d+\.", k) for k in state)
  if stacked:
    backbone = {k[2:]: v for k, v in state.items() if k.startswith("0.")}
    extra = {k: v for k, v in state.items() if not k.startswith("0.")}
  else:
    backbone, extra = dict(state), {}
  layers = []
  if "fc.weight" in backbone:
    layers.append(("0.fc" if stacked else "fc", backbone.pop("fc.weight"),
                   backbone.pop("fc.bias", None)))
  indices = sorted({int(k.split(".")[0]) for k in extra})
  if indices and indices != list(range(1, len(indices) + 1)):
    raise ValueError(f"Stacked head modules must be numbered 1, 2, ... after the backbone "
                     f"(0.), got {indices}.")
  for i in indices:
    names = {k.split(".", 1)[1] for k in extra if k.startswith(f"{i}.")}
    if names != {"weight", "bias"}:
      raise ValueError(f"Head module {i} must be an nn.Linear with weight and bias, got "
                       f"keys {sorted(f'{i}.{n}' for n in names)}.")
    layers.append((str(i), extra[f"{i}.weight"], extra[f"{i}.bias"]))
  for name, w, b in layers:
    if w.ndim != 2 or b is None or b.shape != (w.shape[0],):
      raise ValueError(f"Head layer {name} must be a Linear with weight (out, in) and bias "
                       f"(out,), got weight {w.shape} and bias "
                       f"{None if b is None else b.shape}.")
  return backbone, layers


def guess_arch(keys: Sequence[str]) -> str:
  """Names the torchvision ResNet a set of backbone keys looks like (for error hints)."""
  blocks = [len({k.split(".")[1] for k in keys if k.startswith(f"layer{i}.")})
            for i in range(1, 5)]
  bottleneck = any(".conv3." in k for k in keys)
  for name, ctor in RESNETS.items():
    kw = ctor.keywords
    if list(kw["stage_sizes"]) == blocks and (kw["block_cls"] is Bottleneck) == bottleneck:
      return name
  return f"an unknown ResNet ({'bottleneck' if bottleneck else 'basic'} blocks {blocks})"


def _module_pairs(model: ResNet) -> Iterator[tuple[str, nnx.Module, str]]:
  """Yields ``(torch prefix, our module, kind)`` for every conv and BatchNorm."""
  yield "conv1", model.conv1, "conv"
  yield "bn1", model.bn1, "bn"
  for s, stage in enumerate((model.layer1, model.layer2, model.layer3, model.layer4), 1):
    for j, block in enumerate(stage):
      prefix = f"layer{s}.{j}"
      for n in (1, 2, 3):
        if hasattr(block, f"conv{n}"):
          yield f"{prefix}.conv{n}", getattr(block, f"conv{n}"), "conv"
          yield f"{prefix}.bn{n}", getattr(block, f"bn{n}"), "bn"
      if block.downsample_conv is not None:
        yield f"{prefix}.downsample.0", block.downsample_conv, "conv"
        yield f"{prefix}.downsample.1", block.downsample_bn, "bn"


def _expected_backbone(model: ResNet) -> dict[str, tuple[nnx.Variable, str]]:
  """``{torch key: (our variable, kind)}`` for the backbone."""
  expected = {}
  for prefix, module, kind in _module_pairs(model):
    if kind == "conv":
      expected[f"{prefix}.weight"] = (module.kernel, "conv")
    else:
      for torch_name, ours in _BN_NAMES.items():
        expected[f"{prefix}.{torch_name}"] = (getattr(module, ours), "bn")
  return expected


def _list(keys: Sequence[str]) -> str:
  keys = sorted(keys)
  more = f" ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
  return ", ".join(keys[:_MAX_LISTED]) + more


def _resolve_head(layers: list[HeadLayer], head: Any,
                  model_kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
  """Decides whether the checkpoint head is loaded and the model's head options."""
  if isinstance(head, str):
    if head != "reinit":
      raise ValueError(f"head={head!r}: expected None (infer from the checkpoint), a tuple "
                       "of hidden widths, or 'reinit' (fresh head from model_kwargs).")
    return False, dict(model_kwargs)
  if not layers:
    raise ValueError("The state dict has no classification head (no fc.weight); pass "
                     "head='reinit' with num_classes=... to start a fresh head.")
  widths = [int(w.shape[0]) for _, w, _ in layers]
  hidden, num_classes = tuple(widths[:-1]), widths[-1]
  if head is not None and tuple(int(d) for d in head) != hidden:
    raise ValueError(f"head={tuple(head)} but the checkpoint's head has hidden widths "
                     f"{hidden} (linear layers {widths}); pass head=None to infer it or "
                     "head='reinit' to replace it.")
  kwargs = dict(model_kwargs)
  for name, value in (("num_classes", num_classes), ("head_dims", hidden)):
    if name in kwargs and tuple(np.atleast_1d(kwargs[name])) != tuple(np.atleast_1d(value)):
      raise ValueError(f"{name}={kwargs[name]!r} but the checkpoint's head gives {value!r}; "
                       "pass head='reinit' to replace the head with a fresh one.")
    kwargs[name] = value
  return True, kwargs


def _assign(target: nnx.Variable, array: np.ndarray, key: str, kind: str,
            errors: list[str]) -> None:
  """Copies one torch array into ``target`` (converting layout), or records an error."""
  if kind == "conv" and array.ndim == 4:
    value, shown = np.transpose(array, (2, 3, 1, 0)), " (as HWIO {})"
  elif kind == "linear" and array.ndim == 2:
    value, shown = array.T, " (as (in, out) {})"
  else:
    value, shown = array, ""
  current = target.value  # a jax.ShapeDtypeStruct until assigned (abstract model)
  if value.shape != current.shape:
    shown = shown.format(value.shape)
    errors.append(f"{key}: checkpoint {array.shape}{shown} vs model {current.shape}")
    return
  target.value = jnp.asarray(value, dtype=current.dtype)


def from_torchvision(state_dict_or_path: Mapping[str, Any] | str | os.PathLike,
                     arch: str = "resnet18", head: Sequence[int] | str | None = None,
                     **model_kwargs: Any) -> ResNet:
  """Builds one of our ResNets holding torchvision weights.

  Args:
    state_dict_or_path: a state dict (torch tensors or numpy arrays) or a
      ``.pth``/``.pt``/``.safetensors`` path.
    arch: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
    head: ``None`` infers the head from the checkpoint (``fc`` plus any stacked
      ``Sequential`` linear layers; ``num_classes`` is the last layer's width); a tuple
      of hidden widths states the expected stacked head (checked); ``"reinit"`` loads
      only the backbone and builds a fresh head from ``model_kwargs`` (``num_classes``,
      ``head_dims``), for fine-tuning ImageNet weights on a new task.
    **model_kwargs: other ResNet options (``small_inputs``, ``width``...); they must
      agree with the checkpoint's shapes.

  Returns:
    The model in eval mode (call ``model.train()`` to fine-tune).

  Raises:
    ValueError: missing or unexpected keys, or shape mismatches (each key named with
      both shapes).
  """
  if arch not in RESNETS:
    raise ValueError(f"Unknown arch {arch!r}; valid: {', '.join(RESNETS)}.")
  backbone, layers = split_stacked_head(load_state_dict(state_dict_or_path))
  load_head, kwargs = _resolve_head(layers, head, model_kwargs)
  kwargs.setdefault("num_classes", 1)
  rngs = kwargs.pop("rngs", None) or nnx.Rngs(0)
  # Build the model abstractly (shapes only): every loaded weight is overwritten anyway,
  # and eager random init of a ResNet costs far more than reading the checkpoint.
  model = nnx.eval_shape(lambda: RESNETS[arch](rngs=nnx.Rngs(0), **kwargs))
  if not load_head:
    model.head = LinearChain(model.num_features, kwargs.get("head_dims", ()),
                             kwargs["num_classes"], rngs=rngs)

  expected = _expected_backbone(model)
  missing = set(expected) - set(backbone)
  unexpected = set(backbone) - set(expected)
  if missing or unexpected:
    parts = [f"State dict does not match {arch}"]
    if missing:
      parts.append(f"missing keys: {_list(missing)}")
    if unexpected:
      parts.append(f"unexpected keys: {_list(unexpected)}")
    parts.append(f"the checkpoint looks like {guess_arch(list(backbone))}; check arch=")
    raise ValueError("; ".join(parts) + ".")

  errors: list[str] = []
  for key, (target, kind) in expected.items():
    _assign(target, backbone[key], key, kind, errors)
  if load_head:
    for (name, w, b), linear in zip(layers, model.head.layers):
      _assign(linear.kernel, w, f"{name}.weight", "linear", errors)
      _assign(linear.bias, b, f"{name}.bias", "linear", errors)
  if errors:
    raise ValueError(f"Shape mismatch loading {arch} (check arch, width, small_inputs): "
                     + "; ".join(errors) + ".")
  abstract = [p for p, v in nnx.to_flat_state(nnx.state(model))
              if isinstance(v.get_value(), jax.ShapeDtypeStruct)]
  if abstract:  # every variable must have come from the checkpoint or a fresh head
    raise ValueError(f"Checkpoint left {arch} variables unset: {abstract[:_MAX_LISTED]}.")
  model.eval()
  return model
