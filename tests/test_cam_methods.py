"""Tests of facebias_jax.cam.methods: invariants, known answers, targets, jit, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cam_toy_models import (IdentityFeatureNet, flatten_head_net, gap_linear_net,
                             hot_spot_images, random_init)
from facebias_jax import cam
from facebias_jax.cam import methods
from facebias_jax.models import inference

B, SIZE = 4, 16


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(0).uniform(0.0, 1.0, (B, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def multiclass():
  model = gap_linear_net(3, hidden=5)  # stacked Linear(6, 5) -> Linear(5, 3) head
  return model


def _eval_logits(model, images):
  model.eval()
  logits, aux = model(images)
  model.train()
  return np.asarray(logits), np.asarray(aux["feature_map"])


def test_cam_mean_plus_bias_is_the_logit_for_a_stacked_linear_head(multiclass, images):
  targets = np.array([0, 1, 2, 1])
  maps = cam.compute(multiclass, images, "cam", targets, upsample=False)
  logits, fmap = _eval_logits(multiclass, images)
  _, b = multiclass.linear_head()
  assert maps.shape == (B, SIZE // 2, SIZE // 2) and maps.dtype == np.float32
  np.testing.assert_allclose(maps.mean(axis=(1, 2)) + np.asarray(b)[targets],
                             logits[np.arange(B), targets], rtol=1e-5, atol=1e-5)
  # Upsampled maps keep the mean close, though not exactly (bilinear edges).
  up = cam.compute(multiclass, images, "cam", targets)
  assert up.shape == (B, SIZE, SIZE)
  np.testing.assert_allclose(up.mean(axis=(1, 2)), maps.mean(axis=(1, 2)), atol=0.05)


def test_binary_single_logit_targets(images):
  model = gap_linear_net(1, hidden=None, seed=1)
  logits, _ = _eval_logits(model, images)
  _, b = model.linear_head()
  pos = cam.compute(model, images, "cam", 1, upsample=False)
  neg = cam.compute(model, images, "cam", np.zeros(B, int), upsample=False)
  np.testing.assert_allclose(neg, -pos, atol=1e-6)
  np.testing.assert_allclose(pos.mean(axis=(1, 2)) + float(b[0]), logits[:, 0], atol=1e-5)
  np.testing.assert_allclose(neg.mean(axis=(1, 2)) - float(b[0]), -logits[:, 0], atol=1e-5)
  default, used = cam.compute(model, images, "cam", upsample=False, return_targets=True)
  np.testing.assert_array_equal(used, (logits[:, 0] > 0).astype(np.int32))
  np.testing.assert_allclose(default, np.where(used[:, None, None] == 1, pos, neg), atol=1e-6)


def test_gradient_methods_equal_relu_cam_over_hw_on_linear_heads(multiclass, images):
  targets = np.array([2, 0, 1, 2])
  raw = cam.compute(multiclass, images, "cam", targets, upsample=False)
  hw = raw.shape[1] * raw.shape[2]
  for method in ("gradcam", "hirescam", "xgradcam"):
    maps = cam.compute(multiclass, images, method, targets, upsample=False)
    np.testing.assert_allclose(maps * hw, np.maximum(raw, 0.0), atol=1e-4, err_msg=method)
  # Pre-ReLU, Grad-CAM is exactly the CAM times 1 / (h * w).
  multiclass.eval()
  fmap = multiclass.feature_map(images)
  grads = methods.feature_map_gradients(multiclass, fmap, np.asarray(targets, np.int32))
  multiclass.train()
  signed = np.asarray(methods.gradcam(fmap, grads, relu=False))
  np.testing.assert_allclose(signed * hw, raw, atol=1e-4)


@pytest.mark.parametrize("method", methods.METHODS)
def test_every_method_runs_on_a_gap_model(multiclass, images, method):
  maps = cam.compute(multiclass, images, method)
  assert maps.shape == (B, SIZE, SIZE) and maps.dtype == np.float32
  assert np.isfinite(maps).all()
  if method not in ("cam", "eigencam"):
    assert (maps >= 0).all(), "ReLU'd methods return non-negative maps"


@pytest.mark.parametrize("method", methods.METHODS)
def test_hot_spot_known_answer(method):
  images, _, masks = hot_spot_images(2, SIZE)
  maps = cam.compute(IdentityFeatureNet(), images, method, 1)
  peaks = maps.reshape(2, -1).argmax(axis=1)
  assert masks.reshape(2, -1)[np.arange(2), peaks].all(), method
  if method == "cam":  # The CAM of "scale * mean(red)" is scale * red, exactly.
    np.testing.assert_allclose(maps, 8.0 * images[..., 0], rtol=1e-6)


@pytest.mark.parametrize("method", ["gradcam++", "scorecam"])
def test_jit_equals_eager(multiclass, images, method):
  jitted = cam.compute(multiclass, images, method, 1)
  eager = cam.compute(multiclass, images, method, 1, jit=False)
  np.testing.assert_allclose(jitted, eager, rtol=1e-4, atol=1e-6)


def test_scorecam_channel_chunks_do_not_change_the_map(multiclass, images):
  whole = cam.compute(multiclass, images, "scorecam", 1, upsample=False)  # 6 channels
  chunked = cam.compute(multiclass, images, "scorecam", 1, upsample=False, chunk_size=4)
  np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-7)


def test_map_does_not_depend_on_the_other_images(multiclass, images):
  multiclass.train()  # compute must still use running statistics (eval-mode copy).
  together = cam.compute(multiclass, images, "gradcam", 1)
  shuffled = cam.compute(multiclass, images[::-1].copy(), "gradcam", 1)[::-1]
  np.testing.assert_allclose(together, shuffled, atol=1e-6)
  # Batches of 3 (last one padded) give the same maps as the whole batch at once.
  np.testing.assert_allclose(cam.compute(multiclass, images, "gradcam", 1, batch_size=3),
                             together, atol=1e-6)
  assert multiclass.bn.use_running_average is False, "caller's train mode is untouched"


def test_repeated_calls_do_not_recompile(multiclass, images):
  cam.compute(multiclass, images, "layercam")
  before = inference._call_jit._cache_size()
  cam.compute(multiclass, images + 0.5, "layercam", np.array([0, 1, 2, 0]))
  assert inference._call_jit._cache_size() == before


def test_compute_fn_sees_in_place_weight_updates(images):
  model = gap_linear_net(3, hidden=5, seed=7)
  fn = cam.compute_fn(model, "cam", upsample=False)
  before = fn(images, 1)
  np.testing.assert_allclose(before, cam.compute(model, images, "cam", 1, upsample=False))
  model.head[-1].kernel[...] = 2.0 * model.head[-1].kernel[...]
  np.testing.assert_allclose(fn(images, 1), 2.0 * before, rtol=1e-5, atol=1e-6)


def test_non_linear_head_cam_error_suggests_gradcam(images):
  model = flatten_head_net(1, image_size=SIZE)
  with pytest.raises(ValueError, match="gradcam"):
    cam.compute(model, images, "cam")
  maps = cam.compute(model, images, "gradcam")
  assert maps.shape == (B, SIZE, SIZE) and np.isfinite(maps).all()


def test_input_errors(multiclass, images):
  with pytest.raises(ValueError, match="valid methods: cam, gradcam"):
    cam.compute(multiclass, images, "gradkam")
  with pytest.raises(ValueError, match="out of range: model has 3 classes"):
    cam.compute(multiclass, images, "cam", 3, upsample=False)
  with pytest.raises(ValueError, match="one per image"):
    cam.compute(multiclass, images, "cam", [0, 1])
  with pytest.raises(ValueError, match="images / 255"):
    cam.compute(multiclass, (images * 255).astype(np.uint8), "cam")
  with pytest.raises(ValueError, match="0 \\(negative class\\)"):
    cam.compute(gap_linear_net(1, hidden=None), images, "cam", 2, upsample=False)


def test_normalize_per_image_and_global():
  maps = np.stack([np.arange(4, dtype=np.float32).reshape(2, 2),
                   10 + 2 * np.arange(4, dtype=np.float32).reshape(2, 2),
                   np.full((2, 2), 7.0, np.float32)])
  per = cam.normalize(maps, "per_image")
  np.testing.assert_allclose(per[0], [[0, 1 / 3], [2 / 3, 1]], atol=1e-6)
  np.testing.assert_allclose(per[1], per[0], atol=1e-6)
  np.testing.assert_array_equal(per[2], 0.0)  # constant map
  glob = cam.normalize(maps, "global")
  np.testing.assert_allclose(glob[0, 0, 0], 0.0)
  np.testing.assert_allclose(glob[1, 1, 1], 1.0)
  np.testing.assert_allclose(glob[2], 7 / 16)
  shared = cam.normalize(maps[:1], "global", value_range=(0.0, 6.0))
  np.testing.assert_allclose(shared[0], [[0, 1 / 6], [2 / 6, 0.5]], atol=1e-6)
  robust = cam.normalize(np.append(np.arange(99.0), 1e6)[None, None], "global",
                         percentile=98)
  assert robust.max() == 1.0 and robust[0, 0, 50] < 0.6
  assert cam.normalize(maps[0], "per_image").shape == (2, 2)
  with pytest.raises(ValueError, match="per_image"):
    cam.normalize(maps, "minmax")


def test_resnet18_cam_invariant_and_gradcam():
  from facebias_jax.models import get_model

  # 1/8 width, stacked Linear(64, 7) -> Linear(7, 2) head; random weights, no init compile.
  model = random_init(lambda: get_model("resnet18", num_classes=2, small_inputs=True,
                                        width=0.125, head_dims=(7,)), std=0.2)
  x = np.random.default_rng(3).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
  targets = np.array([0, 1])
  raw = cam.compute(model, x, "cam", targets, upsample=False)
  assert raw.shape == (2, 4, 4)
  # The same compiled function also returns the logits (feature_map -> head == model(x)).
  run = inference.eval_fn(model, methods.maps_from_model, method="cam", upsample=False)
  _, logits, _ = run(x, targets)
  _, b = model.linear_head()
  np.testing.assert_allclose(raw.mean(axis=(1, 2)) + np.asarray(b)[targets],
                             np.asarray(logits)[np.arange(2), targets], rtol=1e-4, atol=1e-4)
  grad = cam.compute(model, x, "gradcam", targets, upsample=False)
  np.testing.assert_allclose(grad * raw[0].size, np.maximum(raw, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["standard_cnn", "dbvae"])
def test_flattening_models_refuse_cam_and_run_gradcam(name):
  from facebias_jax.models import get_model

  kwargs = dict(image_size=32, filters=2, hidden_dim=8)
  if name == "dbvae":
    kwargs["latent_dim"] = 4
  model = random_init(lambda: get_model(name, **kwargs), std=0.2)
  x = np.random.default_rng(4).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
  with pytest.raises(ValueError, match="method='gradcam'"):
    cam.compute(model, x, "cam")
  maps = cam.compute(model, x, "gradcam", 1)
  assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and (maps >= 0).all()
