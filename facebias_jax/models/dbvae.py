"""DB-VAE (Amini et al., AIES 2019): a VAE whose encoder also classifies.

The encoder outputs ``num_classes + 2 * latent_dim`` numbers per image: the class
logit(s), the latent mean ``mu`` and log-variance ``logvar`` (the MIT 6.S191 lab's layout,
where ``z = mu + exp(0.5 * logvar) * eps``). The decoder mirrors the standard CNN:
``Dense -> [s, s, 6f] -> ConvTranspose 4f (k3), 2f (k3), f (k5), 3 (k5)``, all stride 2
with ReLU and a sigmoid output, so reconstructions are in [0, 1] at the input resolution
(``s = image_size // 16``).

Randomness convention: ``model(images, rngs=...)`` takes ``None`` (``z = mu``,
deterministic, for evaluation), a JAX PRNG key (preferred inside ``jit``: pass the
per-step key) or an ``nnx.Rngs`` (its ``sample`` stream, which falls back to
``default``).

``encoder="standard_cnn"`` (default) is the lab's 4-conv encoder; ``encoder="resnet18"``
(or ``resnet34``/``resnet50``) is a small-input ResNet whose GAP features feed one Dense
layer, so its class logit head is GAP + linear and supports CAM (``linear_head()``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from facebias_jax.models.cnn import StandardCNN, check_image_size, check_input_shape
from facebias_jax.models.heads import not_linear_head_error
from facebias_jax.models.resnet import RESNETS
from facebias_jax.ops.transpose import ConvTranspose

ENCODERS = ("standard_cnn", *RESNETS)
# Decoder blocks (filter multiplier, kernel): the encoder's conv stack in reverse.
_DECODER_BLOCKS = ((4, 3), (2, 3), (1, 5))

RngLike = nnx.Rngs | jax.Array | None


def reparameterize(mu: jnp.ndarray, logvar: jnp.ndarray, rngs: RngLike) -> jnp.ndarray:
  """Samples ``z = mu + exp(0.5 * logvar) * eps``; ``rngs=None`` returns ``mu``.

  Args:
    mu: latent means ``[B, latent]``.
    logvar: latent log-variances ``[B, latent]``.
    rngs: ``None``, a JAX PRNG key, or an ``nnx.Rngs`` (``sample`` stream).

  Returns:
    ``z`` with the shape of ``mu``.
  """
  if rngs is None:
    return mu
  key = rngs.sample() if isinstance(rngs, nnx.Rngs) else rngs
  if not isinstance(key, jax.Array):
    raise TypeError(f"rngs must be None, a JAX PRNG key or nnx.Rngs, got {type(rngs)}.")
  eps = jax.random.normal(key, mu.shape, mu.dtype)
  return mu + jnp.exp(0.5 * logvar) * eps


class Decoder(nnx.Module):
  """Latent ``[B, latent]`` -> image ``[B, image_size, image_size, 3]`` in [0, 1].

  Args:
    latent_dim: latent size.
    filters: base filter count (mirrors the encoder's ``filters``).
    image_size: output height = width, a multiple of 16.
    conv_impl: the convolution choice (``facebias_jax.ops.conv``).
    rngs: parameter initialisation keys.
  """

  def __init__(self, latent_dim: int, *, filters: int = 12, image_size: int = 64,
               conv_impl: str = "auto", rngs: nnx.Rngs):
    self.side = check_image_size(image_size, "dbvae decoder")
    self.start_channels = 6 * filters
    self.dense = nnx.Linear(latent_dim, self.side * self.side * self.start_channels,
                            rngs=rngs)
    self.deconvs = nnx.List()
    channels = self.start_channels
    for mult, kernel in _DECODER_BLOCKS:
      self.deconvs.append(ConvTranspose(channels, filters * mult, (kernel, kernel),
                                        strides=(2, 2), padding="SAME", rngs=rngs,
                                        conv_impl=conv_impl))
      channels = filters * mult
    self.to_rgb = ConvTranspose(channels, 3, (5, 5), strides=(2, 2), padding="SAME",
                                rngs=rngs, conv_impl=conv_impl)

  def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
    x = jax.nn.relu(self.dense(z))
    x = x.reshape(z.shape[0], self.side, self.side, self.start_channels)
    for deconv in self.deconvs:
      x = jax.nn.relu(deconv(x))
    return jax.nn.sigmoid(self.to_rgb(x))


class DBVAE(nnx.Module):
  """Debiasing VAE returning ``(logits, aux)``.

  Args:
    num_classes: number of class logits (1 for faces vs non-faces).
    latent_dim: latent size (100 in the paper's lab).
    filters: base filter count of the CNN encoder and of the decoder.
    image_size: input height = width (a multiple of 16), also the reconstruction size.
    encoder: ``"standard_cnn"`` or a ResNet name (``"resnet18"``...; small-input stem).
    hidden_dim: hidden dense width of the CNN encoder's head.
    encoder_kwargs: extra keyword arguments of the ResNet encoder (e.g. ``width``, or
      ``small_inputs=False`` for the ImageNet stem on large images).
    conv_impl: the convolution choice of encoder and decoder (``facebias_jax.ops.conv``).
    rngs: parameter initialisation keys.
  """

  def __init__(self, num_classes: int = 1, *, latent_dim: int = 100, filters: int = 12,
               image_size: int = 64, encoder: str = "standard_cnn", hidden_dim: int = 512,
               encoder_kwargs: dict[str, Any] | None = None, conv_impl: str = "auto",
               rngs: nnx.Rngs):
    if latent_dim <= 0:
      raise ValueError(f"latent_dim must be positive, got {latent_dim}.")
    if encoder not in ENCODERS:
      raise ValueError(f"Unknown dbvae encoder {encoder!r}; valid: {', '.join(ENCODERS)}.")
    self.num_classes = int(num_classes)
    self.latent_dim = int(latent_dim)
    self.image_size = int(image_size)
    self.encoder_name = encoder
    check_image_size(image_size, "dbvae")
    num_out = self.num_classes + 2 * self.latent_dim
    if encoder == "standard_cnn":
      if encoder_kwargs:
        raise ValueError(f"encoder_kwargs {sorted(encoder_kwargs)} are only for ResNet "
                         "encoders; use filters/hidden_dim for the standard CNN.")
      self.encoder = StandardCNN(num_out, filters=filters, hidden_dim=hidden_dim,
                                 image_size=image_size, conv_impl=conv_impl, rngs=rngs)
    else:
      # Faces here are 32-128 px: default to the small-input stem (overridable).
      kwargs = {"small_inputs": True, **(encoder_kwargs or {})}
      self.encoder = RESNETS[encoder](num_out, rngs=rngs, conv_impl=conv_impl, **kwargs)
    self.decoder = Decoder(self.latent_dim, filters=filters, image_size=image_size,
                           conv_impl=conv_impl, rngs=rngs)

  def _split(self, out: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    k, d = self.num_classes, self.latent_dim
    return out[:, :k], out[:, k:k + d], out[:, k + d:]

  def feature_map(self, images: jnp.ndarray) -> jnp.ndarray:
    """The encoder's last conv feature map ``[B, h, w, C]``."""
    check_input_shape(images, self.image_size, "dbvae")
    return self.encoder.feature_map(images)

  def logits_from_feature_map(self, fmap_bhwc: jnp.ndarray) -> jnp.ndarray:
    """Class logits ``[B, num_classes]`` from the encoder feature map."""
    return self.encoder.logits_from_feature_map(fmap_bhwc)[:, :self.num_classes]

  def linear_head(self) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The class-logit rows of a ResNet encoder's GAP + linear head.

    Returns:
      ``(w [C, num_classes], b [num_classes])``.

    Raises:
      ValueError: for the standard CNN encoder (its head flattens into an MLP).
    """
    if self.encoder_name == "standard_cnn":
      raise not_linear_head_error(
          "dbvae (encoder='standard_cnn')",
          "flattens the feature map into a two-layer MLP; build it with "
          "encoder='resnet18' for a GAP + linear class head")
    w, b = self.encoder.linear_head()
    return w[:, :self.num_classes], b[:self.num_classes]

  def encode(self, images: jnp.ndarray
             ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Encodes images.

    Args:
      images: float32 ``[B, image_size, image_size, 3]``.

    Returns:
      ``(logits [B, num_classes], mu [B, latent], logvar [B, latent], fmap [B, h, w, C])``.
    """
    fmap = self.feature_map(images)
    logits, mu, logvar = self._split(self.encoder.logits_from_feature_map(fmap))
    return logits, mu, logvar, fmap

  def decode(self, z: jnp.ndarray) -> jnp.ndarray:
    """Decodes latents ``[B, latent]`` into images ``[B, H, W, 3]`` in [0, 1]."""
    return self.decoder(z)

  def __call__(self, images: jnp.ndarray, rngs: RngLike = None
               ) -> tuple[jnp.ndarray, dict[str, Any]]:
    """Classifies, encodes, samples and reconstructs.

    Args:
      images: float32 ``[B, image_size, image_size, 3]``.
      rngs: ``None`` for ``z = mu`` (evaluation), or a JAX key / ``nnx.Rngs`` to sample.

    Returns:
      ``(logits [B, num_classes], aux)``; aux holds ``feature_map``, ``pre_logits``
      (the encoder's input to its last Dense layer), ``mu``, ``logvar``, ``z`` and
      ``reconstruction`` ``[B, H, W, 3]``.
    """
    check_input_shape(images, self.image_size, "dbvae")
    out, enc_aux = self.encoder(images)
    logits, mu, logvar = self._split(out)
    z = reparameterize(mu, logvar, rngs)
    return logits, {
        "feature_map": enc_aux["feature_map"],
        "pre_logits": enc_aux["pre_logits"],
        "mu": mu,
        "logvar": logvar,
        "z": z,
        "reconstruction": self.decode(z),
    }
