"""Tests of facebias_jax.cam.faithfulness on models whose ideal map is known."""

from __future__ import annotations

import numpy as np
import pytest

from cam_toy_models import IdentityFeatureNet, gap_linear_net, hot_spot_images
from facebias_jax import cam
from facebias_jax.cam import faithfulness

SIZE = 16


@pytest.fixture(scope="module")
def scene():
  images, _, masks = hot_spot_images(4, SIZE, seed=2)
  model = IdentityFeatureNet()  # logit = 8 * mean(red) - 0.5; ideal map = red channel
  perfect = images[..., 0]
  random = np.random.default_rng(5).uniform(size=perfect.shape).astype(np.float32)
  return model, images, masks, perfect, random


def test_deletion_and_insertion_rank_perfect_above_random(scene):
  model, images, _, perfect, random = scene
  kwargs = dict(target=1, steps=8, baseline="zero")
  good = faithfulness.deletion_curve(model, images, perfect, **kwargs)
  bad = faithfulness.deletion_curve(model, images, random, **kwargs)
  assert good["curves"].shape == (4, 9) and good["fractions"][-1] == 1.0
  assert (good["auc"] < bad["auc"]).all() and good["mean_auc"] < bad["mean_auc"]
  # Step 0 is the untouched image, the last step the all-baseline image (logit -0.5).
  full = 1 / (1 + np.exp(-(8 * images[..., 0].mean(axis=(1, 2)) - 0.5)))
  np.testing.assert_allclose(good["curves"][:, 0], full, rtol=1e-5)
  np.testing.assert_allclose(good["curves"][:, -1], 1 / (1 + np.exp(0.5)), rtol=1e-5)
  ins_good = faithfulness.insertion_curve(model, images, perfect, **kwargs)
  ins_bad = faithfulness.insertion_curve(model, images, random, **kwargs)
  assert (ins_good["auc"] > ins_bad["auc"]).all()
  np.testing.assert_allclose(ins_good["curves"][:, -1], full, rtol=1e-5)


def test_curves_accept_low_resolution_maps_and_blur(scene):
  model, images, _, perfect, _ = scene
  low = perfect.reshape(4, 8, 2, 8, 2).mean(axis=(2, 4))  # an 8x8 map, resized inside
  out = faithfulness.deletion_curve(model, images, low, steps=4)
  np.testing.assert_array_equal(out["targets"], 1)  # predicted class: positive
  assert np.isfinite(out["auc"]).all() and out["curves"].shape == (4, 5)
  blurred = faithfulness.baseline_images(images, "blur", blur_sigma=2.0)
  assert blurred.shape == images.shape and blurred[..., 0].max() < images[..., 0].max()
  with pytest.raises(ValueError, match="Unknown baseline"):
    faithfulness.baseline_images(images, "noise")
  with pytest.raises(ValueError, match="one per image"):
    faithfulness.deletion_curve(model, images, perfect[:2])


def test_average_drop_and_increase(scene):
  model, images, _, perfect, random = scene
  good = faithfulness.average_drop_increase(model, images, perfect, 1)
  bad = faithfulness.average_drop_increase(model, images, random, 1)
  assert good["average_drop"] < bad["average_drop"]
  assert 0.0 <= good["increase_in_confidence"] <= 100.0
  np.testing.assert_allclose(good["drop"].mean() * 100, good["average_drop"])
  # The perfect map keeps the whole red square (mean red >= 16/256 -> logit >= 0).
  assert (good["prob_masked"] >= 0.5 - 1e-6).all()
  assert (good["prob_masked"] > bad["prob_masked"]).all()


def test_pointing_game_and_energy_known_answers(scene):
  _, images, masks, perfect, random = scene
  np.testing.assert_array_equal(faithfulness.pointing_game(perfect, masks), True)
  np.testing.assert_array_equal(faithfulness.pointing_game(perfect, ~masks), False)
  maps = np.zeros((2, 4, 4), np.float32)
  maps[0, 0, 0] = 3.0
  maps[0, 3, 3] = 1.0
  maps[1] = -1.0  # no positive energy
  region = np.zeros((2, 4, 4), bool)
  region[:, :2, :2] = True
  np.testing.assert_allclose(faithfulness.energy_in_mask(maps, region), [0.75, 0.0])
  np.testing.assert_array_equal(faithfulness.pointing_game(maps[:1], ~region[:1]), [False])
  # The peak (0, 0) is 2 px (chessboard distance) from the complement of the 2x2 corner.
  np.testing.assert_array_equal(
      faithfulness.pointing_game(maps[:1], ~region[:1], tolerance=1), [False])
  np.testing.assert_array_equal(
      faithfulness.pointing_game(maps[:1], ~region[:1], tolerance=2), [True])
  # A map at half resolution is resized to the mask; the square's 16 of 256 pixels
  # hold far more than a random map's ~6% share.
  assert (faithfulness.energy_in_mask(perfect[:, ::2, ::2], masks) > 0.3).all()
  assert (faithfulness.energy_in_mask(random, masks) < 0.15).all()


def test_faithfulness_on_a_conv_model_with_computed_maps():
  # Same architecture and shapes as test_cam_methods, so compilations are shared.
  model = gap_linear_net(3, hidden=5)
  images = np.random.default_rng(1).uniform(size=(4, SIZE, SIZE, 3)).astype(np.float32)
  maps, targets = cam.compute(model, images, "gradcam", return_targets=True)
  out = faithfulness.deletion_curve(model, images, maps, steps=4, baseline="zero")
  np.testing.assert_array_equal(out["targets"], targets)
  assert ((out["curves"] >= 0) & (out["curves"] <= 1)).all()
  with pytest.raises(ValueError, match="out of range"):
    faithfulness.average_drop_increase(model, images, maps, 5)
