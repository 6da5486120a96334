"""Losses for the classifiers and the DB-VAE; each returns ``(loss, {name: value})``.

Also the pieces of Group DRO's objective: per-group batch means (``group_means``) and
the exponentiated-gradient update of the group weights (``group_dro_update``).

Per-example weights (``weights``, e.g. the pipeline's padding ``mask``) are
supported everywhere: an example with weight 0 contributes nothing and the mean
is taken over the total weight, so a padded batch gives the same loss as the
unpadded one.

The DB-VAE loss follows Amini et al. (AIES 2019) and the MIT 6.S191 lab:
``classification + kl_weight * KL + reconstruction``, with the VAE part applied
only to face examples (a non-face has no face to reconstruct). Unlike the lab,
which averages ``face_indicator * vae_loss`` over the whole batch (so its VAE
term shrinks with the fraction of faces), the VAE term here is the mean over the
*face* examples of the batch, and 0 when the batch holds none.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]


def _weighted_mean(values: jax.Array, weights: jax.Array | None) -> jax.Array:
  """Mean of ``values`` [B] under ``weights`` [B]; 0 (not NaN) when all weights are 0."""
  if weights is None:
    return jnp.mean(values)
  weights = jnp.asarray(weights, values.dtype).reshape(values.shape)
  total = jnp.sum(weights)
  # `where` on the denominator too: keeps the gradient finite when total == 0.
  safe_total = jnp.where(total > 0, total, 1.0)
  return jnp.where(total > 0, jnp.sum(values * weights) / safe_total, 0.0)


def sigmoid_cross_entropy_per_example(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Numerically stable ``-[y log s(x) + (1-y) log(1-s(x))]`` per example, [B]."""
  logits = logits.reshape(logits.shape[0])
  labels = labels.reshape(logits.shape[0]).astype(logits.dtype)
  return jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def softmax_cross_entropy_per_example(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """``-log softmax(logits)[label]`` per example, [B]."""
  labels = labels.reshape(logits.shape[0]).astype(jnp.int32)
  return -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), labels[:, None],
                              axis=-1)[:, 0]


def correct_predictions(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """1.0 where the prediction is right, [B]: ``logit > 0`` for one logit, else argmax."""
  if logits.ndim == 2 and logits.shape[-1] > 1:
    predicted = jnp.argmax(logits, axis=-1)
  else:
    predicted = (logits.reshape(logits.shape[0]) > 0).astype(jnp.int32)
  return (predicted == labels.reshape(logits.shape[0]).astype(jnp.int32)).astype(logits.dtype)


def classification_per_example(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Sigmoid cross-entropy for one logit [B, 1], softmax cross-entropy for several."""
  if logits.ndim != 2:
    raise ValueError(f"logits must be [batch, num_classes], got shape {logits.shape}")
  if logits.shape[-1] == 1:
    return sigmoid_cross_entropy_per_example(logits, labels)
  return softmax_cross_entropy_per_example(logits, labels)


def _mean_loss(per_example: jax.Array, logits: jax.Array, labels: jax.Array,
               weights: jax.Array | None) -> tuple[jax.Array, Metrics]:
  loss = _weighted_mean(per_example, weights)
  return loss, {"loss": loss,
                "accuracy": _weighted_mean(correct_predictions(logits, labels), weights)}


def sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array,
                          weights: jax.Array | None = None) -> tuple[jax.Array, Metrics]:
  """Binary cross-entropy on one logit per example.

  Args:
    logits: float [B, 1] or [B].
    labels: {0, 1} [B].
    weights: optional per-example weights [B] (0 = ignore, e.g. padding).

  Returns:
    ``(loss, {"loss", "accuracy"})``, both weighted means over the batch.
  """
  return _mean_loss(sigmoid_cross_entropy_per_example(logits, labels), logits, labels,
                    weights)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array,
                          weights: jax.Array | None = None) -> tuple[jax.Array, Metrics]:
  """Multi-class cross-entropy.

  Args:
    logits: float [B, K].
    labels: int class ids [B].
    weights: optional per-example weights [B].

  Returns:
    ``(loss, {"loss", "accuracy"})``.
  """
  return _mean_loss(softmax_cross_entropy_per_example(logits, labels), logits, labels,
                    weights)


def classification_loss(logits: jax.Array, labels: jax.Array,
                        weights: jax.Array | None = None) -> tuple[jax.Array, Metrics]:
  """Sigmoid cross-entropy for one logit, softmax cross-entropy for several."""
  return _mean_loss(classification_per_example(logits, labels), logits, labels, weights)


def group_means(values: jax.Array, group: jax.Array, mask: jax.Array,
                num_groups: int) -> tuple[jax.Array, jax.Array]:
  """Mean of ``values`` [B] within every group of the batch.

  Args:
    values: per-example values [B].
    group: int group codes [B] in ``[0, num_groups)``.
    mask: [B] bool/0-1, False for padding rows.
    num_groups: G.

  Returns:
    ``(means [G], counts [G])``; a group absent from the batch has mean 0 and count 0.
  """
  onehot = (group.reshape(-1)[:, None] == jnp.arange(num_groups)[None, :])
  onehot = onehot.astype(values.dtype) * jnp.asarray(mask, values.dtype).reshape(-1, 1)
  counts = jnp.sum(onehot, axis=0)
  return (onehot.T @ values.reshape(-1)) / jnp.maximum(counts, 1.0), counts


def group_dro_update(q: jax.Array, group_loss: jax.Array, *, eta: float,
                     adjustment: jax.Array | None = None) -> jax.Array:
  """One exponentiated-gradient step on Group DRO's group weights (Sagawa et al. 2020).

  ``q_g <- q_g exp(eta (loss_g + adj_g))``, then normalised to sum 1. ``adj_g`` is the
  generalisation adjustment ``C / sqrt(n_g)`` (0 without it). A group absent from the
  batch has loss 0, so only its adjustment moves it (as in the authors' code).

  Args:
    q: current weights [G], summing to 1.
    group_loss: the batch's mean loss per group [G] (treated as a constant).
    eta: the step size (the paper's eta_q, 0.01 by default).
    adjustment: [G] or None.

  Returns:
    The new weights [G].
  """
  step = jax.lax.stop_gradient(group_loss)
  if adjustment is not None:
    step = step + adjustment
  # Subtracting the max before exp leaves the normalised result unchanged and keeps a
  # large eta * loss from overflowing.
  logits = jnp.log(q) + eta * step
  weights = jnp.exp(logits - jnp.max(logits))
  return weights / jnp.sum(weights)


def kl_divergence(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, exp(logvar)) || N(0, I)) per example, summed over latent dims: [B]."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)


def reconstruction_error(images: jax.Array, reconstruction: jax.Array,
                         kind: str = "l1") -> jax.Array:
  """Mean absolute (``"l1"``, the lab's choice) or squared (``"l2"``) error per example: [B]."""
  diff = reconstruction.astype(jnp.float32) - images.astype(jnp.float32)
  axes = tuple(range(1, diff.ndim))
  if kind == "l1":
    return jnp.mean(jnp.abs(diff), axis=axes)
  if kind == "l2":
    return jnp.mean(jnp.square(diff), axis=axes)
  raise ValueError(f"reconstruction loss must be 'l1' or 'l2', got {kind!r}")


def vae_loss_per_example(images: jax.Array, reconstruction: jax.Array, mu: jax.Array,
                         logvar: jax.Array, *, kl_weight: float = 0.0005,
                         reconstruction_loss: str = "l1") -> tuple[jax.Array, Metrics]:
  """``kl_weight * KL + reconstruction`` for every example.

  Returns:
    ``(vae [B], {"kl": [B], "recon": [B]})``.
  """
  kl = kl_divergence(mu, logvar)
  recon = reconstruction_error(images, reconstruction, reconstruction_loss)
  return kl_weight * kl + recon, {"kl": kl, "recon": recon}


def dbvae_loss(logits: jax.Array, labels: jax.Array, images: jax.Array,
               aux: Mapping[str, jax.Array], *, vae_mask: jax.Array,
               weights: jax.Array | None = None, kl_weight: float = 0.0005,
               reconstruction_loss: str = "l1") -> tuple[jax.Array, Metrics]:
  """DB-VAE loss: mean classification loss + mean VAE loss over the face examples.

  Args:
    logits: [B, K] classifier output of the encoder.
    labels: [B] class labels.
    images: [B, H, W, 3] the inputs the decoder reconstructs (range of ``aux["reconstruction"]``).
    aux: model aux dict with ``mu``, ``logvar`` [B, latent] and ``reconstruction``.
    vae_mask: [B] bool/0-1, True for examples whose VAE loss counts (faces).
    weights: optional per-example weights [B] (padding); multiplies both terms.
    kl_weight: weight of the KL term.
    reconstruction_loss: ``"l1"`` or ``"l2"``.

  Returns:
    ``(loss, metrics)`` with metrics ``loss``, ``accuracy``, ``class_loss``,
    ``vae_loss``, ``kl`` and ``recon`` (the last three averaged over faces).
  """
  class_loss, metrics = classification_loss(logits, labels, weights)
  vae, parts = vae_loss_per_example(images, aux["reconstruction"], aux["mu"], aux["logvar"],
                                    kl_weight=kl_weight,
                                    reconstruction_loss=reconstruction_loss)
  face_weights = jnp.asarray(vae_mask, vae.dtype).reshape(vae.shape)
  if weights is not None:
    face_weights = face_weights * jnp.asarray(weights, vae.dtype).reshape(vae.shape)
  vae_loss = _weighted_mean(vae, face_weights)
  loss = class_loss + vae_loss
  return loss, {
      "loss": loss,
      "accuracy": metrics["accuracy"],
      "class_loss": class_loss,
      "vae_loss": vae_loss,
      "kl": _weighted_mean(parts["kl"], face_weights),
      "recon": _weighted_mean(parts["recon"], face_weights),
  }
