"""Tiny hand-built NNX models implementing the Models interface, for the CAM tests.

Known answers need models whose feature maps and heads we control:

* :class:`GapLinearNet` -- conv + BatchNorm + ReLU, then global average pooling and a
  chain of linear layers (the ResNet head shape): CAM invariants hold exactly.
* :class:`FlattenHeadNet` -- flattens the feature map into a Linear layer (like the
  standard CNN): no linear head, CAM must refuse it.
* :class:`IdentityFeatureNet` -- the feature map *is* the image and the head reads the
  red channel, so the ideal map of any image is its red channel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def random_init(make_model, *, seed: int = 0, std: float = 0.3):
  """Builds ``make_model()`` with NumPy random weights, compiling nothing.

  Eager NNX initialisation compiles one small XLA program per parameter shape, which
  costs seconds per model on a busy 2-core machine; the CAM tests hold for any
  weights. BatchNorm variances/scales are made positive (``>= 0.5``).
  """
  graphdef, state = nnx.split(nnx.eval_shape(make_model))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(path[-2:])
    if "var" in name or "scale" in name:
      return rng.uniform(0.5, 2.0, leaf.shape).astype(leaf.dtype)
    return rng.normal(0.0, std, leaf.shape).astype(leaf.dtype)

  return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


class GapLinearNet(nnx.Module):
  """conv(3x3, stride 2) -> BatchNorm -> ReLU -> GAP -> Linear chain.

  Build with :func:`gap_linear_net` (random weights and BatchNorm statistics, so eval
  mode differs visibly from batch statistics).
  """

  def __init__(self, num_classes: int = 3, *, channels: int = 6, hidden: int | None = 5):
    rngs = nnx.Rngs(0)
    self.conv = nnx.Conv(3, channels, (3, 3), strides=(2, 2), rngs=rngs)
    self.bn = nnx.BatchNorm(channels, rngs=rngs)
    dims = [channels] + ([hidden] if hidden else []) + [num_classes]
    self.head = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])

  def feature_map(self, images):
    return nnx.relu(self.bn(self.conv(images)))

  def logits_from_feature_map(self, fmap):
    x = fmap.mean(axis=(1, 2))
    for layer in self.head:
      x = layer(x)
    return x

  def linear_head(self):
    w, b = self.head[0].kernel[...], self.head[0].bias[...]
    for layer in self.head[1:]:
      w, b = w @ layer.kernel[...], b @ layer.kernel[...] + layer.bias[...]
    return w, b

  def __call__(self, images):
    fmap = self.feature_map(images)
    return self.logits_from_feature_map(fmap), {"feature_map": fmap,
                                                "pre_logits": fmap.mean(axis=(1, 2))}


class FlattenHeadNet(nnx.Module):
  """conv -> ReLU -> flatten -> Linear: a head that is not GAP + linear."""

  def __init__(self, num_classes: int = 1, *, image_size: int = 16, channels: int = 4):
    rngs = nnx.Rngs(0)
    self.conv = nnx.Conv(3, channels, (3, 3), strides=(2, 2), rngs=rngs)
    side = image_size // 2
    self.fc = nnx.Linear(side * side * channels, num_classes, rngs=rngs)

  def feature_map(self, images):
    return nnx.relu(self.conv(images))

  def logits_from_feature_map(self, fmap):
    return self.fc(fmap.reshape(fmap.shape[0], -1))

  def linear_head(self):
    raise ValueError("flatten_net has no linear head: it flattens the feature map. CAM needs "
                     "a head that is global average pooling followed by linear layers; use "
                     "method='gradcam'.")

  def __call__(self, images):
    fmap = self.feature_map(images)
    return self.logits_from_feature_map(fmap), {"feature_map": fmap}


def gap_linear_net(num_classes: int = 3, *, hidden: int | None = 5, seed: int = 0):
  """A :class:`GapLinearNet` with NumPy random weights (see :func:`random_init`)."""
  return random_init(lambda: GapLinearNet(num_classes, hidden=hidden), seed=seed)


def flatten_head_net(num_classes: int = 1, *, image_size: int = 16, seed: int = 0):
  """A :class:`FlattenHeadNet` with NumPy random weights."""
  return random_init(lambda: FlattenHeadNet(num_classes, image_size=image_size), seed=seed)


class IdentityFeatureNet(nnx.Module):
  """Feature map = the image; one logit = scale * mean(red) + bias."""

  def __init__(self, *, scale: float = 8.0, bias: float = -0.5):
    self.w = nnx.Param(jnp.array([[scale], [0.0], [0.0]], jnp.float32))
    self.b = nnx.Param(jnp.array([bias], jnp.float32))

  def feature_map(self, images):
    return images

  def logits_from_feature_map(self, fmap):
    return fmap.mean(axis=(1, 2)) @ self.w[...] + self.b[...]

  def linear_head(self):
    return self.w[...], self.b[...]

  def __call__(self, images):
    return self.logits_from_feature_map(images), {"feature_map": images}


def hot_spot_images(batch: int = 2, size: int = 16, *, seed: int = 0):
  """Images with a dim random background and one bright red square each.

  Returns:
    ``(images float32 [B, size, size, 3] in [0, 1], centres int [B, 2] (row, col),
    masks bool [B, size, size] of the squares)``.
  """
  rng = np.random.default_rng(seed)
  images = rng.uniform(0.0, 0.1, (batch, size, size, 3)).astype(np.float32)
  masks = np.zeros((batch, size, size), bool)
  centres = rng.integers(3, size - 3, (batch, 2))
  for i, (r, c) in enumerate(centres):
    masks[i, r - 2:r + 2, c - 2:c + 2] = True
    images[i, r - 2:r + 2, c - 2:c + 2, 0] = 1.0
  return images, centres, masks
