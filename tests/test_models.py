"""Tests of the model zoo: shapes, the feature-map/head contract, BatchNorm modes, DB-VAE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facebias_jax.models import MODELS, get_model

SIZE = 32
# Tiny variants of every registered model (resnet50 is checked abstractly below). They
# share layer shapes where possible: on CPU, initialising each new parameter shape costs
# a PRNG compilation, which dominates these tests' runtime.
TINY = {
    "standard_cnn": ("standard_cnn", dict(image_size=SIZE, filters=4, hidden_dim=16)),
    "dbvae": ("dbvae", dict(image_size=SIZE, filters=4, hidden_dim=16, latent_dim=6)),
    "dbvae_resnet": ("dbvae", dict(image_size=SIZE, filters=4, latent_dim=6,
                                   encoder="resnet18", encoder_kwargs=dict(width=0.125))),
    "resnet18_small_stacked": ("resnet18", dict(width=0.125, small_inputs=True,
                                                head_dims=(5, 7))),
    "resnet34": ("resnet34", dict(width=0.125)),
}


def _build(key, num_classes=2):
  name, kwargs = TINY[key]
  return get_model(name, num_classes, rngs=nnx.Rngs(1), **kwargs)


@pytest.fixture(scope="module")
def images():
  return jnp.asarray(np.random.RandomState(0).rand(2, SIZE, SIZE, 3), jnp.float32)


@pytest.fixture(scope="module")
def models():
  return {key: _build(key) for key in TINY}


def test_registry_names_and_unknown_name():
  assert {"resnet18", "resnet34", "resnet50", "standard_cnn", "dbvae"} <= set(MODELS)
  with pytest.raises(ValueError, match="valid names: dbvae, resnet18, resnet34, resnet50"):
    get_model("vgg16")
  with pytest.raises(TypeError, match="get_model\\('resnet18'\\).*latent_dim"):
    get_model("resnet18", latent_dim=3)
  with pytest.raises(ValueError, match="num_classes"):
    get_model("resnet18", 0)


@pytest.mark.parametrize("key", list(TINY))
def test_shapes_finite_and_feature_map_contract(models, images, key):
  model = models[key]
  model.eval()
  logits, aux = model(images)
  assert logits.shape == (2, 2)
  fmap = aux["feature_map"]
  assert fmap.ndim == 4 and fmap.shape[0] == 2
  assert aux["pre_logits"].shape[0] == 2 and aux["pre_logits"].ndim == 2
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in [logits, *aux.values()])
  np.testing.assert_allclose(model.feature_map(images), fmap, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(model.logits_from_feature_map(fmap), logits, rtol=1e-5,
                             atol=1e-6)


def test_feature_map_shapes(models, images):
  assert models["standard_cnn"](images)[1]["feature_map"].shape == (2, 2, 2, 24)
  assert models["standard_cnn"](images)[1]["pre_logits"].shape == (2, 16)
  assert models["resnet34"](images)[1]["feature_map"].shape == (2, 1, 1, 64)
  small = models["resnet18_small_stacked"](images)[1]
  assert small["feature_map"].shape == (2, 4, 4, 64)
  np.testing.assert_allclose(small["pre_logits"], small["feature_map"].mean((1, 2)),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("key", ["resnet34", "resnet18_small_stacked", "dbvae_resnet"])
def test_linear_head_gives_cam_identity(models, images, key):
  """For GAP + linear heads: mean over space of (fmap @ w) + b == logits."""
  model = models[key]
  model.eval()
  logits, aux = model(images)
  w, b = model.linear_head()
  assert w.shape == (aux["feature_map"].shape[-1], 2) and b.shape == (2,)
  cam_logits = jnp.mean(aux["feature_map"] @ w, axis=(1, 2)) + b
  np.testing.assert_allclose(cam_logits, logits, rtol=1e-4, atol=1e-5)


def test_stacked_head_layers(models):
  head = models["resnet18_small_stacked"].head
  assert [(l.in_features, l.out_features) for l in head.layers] == [(64, 5), (5, 7), (7, 2)]
  assert head.hidden_dims == (5, 7)


@pytest.mark.parametrize("key", ["standard_cnn", "dbvae"])
def test_linear_head_raises_for_flattening_heads(models, key):
  with pytest.raises(ValueError, match="global average pooling.*method='gradcam'"):
    models[key].linear_head()


def test_train_mode_uses_batch_stats_and_updates_them(models, images):
  model = models["resnet34"]
  model.eval()
  eval_logits, _ = model(images)
  before = np.asarray(model.bn1.mean[...])
  model(images)
  np.testing.assert_array_equal(model.bn1.mean[...], before)  # eval: stats frozen
  model.train()
  train_logits, _ = model(images)
  assert not np.allclose(train_logits, eval_logits)
  assert not np.allclose(model.bn1.mean[...], before)  # train: running stats move
  model.eval()


def test_resnet50_abstract_shapes():
  model = nnx.eval_shape(lambda: get_model("resnet50", 3))
  x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  logits, aux = nnx.eval_shape(lambda m, im: m(im), model, x)
  assert logits.shape == (2, 3)
  assert aux["feature_map"].shape == (2, 2, 2, 2048)
  assert aux["pre_logits"].shape == (2, 2048)
  assert model.head.layers[0].kernel.shape == (2048, 3)


def test_standard_cnn_checks_image_size(models):
  with pytest.raises(ValueError, match="image_size=16"):
    models["standard_cnn"](jnp.zeros((1, 16, 16, 3)))
  with pytest.raises(ValueError, match="multiple of 16"):
    get_model("standard_cnn", image_size=40)


def test_dbvae_outputs_and_sampling(models, images):
  model = models["dbvae"]
  model.eval()
  logits, aux = model(images, rngs=None)
  for name in ("mu", "logvar", "z"):
    assert aux[name].shape == (2, 6)
  np.testing.assert_array_equal(aux["z"], aux["mu"])
  rec = aux["reconstruction"]
  assert rec.shape == images.shape
  assert float(rec.min()) >= 0.0 and float(rec.max()) <= 1.0
  z1 = model(images, rngs=jax.random.key(1))[1]["z"]
  z1_again = model(images, rngs=jax.random.key(1))[1]["z"]
  z2 = model(images, rngs=nnx.Rngs(sample=2))[1]["z"]
  np.testing.assert_array_equal(z1, z1_again)
  assert not np.allclose(z1, aux["mu"]) and not np.allclose(z1, z2)
  enc_logits, mu, logvar, fmap = model.encode(images)
  np.testing.assert_allclose(enc_logits, logits, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(mu, aux["mu"], rtol=1e-6, atol=1e-6)
  assert logvar.shape == (2, 6) and fmap.shape == aux["feature_map"].shape
  assert model.decode(mu).shape == images.shape


def test_dbvae_under_jit_with_key(models, images):
  model = models["dbvae"]

  @nnx.jit
  def forward(m, x, key):
    return m(x, rngs=key)[1]["z"]

  z_a = forward(model, images, jax.random.key(3))
  z_b = forward(model, images, jax.random.key(4))
  assert z_a.shape == (2, 6) and not np.allclose(z_a, z_b)


def test_dbvae_rejects_unknown_encoder():
  with pytest.raises(ValueError, match="valid: standard_cnn, resnet18"):
    get_model("dbvae", encoder="vit")
