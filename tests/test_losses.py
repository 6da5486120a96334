"""Tests of train/losses.py: values against hand computations, masking, no NaN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facebias_jax.train import losses


def _np_sigmoid_ce(x, y):
  p = 1.0 / (1.0 + np.exp(-x))
  return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_sigmoid_cross_entropy_matches_hand_computation_and_ignores_padding():
  logits = np.array([[2.0], [-1.0], [0.5], [30.0]], np.float32)
  labels = np.array([1, 0, 0, 1])
  loss, metrics = losses.sigmoid_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  expected = _np_sigmoid_ce(logits[:, 0].astype(np.float64), labels).mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert float(metrics["accuracy"]) == 0.75  # 0.5 > 0 predicts 1 for a 0 label.
  # A padded row (weight 0) must not change the loss.
  weights = np.array([1, 1, 1, 0])
  loss_w, m_w = losses.sigmoid_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                             jnp.asarray(weights))
  np.testing.assert_allclose(loss_w, _np_sigmoid_ce(logits[:3, 0], labels[:3]).mean(), rtol=1e-5)
  np.testing.assert_allclose(m_w["accuracy"], 2 / 3, rtol=1e-6)


def test_softmax_cross_entropy_and_dispatch():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
  labels = jnp.array([0, 2])
  loss, metrics = losses.classification_loss(logits, labels)
  lp = np.asarray(jax.nn.log_softmax(logits))
  np.testing.assert_allclose(loss, -(lp[0, 0] + lp[1, 2]) / 2, rtol=1e-6)
  assert float(metrics["accuracy"]) == 0.5
  with pytest.raises(ValueError, match="batch, num_classes"):
    losses.classification_loss(jnp.zeros(3), labels)


def _mixed_batch():
  rng = np.random.default_rng(0)
  b, latent = 4, 3
  return dict(
      logits=rng.normal(size=(b, 1)).astype(np.float32),
      labels=np.array([1, 0, 1, 0]),
      images=rng.uniform(size=(b, 4, 4, 3)).astype(np.float32),
      recon=rng.uniform(size=(b, 4, 4, 3)).astype(np.float32),
      mu=rng.normal(size=(b, latent)).astype(np.float32),
      logvar=rng.normal(size=(b, latent)).astype(np.float32) * 0.3,
      faces=np.array([True, False, True, False]),
  )


def _hand_dbvae(d, kl_weight, faces, weights=None):
  x = d["logits"][:, 0].astype(np.float64)
  ce = _np_sigmoid_ce(x, d["labels"])
  w = np.ones(len(x)) if weights is None else weights.astype(np.float64)
  cls = (ce * w).sum() / w.sum()
  kl = 0.5 * np.sum(np.exp(d["logvar"]) + d["mu"] ** 2 - 1 - d["logvar"], axis=1)
  recon = np.abs(d["recon"] - d["images"]).mean(axis=(1, 2, 3))
  vae = kl_weight * kl + recon
  fw = faces * w
  vae_mean = (vae * fw).sum() / fw.sum() if fw.sum() else 0.0
  return cls + vae_mean, cls, vae_mean


@pytest.mark.parametrize("weights", [None, np.array([1, 1, 0, 1])])
def test_dbvae_loss_mixed_batch_matches_hand_computation(weights):
  d = _mixed_batch()
  aux = {"mu": jnp.asarray(d["mu"]), "logvar": jnp.asarray(d["logvar"]),
         "reconstruction": jnp.asarray(d["recon"])}
  loss, m = losses.dbvae_loss(jnp.asarray(d["logits"]), jnp.asarray(d["labels"]),
                              jnp.asarray(d["images"]), aux, vae_mask=jnp.asarray(d["faces"]),
                              weights=None if weights is None else jnp.asarray(weights),
                              kl_weight=0.1)
  total, cls, vae = _hand_dbvae(d, 0.1, d["faces"], weights)
  np.testing.assert_allclose(loss, total, rtol=1e-5)
  np.testing.assert_allclose(m["class_loss"], cls, rtol=1e-5)
  np.testing.assert_allclose(m["vae_loss"], vae, rtol=1e-5)
  # The VAE term is a mean over the faces, not over the batch (the lab's version
  # would be half of it here) and does not see the non-faces' reconstructions.
  d2 = dict(d, recon=d["recon"].copy())
  d2["recon"][~d["faces"]] = 0.0
  aux2 = dict(aux, reconstruction=jnp.asarray(d2["recon"]))
  loss2, _ = losses.dbvae_loss(jnp.asarray(d["logits"]), jnp.asarray(d["labels"]),
                               jnp.asarray(d["images"]), aux2, vae_mask=jnp.asarray(d["faces"]),
                               weights=None if weights is None else jnp.asarray(weights),
                               kl_weight=0.1)
  np.testing.assert_allclose(loss2, loss, rtol=1e-6)


def test_dbvae_loss_without_faces_is_classification_only_and_finite():
  d = _mixed_batch()
  aux = {"mu": jnp.asarray(d["mu"]), "logvar": jnp.asarray(d["logvar"]),
         "reconstruction": jnp.asarray(d["recon"])}
  no_faces = jnp.zeros(4, bool)

  def f(mu):
    return losses.dbvae_loss(jnp.asarray(d["logits"]), jnp.asarray(d["labels"]),
                             jnp.asarray(d["images"]), dict(aux, mu=mu), vae_mask=no_faces)[0]

  loss = f(aux["mu"])
  cls, _ = losses.sigmoid_cross_entropy(jnp.asarray(d["logits"]), jnp.asarray(d["labels"]))
  np.testing.assert_allclose(loss, cls, rtol=1e-6)
  grad = jax.grad(f)(aux["mu"])
  assert np.all(np.isfinite(grad)) and np.all(grad == 0)


def test_reconstruction_l2_and_bad_kind():
  a = jnp.zeros((2, 2, 2, 3))
  b = jnp.full((2, 2, 2, 3), 0.5)
  np.testing.assert_allclose(losses.reconstruction_error(a, b, "l2"), [0.25, 0.25])
  np.testing.assert_allclose(losses.reconstruction_error(a, b, "l1"), [0.5, 0.5])
  with pytest.raises(ValueError, match="'l1' or 'l2'"):
    losses.reconstruction_error(a, b, "l3")


def test_kl_is_zero_for_standard_normal():
  np.testing.assert_allclose(losses.kl_divergence(jnp.zeros((2, 5)), jnp.zeros((2, 5))), 0.0)
