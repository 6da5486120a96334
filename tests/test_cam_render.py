"""Tests of facebias_jax.cam.render: heatmaps, overlays, grids and files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facebias_jax import cam, imaging
from facebias_jax.cam import render


def _ramp(h=8, w=8):
  """A map increasing left to right (low on the left, high on the right)."""
  return np.tile(np.linspace(0.0, 3.0, w, dtype=np.float32), (h, 1))


def test_overlay_dtype_shape_and_jet_colours():
  image = np.full((16, 16, 3), 128, np.uint8)
  out = cam.overlay(image, _ramp())  # 8x8 map resized to the 16x16 image
  assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
  # JET: high values red, low values blue (RGB order).
  right, left = out[:, -1].astype(int), out[:, 0].astype(int)
  assert (right[:, 0] > right[:, 2]).all() and (left[:, 2] > left[:, 0]).all()
  # alpha=0 is the image, alpha=1 the bare heatmap.
  np.testing.assert_array_equal(cam.overlay(image, _ramp(), alpha=0.0), image)
  np.testing.assert_array_equal(cam.overlay(image, _ramp(), alpha=1.0),
                                render.heatmap(_ramp(), size_hw=(16, 16)))


def test_overlay_accepts_unit_floats_and_grey_and_validates():
  unit = np.full((8, 8, 3), 0.5, np.float32)
  np.testing.assert_array_equal(cam.overlay(unit, _ramp(), alpha=0.0),
                                np.full((8, 8, 3), 128, np.uint8))
  assert cam.overlay(np.zeros((8, 8), np.uint8), _ramp()).shape == (8, 8, 3)
  with pytest.raises(ValueError, match="normalisation"):
    cam.overlay(np.linspace(-1.0, 1.0, 192).reshape(8, 8, 3), _ramp())
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    cam.overlay(unit, _ramp(), normalize=False)  # ramp reaches 3
  shared = cam.normalize(np.stack([_ramp(), 2 * _ramp()]), "global")
  dim, bright = (cam.overlay(unit, m, normalize=False, alpha=1.0) for m in shared)
  # On one shared scale the half-as-strong map tops out at mid-JET (green), not red.
  assert (dim[:, -1, 1] > dim[:, -1, 0]).all() and (bright[:, -1, 0] > bright[:, -1, 1]).all()
  with pytest.raises(ValueError, match="alpha"):
    cam.overlay(unit, _ramp(), alpha=2.0)


def test_constant_map_is_uniform_colour():
  out = render.heatmap(np.full((4, 4), 5.0, np.float32))
  assert (out == out[0, 0]).all()
  np.testing.assert_array_equal(out[0, 0], cv2.cvtColor(
      cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)[0, 0])


def test_batch_grid_and_files(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
  maps = np.random.default_rng(1).normal(size=(3, 6, 6)).astype(np.float32)
  batch = cam.overlay_batch(images, maps)
  assert batch.shape == (3, 12, 12, 3) and batch.dtype == np.uint8
  np.testing.assert_array_equal(batch[1], cam.overlay(images[1], maps[1]))
  labels = ["a", "b", "c"]
  grid = cam.cam_grid(images, maps, labels, ncols=3)
  np.testing.assert_array_equal(grid, imaging.tile_grid(batch, labels, ncols=3))
  paired = cam.cam_grid(images, maps, labels, with_originals=True, ncols=2)
  np.testing.assert_array_equal(paired, imaging.tile_grid(
      np.stack([images[0], batch[0], images[1], batch[1], images[2], batch[2]]),
      ["a", "CAM", "b", "CAM", "c", "CAM"], ncols=2))
  paths = cam.save_overlays(str(tmp_path / "ov"), images, maps, ["x", "y", "z"])
  assert [p.split("/")[-1] for p in paths] == ["x.png", "y.png", "z.png"]
  np.testing.assert_array_equal(imaging.load_image(paths[2]), batch[2])
  path = cam.save_grid(str(tmp_path / "grid.jpg"), images, maps, labels, ncols=3)
  assert imaging.load_image(path).shape == grid.shape
  with pytest.raises(ValueError, match="2 maps"):
    cam.overlay_batch(images, maps[:2])


def test_group_mean_grid_shares_one_scale():
  means = {"darker_female": _ramp(), "lighter_male": 0.5 * _ramp()}
  grid = cam.group_mean_grid(means, {"darker_female": 3, "lighter_male": 5}, ncols=2)
  tiles = np.stack([render.heatmap(m, normalize=False)
                    for m in cam.normalize(np.stack(list(means.values())), "global")])
  np.testing.assert_array_equal(
      grid, imaging.tile_grid(tiles, ["darker_female (n=3)", "lighter_male (n=5)"], ncols=2))
  own = cam.group_mean_grid(means, shared_scale=False, ncols=2)
  # Its captions are shorter (no counts), so its strip is too; the tiles differ.
  assert own.shape[1] == grid.shape[1] and not np.array_equal(own[:10], grid[:10])
  face = np.full((8, 8, 3), 90, np.uint8)
  assert cam.group_mean_grid(means, background=face).dtype == np.uint8


def test_captions_wrap_and_the_strip_grows_instead_of_cutting():
  images = np.zeros((2, 32, 32, 3), np.uint8)
  short = imaging.tile_grid(images, ["a", "b"], ncols=2)
  long = imaging.tile_grid(images, ["female 0.93", "a"], ncols=2)  # Too wide for 32 px.
  assert long.shape[1] == short.shape[1] and long.shape[0] > short.shape[0]
  assert imaging.wrap_text("female 0.93", 40, 0.3) == ["female", "0.93"]
  for text in ("2.0e-05", "darker_female_young", "x"):
    lines = imaging.wrap_text(text, 30, 0.3)
    assert "".join(lines) == text  # Nothing dropped, no "~".
    assert all(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.3, 1)[0][0] <= 28 for t in lines)
  # The text is drawn: the strip under the first tile is no longer blank.
  strip = long[2 + 32:, 2:34]
  assert (strip < 128).any()


def test_wrap_text_ends_when_a_character_is_wider_than_the_tile():
  assert imaging.wrap_text("abc", 2, 0.3) == ["a", "b", "c"]
  assert imaging.tile_grid(np.zeros((1, 4, 4, 3), np.uint8), ["mm"]).shape[1] == 8
