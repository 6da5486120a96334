"""The Individual Typology Angle: CIELAB conversion and ITA against hand computations."""

import math

import cv2
import numpy as np
import pytest

from facebias_jax import imaging


def test_srgb_to_lab_reference_values():
  pixels = np.array([[255, 0, 0], [255, 255, 255], [0, 0, 0], [119, 119, 119]], np.uint8)
  lab = imaging.srgb_to_lab(pixels)
  # Published CIELAB (D65) of sRGB red, white and black.
  np.testing.assert_allclose(lab[0], [53.24, 80.09, 67.20], atol=0.02)
  np.testing.assert_allclose(lab[1], [100.0, 0.0, 0.0], atol=1e-3)
  np.testing.assert_allclose(lab[2], [0.0, 0.0, 0.0], atol=1e-9)
  assert abs(lab[3, 0] - 50.0) < 0.2  # sRGB 119 grey is L* = 50.
  # OpenCV's own sRGB -> Lab (its constants are rounded a little differently).
  skin = np.array([[[234, 192, 163], [118, 78, 52], [60, 200, 90]]], np.uint8)
  ours = imaging.srgb_to_lab(skin[0])
  theirs = cv2.cvtColor(skin.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[0]
  np.testing.assert_allclose(ours, theirs, atol=0.25)


def test_ita_of_uniform_colours_is_the_hand_computed_angle():
  mask = np.ones((8, 8), bool)
  for rgb in ((234, 192, 163), (168, 116, 80), (74, 48, 34)):
    image = np.tile(np.array(rgb, np.uint8), (8, 8, 1))
    lightness, _, b = imaging.srgb_to_lab(np.array(rgb, np.uint8))
    expected = math.degrees(math.atan((lightness - 50.0) / b))  # Chardon et al. 1991
    assert imaging.ita_degrees(image, mask) == pytest.approx(expected, abs=1e-6)
  # Fitzpatrick-like colours order from light to dark, in the standard bands.
  light = imaging.ita_degrees(np.tile(np.array((246, 218, 200), np.uint8), (8, 8, 1)), mask)
  dark = imaging.ita_degrees(np.tile(np.array((74, 48, 34), np.uint8), (8, 8, 1)), mask)
  assert light > 55 and dark < -30


def test_ita_is_the_median_over_the_mask_and_unknown_without_skin():
  image = np.tile(np.array((212, 160, 122), np.uint8), (10, 10, 1))
  clean = imaging.ita_degrees(image, np.ones((10, 10), bool))
  spotted = image.copy()
  spotted[:2, :2] = (20, 20, 20)   # A few dark pixels (an eye, a brow) in the mask.
  assert imaging.ita_degrees(spotted, np.ones((10, 10), bool)) == pytest.approx(clean)
  outside = image.copy()
  outside[5:] = 0                  # Outside the mask: ignored.
  top = np.zeros((10, 10), bool)
  top[:5] = True
  assert imaging.ita_degrees(outside, top) == pytest.approx(clean)
  few = np.zeros((10, 10), bool)
  few[0, :imaging.MIN_SKIN_PIXELS - 1] = True
  assert math.isnan(imaging.ita_degrees(image, few[:10, :10]))
  with pytest.raises(ValueError, match="does not match"):
    imaging.ita_degrees(image, np.ones((5, 5), bool))


def test_central_face_mask():
  mask = imaging.central_face_mask(100, 80)
  ys, xs = np.nonzero(mask)
  assert (ys.min(), ys.max(), xs.min(), xs.max()) == (45, 69, 24, 55)


def test_agreement_script_on_synthetic_faces_and_the_ppb_format(tmp_path):
  from benchmarks import bench_ita

  synthetic = bench_ita.synthetic_agreement(48, image_size=32)
  assert synthetic["n"] == 48
  assert sum(sum(row.values()) for row in synthetic["bands_per_type"].values()) == 48
  assert synthetic["spearman_ita_vs_lightness"] > 0.7  # Darker types, lower ITA.
  ppb = bench_ita.ppb_agreement(16, str(tmp_path))
  assert ppb["n"] + ppb["unknown"] == 16 and 0.0 <= ppb["face_found_rate"] <= 1.0
  medians = ppb["median_ita_per_type"]
  assert medians[min(medians)] > medians[max(medians)]  # Lightest type above darkest.
  assert "| 1 |" in bench_ita.markdown(ppb, "PPB")
