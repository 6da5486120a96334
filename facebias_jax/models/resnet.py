"""ResNet-18/34/50 with global average pooling and a linear head, in Flax NNX.

The layout follows torchvision (v1.5: the stride of a bottleneck block sits on its 3x3
conv) so that torchvision weights import one to one (see ``torch_import.py``):
stem conv 7x7/2 + BatchNorm + ReLU + max-pool 3x3/2, four stages of 64/128/256/512
channels (x4 for bottleneck blocks), 1x1 conv + BatchNorm downsampling shortcuts, global
average pooling, then a chain of linear layers (``head_dims``) with no nonlinearity in
between, so the whole head stays affine and CAM applies (``linear_head()``).

Options: ``small_inputs=True`` swaps the stem for a 3x3/1 conv without max-pool (CIFAR
style, for 32-64 px faces); ``width`` scales every channel count (tiny test models).
BatchNorm uses torchvision's epsilon 1e-5 and momentum 0.1 (0.9 in flax's convention).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from facebias_jax.models.heads import LinearChain
from facebias_jax.ops import batchnorm
from facebias_jax.ops import conv as conv_lib
from facebias_jax.ops import pooling

# torchvision's BatchNorm2d(eps=1e-5, momentum=0.1); flax keeps 1 - torch momentum.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
# torchvision initialises convs with kaiming_normal_(mode="fan_out", nonlinearity="relu").
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int, *, rngs: nnx.Rngs,
          conv_impl: str) -> nnx.Conv:
  # Explicit symmetric padding (k // 2) as in torch: 'SAME' would pad stride-2 convs
  # asymmetrically and shift every feature by half a pixel relative to torch weights.
  pad = kernel // 2
  return nnx.Conv(in_ch, out_ch, (kernel, kernel), strides=(stride, stride),
                  padding=((pad, pad), (pad, pad)), use_bias=False,
                  kernel_init=_CONV_INIT, rngs=rngs,
                  conv_general_dilated=conv_lib.conv_fn(conv_impl))


def _bn(channels: int, *, rngs: nnx.Rngs, conv_impl: str) -> batchnorm.BatchNorm:
  # The kernel choice of the convs applies to BatchNorm (and its fused ReLU) too.
  return batchnorm.BatchNorm(channels, impl=conv_impl, momentum=BN_MOMENTUM,
                             epsilon=BN_EPSILON, rngs=rngs)


class _Block(nnx.Module):
  """A residual block, ``relu(residual(x) + shortcut(x))`` (torchvision layout).

  Subclasses build their convs in ``__init__`` (then call :meth:`_init_shortcut`, so
  parameters are created in torchvision's order) and define :meth:`_residual`.
  """

  expansion = 1  # Output channels = expansion * channels.

  def _init_shortcut(self, in_ch: int, out_ch: int, stride: int, rngs: nnx.Rngs,
                     conv_impl: str) -> None:
    # torchvision's `downsample`: only where the identity would not fit.
    if stride != 1 or in_ch != out_ch:
      self.downsample_conv = _conv(in_ch, out_ch, 1, stride, rngs=rngs, conv_impl=conv_impl)
      self.downsample_bn = _bn(out_ch, rngs=rngs, conv_impl=conv_impl)
    else:
      self.downsample_conv = None
      self.downsample_bn = None

  def _shortcut(self, x: jnp.ndarray) -> jnp.ndarray:
    if self.downsample_conv is None:
      return x
    return self.downsample_bn(self.downsample_conv(x))

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return jax.nn.relu(self._residual(x) + self._shortcut(x))


class BasicBlock(_Block):
  """Two 3x3 convs (ResNet-18/34).

  Args:
    in_channels: input channels.
    channels: output channels (``expansion == 1``).
    stride: stride of the first conv and of the shortcut.
    rngs: parameter initialisation keys.
    conv_impl: the convolution choice (``facebias_jax.ops.conv``).
  """

  def __init__(self, in_channels: int, channels: int, stride: int = 1, *, rngs: nnx.Rngs,
               conv_impl: str = "auto"):
    self.conv1 = _conv(in_channels, channels, 3, stride, rngs=rngs, conv_impl=conv_impl)
    self.bn1 = _bn(channels, rngs=rngs, conv_impl=conv_impl)
    self.conv2 = _conv(channels, channels, 3, 1, rngs=rngs, conv_impl=conv_impl)
    self.bn2 = _bn(channels, rngs=rngs, conv_impl=conv_impl)
    self._init_shortcut(in_channels, channels, stride, rngs, conv_impl)

  def _residual(self, x: jnp.ndarray) -> jnp.ndarray:
    y = self.bn1(self.conv1(x), relu=True)
    return self.bn2(self.conv2(y))


class Bottleneck(_Block):
  """1x1 -> 3x3 (strided, torchvision v1.5) -> 1x1 x4 convs (ResNet-50).

  Args:
    in_channels: input channels.
    channels: bottleneck width; the block outputs ``4 * channels``.
    stride: stride of the 3x3 conv and of the shortcut.
    rngs: parameter initialisation keys.
    conv_impl: the convolution choice (``facebias_jax.ops.conv``).
  """

  expansion = 4

  def __init__(self, in_channels: int, channels: int, stride: int = 1, *, rngs: nnx.Rngs,
               conv_impl: str = "auto"):
    out = channels * self.expansion
    self.conv1 = _conv(in_channels, channels, 1, 1, rngs=rngs, conv_impl=conv_impl)
    self.bn1 = _bn(channels, rngs=rngs, conv_impl=conv_impl)
    self.conv2 = _conv(channels, channels, 3, stride, rngs=rngs, conv_impl=conv_impl)
    self.bn2 = _bn(channels, rngs=rngs, conv_impl=conv_impl)
    self.conv3 = _conv(channels, out, 1, 1, rngs=rngs, conv_impl=conv_impl)
    self.bn3 = _bn(out, rngs=rngs, conv_impl=conv_impl)
    self._init_shortcut(in_channels, out, stride, rngs, conv_impl)

  def _residual(self, x: jnp.ndarray) -> jnp.ndarray:
    y = self.bn1(self.conv1(x), relu=True)
    y = self.bn2(self.conv2(y), relu=True)
    return self.bn3(self.conv3(y))


class ResNet(nnx.Module):
  """ResNet classifier returning ``(logits, aux)``.

  Args:
    num_classes: number of logits (1 for binary tasks).
    stage_sizes: residual blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
    block_cls: ``BasicBlock`` or ``Bottleneck``.
    width: multiplier of every channel count (1.0 = torchvision widths).
    small_inputs: 3x3 stride-1 stem without max-pool, for 32-64 px inputs.
    head_dims: hidden widths of a stacked linear head, e.g. ``(1000,)`` for
      ``Linear(C, 1000) -> Linear(1000, num_classes)``; ``()`` is one Linear layer.
    in_channels: input channels (3 for RGB).
    image_size: accepted so every registered model takes the same keyword; ResNets pool
      globally and work at any input size (>= 32 px recommended), so it is only checked.
    conv_impl: the convolution choice of every conv layer (``facebias_jax.ops.conv``:
      ``"auto"``, ``"onednn"``, ``"fast"``, ``"xla"``); parameters do not depend on it.
    rngs: parameter initialisation keys.
  """

  def __init__(self, num_classes: int = 1, *, stage_sizes: Sequence[int],
               block_cls: type[_Block] = BasicBlock, width: float = 1.0,
               small_inputs: bool = False, head_dims: Sequence[int] = (),
               in_channels: int = 3, image_size: int | None = None,
               conv_impl: str = "auto", rngs: nnx.Rngs):
    if width <= 0:
      raise ValueError(f"ResNet width multiplier must be positive, got {width}.")
    if image_size is not None and image_size <= 0:
      raise ValueError(f"image_size must be positive, got {image_size}.")
    if len(stage_sizes) != 4 or any(n <= 0 for n in stage_sizes):
      raise ValueError(f"stage_sizes must be 4 positive block counts, got {stage_sizes}.")
    self.num_classes = int(num_classes)
    self.small_inputs = bool(small_inputs)
    base = max(1, int(round(64 * width)))
    if small_inputs:
      self.conv1 = _conv(in_channels, base, 3, 1, rngs=rngs, conv_impl=conv_impl)
    else:
      self.conv1 = _conv(in_channels, base, 7, 2, rngs=rngs, conv_impl=conv_impl)
    self.bn1 = _bn(base, rngs=rngs, conv_impl=conv_impl)
    self.conv_impl = conv_lib.resolve_impl(conv_impl)  # For the stem's max-pool.
    channels = base
    stages = []
    for i, num_blocks in enumerate(stage_sizes):
      planes = base * 2 ** i
      blocks = nnx.List()
      for j in range(num_blocks):
        stride = 2 if (i > 0 and j == 0) else 1
        blocks.append(block_cls(channels, planes, stride, rngs=rngs, conv_impl=conv_impl))
        channels = planes * block_cls.expansion
      stages.append(blocks)
    # Named as in torchvision (layer1..layer4) so weight import maps names directly.
    self.layer1, self.layer2, self.layer3, self.layer4 = stages
    self.num_features = channels
    self.head = LinearChain(channels, tuple(head_dims), num_classes, rngs=rngs)

  def feature_map(self, images: jnp.ndarray) -> jnp.ndarray:
    """Output of the last stage ``[B, h, w, C]`` (h = H/32, or H/8 with small_inputs)."""
    if images.ndim != 4:
      raise ValueError(f"ResNet expects images [B, H, W, C], got shape {tuple(images.shape)}.")
    x = self.bn1(self.conv1(images), relu=True)
    if not self.small_inputs:
      x = pooling.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)), self.conv_impl)
    for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
      for block in stage:
        x = block(x)
    return x

  def logits_from_feature_map(self, fmap_bhwc: jnp.ndarray) -> jnp.ndarray:
    """Global average pooling then the linear head: logits ``[B, num_classes]``."""
    return self.head(jnp.mean(fmap_bhwc, axis=(1, 2)))

  def linear_head(self) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The head chain composed into ``(w [C, num_classes], b [num_classes])``.

    ``logits == mean_hw(fmap @ w) + b``, so ``fmap @ w`` is the class activation map.
    """
    return self.head.compose()

  def __call__(self, images: jnp.ndarray) -> tuple[jnp.ndarray, dict[str, Any]]:
    """Classifies ``images`` float32 ``[B, H, W, 3]``.

    Returns:
      ``(logits [B, num_classes], aux)`` with ``aux["feature_map"]`` (last stage
      output) and ``aux["pre_logits"]`` (its global average ``[B, C]``).
    """
    fmap = self.feature_map(images)
    pooled = jnp.mean(fmap, axis=(1, 2))
    return self.head(pooled), {"feature_map": fmap, "pre_logits": pooled}


# Size aliases (flax imagenet/models.py style); the registry is RESNETS.
ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)

RESNETS = {"resnet18": ResNet18, "resnet34": ResNet34, "resnet50": ResNet50}
