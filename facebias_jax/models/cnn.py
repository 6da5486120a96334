"""The "standard CNN" face classifier of the MIT 6.S191 debiasing lab.

Four stride-2 convolutions (``base * (1, 2, 4, 6)`` filters, kernels 5, 5, 3, 3, 'SAME'
padding, each followed by ReLU then BatchNorm as in the lab's Keras model), flatten,
``Dense(512)`` + ReLU, ``Dense(num_classes)``. At 64 px the last feature map is
``[B, 4, 4, 6 * base]`` (``[B, 4, 4, 72]`` for the default ``filters=12``).

Because the head flattens (it is not global average pooling + linear), ``linear_head()``
raises; use Grad-CAM style methods. ``aux["pre_logits"]`` is the 512-d hidden layer, i.e.
the input of the final Dense layer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from facebias_jax.models.heads import not_linear_head_error
from facebias_jax.ops import conv as conv_lib

# (filter multiplier, kernel size) of the four conv blocks, from the lab's model.
_CONV_BLOCKS = ((1, 5), (2, 5), (4, 3), (6, 3))
_DOWNSAMPLE = 2 ** len(_CONV_BLOCKS)
# Keras BatchNormalization defaults (the lab's framework): momentum 0.99, epsilon 1e-3.
_BN_MOMENTUM = 0.99
_BN_EPSILON = 1e-3


def check_image_size(image_size: int, model_name: str) -> int:
  """Validates an image size for the 4x stride-2 conv stack (divisible by 16).

  Args:
    image_size: input height = width in pixels.
    model_name: shown in the error message.

  Returns:
    The spatial size of the last feature map, ``image_size // 16``.
  """
  if int(image_size) != image_size or image_size < _DOWNSAMPLE or image_size % _DOWNSAMPLE:
    raise ValueError(f"{model_name}: image_size={image_size!r} must be a positive multiple "
                     f"of {_DOWNSAMPLE} (e.g. 32, 64, 128).")
  return int(image_size) // _DOWNSAMPLE


def check_input_shape(images: jnp.ndarray, image_size: int, model_name: str) -> None:
  """Raises ValueError unless ``images`` is ``[B, image_size, image_size, 3]``.

  Models that flatten their feature map (or decode back to pixels) are built for one
  input size; any other size would fail deep inside a matmul with a cryptic shape.

  Args:
    images: the model input.
    image_size: the side the model was built for.
    model_name: registry name shown in the message, e.g. ``"standard_cnn"``.
  """
  if images.ndim != 4 or images.shape[1:] != (image_size, image_size, 3):
    size = f"image_size={images.shape[1]}" if images.ndim == 4 else "your image size"
    raise ValueError(
        f"{model_name} expects images [B, {image_size}, {image_size}, 3], got "
        f"{tuple(images.shape)}; build it with {size} "
        f"(get_model({model_name!r}, image_size=...)) or resize the inputs.")


class ConvStack(nnx.Module):
  """The lab's four conv blocks: Conv (stride 2, 'SAME') -> ReLU -> BatchNorm.

  Args:
    filters: base filter count; the blocks have ``filters * (1, 2, 4, 6)`` channels.
    in_channels: input channels (3 for RGB).
    conv_impl: the convolution choice (``facebias_jax.ops.conv``).
    rngs: parameter initialisation keys.
  """

  def __init__(self, filters: int = 12, in_channels: int = 3, *, conv_impl: str = "auto",
               rngs: nnx.Rngs):
    if filters <= 0:
      raise ValueError(f"filters must be positive, got {filters}.")
    self.convs = nnx.List()
    self.norms = nnx.List()
    channels = in_channels
    for mult, kernel in _CONV_BLOCKS:
      out = filters * mult
      self.convs.append(nnx.Conv(channels, out, (kernel, kernel), strides=(2, 2),
                                 padding="SAME", rngs=rngs,
                                 conv_general_dilated=conv_lib.conv_fn(conv_impl)))
      # XLA's BatchNorm, not oneDNN's (ops.batchnorm): XLA fuses the ReLU before it
      # into its statistics pass and the ReLU's mask into its gradient, which beat a
      # separate oneDNN call here (5% slower steps at batch 256, docs/performance.md).
      self.norms.append(nnx.BatchNorm(out, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                                      rngs=rngs))
      channels = out
    self.out_channels = channels

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    for conv, norm in zip(self.convs, self.norms):
      x = norm(jax.nn.relu(conv(x)))
    return x


class StandardCNN(nnx.Module):
  """MIT 6.S191 standard CNN classifier returning ``(logits, aux)``.

  Args:
    num_classes: number of logits (1 for binary tasks).
    filters: base filter count (12 in the lab).
    hidden_dim: width of the hidden dense layer (512 in the lab).
    image_size: input height = width; fixed because the head flattens the feature map.
    conv_impl: the convolution choice (``facebias_jax.ops.conv``).
    rngs: parameter initialisation keys.
  """

  def __init__(self, num_classes: int = 1, *, filters: int = 12, hidden_dim: int = 512,
               image_size: int = 64, conv_impl: str = "auto", rngs: nnx.Rngs):
    self.image_size = int(image_size)
    self.num_classes = int(num_classes)
    side = check_image_size(image_size, "standard_cnn")
    self.encoder = ConvStack(filters, conv_impl=conv_impl, rngs=rngs)
    self.hidden = nnx.Linear(side * side * self.encoder.out_channels, hidden_dim, rngs=rngs)
    self.out = nnx.Linear(hidden_dim, num_classes, rngs=rngs)

  def feature_map(self, images: jnp.ndarray) -> jnp.ndarray:
    """Last conv block output ``[B, image_size/16, image_size/16, 6 * filters]``."""
    check_input_shape(images, self.image_size, "standard_cnn")
    return self.encoder(images)

  def _head(self, fmap_bhwc: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    hidden = jax.nn.relu(self.hidden(fmap_bhwc.reshape(fmap_bhwc.shape[0], -1)))
    return self.out(hidden), hidden

  def logits_from_feature_map(self, fmap_bhwc: jnp.ndarray) -> jnp.ndarray:
    """Flatten -> Dense + ReLU -> Dense: logits ``[B, num_classes]``."""
    return self._head(fmap_bhwc)[0]

  def linear_head(self) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Always raises: the head flattens into an MLP, it is not GAP + linear."""
    raise not_linear_head_error(
        "standard_cnn", "flattens the feature map into a two-layer MLP")

  def __call__(self, images: jnp.ndarray) -> tuple[jnp.ndarray, dict[str, Any]]:
    """Classifies ``images`` float32 ``[B, H, W, 3]``.

    Returns:
      ``(logits [B, num_classes], aux)`` with ``aux["feature_map"]`` (last conv block)
      and ``aux["pre_logits"]`` (the 512-d hidden layer feeding the final Dense).
    """
    fmap = self.feature_map(images)
    logits, hidden = self._head(fmap)
    return logits, {"feature_map": fmap, "pre_logits": hidden}
