"""Tests of facebias_jax.cam.aggregate: per-group mean maps and mask energy."""

from __future__ import annotations

import numpy as np
import pytest

from facebias_jax import cam


def test_group_mean_maps_means_and_counts():
  maps = np.stack([np.full((2, 3), v, np.float32) for v in (1.0, 3.0, 10.0, 0.0, 5.0)])
  groups = np.array(["darker_female", "darker_female", "lighter_male", "unknown",
                     "lighter_male"])
  means, counts = cam.group_mean_maps(maps, groups)
  assert list(means) == ["darker_female", "lighter_male", "unknown"]
  assert counts == {"darker_female": 2, "lighter_male": 2, "unknown": 1}
  np.testing.assert_allclose(means["darker_female"], 2.0)
  np.testing.assert_allclose(means["lighter_male"], 7.5)
  assert means["lighter_male"].shape == (2, 3) and means["lighter_male"].dtype == np.float32
  result = cam.group_mean_maps(maps, list(groups), exclude=("unknown",))
  assert set(result.means) == set(result.counts) == {"darker_female", "lighter_male"}
  # Non-string hashable labels, and per-image normalisation before averaging.
  ramp = np.stack([np.arange(6, dtype=np.float32).reshape(2, 3) * s for s in (1, 100)])
  means, _ = cam.group_mean_maps(ramp, [(0, 1), (0, 1)], normalization="per_image")
  np.testing.assert_allclose(means[(0, 1)], np.arange(6).reshape(2, 3) / 5, atol=1e-6)
  with pytest.raises(ValueError, match="one label per map"):
    cam.group_mean_maps(maps, groups[:3])


def test_group_energy_statistics():
  maps = np.zeros((4, 2, 2), np.float32)
  maps[:, 0, 0] = 1.0
  maps[:, 1, 1] = [1.0, 3.0, 1.0, 0.0]
  masks = np.zeros((4, 2, 2), bool)
  masks[:, 0, 0] = True
  out = cam.group_energy(maps, masks, [1, 1, 0, 0])
  assert list(out) == [0, 1]
  assert out[1]["n"] == 2 and out[1]["mean"] == pytest.approx((0.5 + 0.25) / 2)
  assert out[1]["std"] == pytest.approx(0.125)
  assert out[0]["mean"] == pytest.approx(0.75) and out[0]["sem"] == pytest.approx(
      0.25 / np.sqrt(2))
