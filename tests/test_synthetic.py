"""Tests for the synthetic biased-faces benchmark (facebias_jax.data.synthetic)."""

import numpy as np
import pytest

from facebias_jax.data import groups, synthetic


@pytest.fixture(scope="module")
def small():
  return synthetic.generate(48, seed=3, image_size=32)


@pytest.fixture(scope="module")
def large():
  # ~2,000 examples at a tiny size: enough for proportions, cheap to draw.
  return synthetic.generate(2000, seed=11, image_size=16)


def test_shapes_and_dtypes(small):
  assert small["image"].shape == (48, 32, 32, 3) and small["image"].dtype == np.uint8
  assert small["label"].shape == (48,) and small["label"].dtype == np.int32
  assert small["mask"].shape == (48, 32, 32) and small["mask"].dtype == bool
  assert set(synthetic.ATTRIBUTE_NAMES) <= set(small["attributes"])
  for name, col in small["attributes"].items():
    assert col.shape == (48,) and col.dtype == np.int32, name
  np.testing.assert_array_equal(small["label"], small["attributes"]["is_face"])
  assert 0 < small["label"].sum() < 48


def test_same_seed_same_arrays_different_seed_differs(small):
  again = synthetic.generate(48, seed=3, image_size=32)
  np.testing.assert_array_equal(again["image"], small["image"])
  np.testing.assert_array_equal(again["mask"], small["mask"])
  for name in small["attributes"]:
    np.testing.assert_array_equal(again["attributes"][name], small["attributes"][name])
  other = synthetic.generate(48, seed=4, image_size=32)
  assert not np.array_equal(other["image"], small["image"])


def test_examples_render_independently_of_order(small):
  # Example i depends only on (seed, i, its plan row): chunked rendering gives the same pixels.
  knobs = synthetic.validate_knobs()
  plan = synthetic._plan(48, 3, "faces_vs_nonfaces", knobs)
  for i in (47, 0, 21):
    image, mask, attrs = synthetic.render_example(
        3, i, image_size=32, is_face=bool(plan["is_face"][i]), darker=bool(plan["darker"][i]),
        male=bool(plan["male"][i]), young=bool(plan["young"][i]),
        nonface_darker_fraction=knobs["nonface_darker_fraction"])
    np.testing.assert_array_equal(image, small["image"][i])
    np.testing.assert_array_equal(mask, small["mask"][i])
    assert attrs["Male"] == small["attributes"]["Male"][i]


def test_masks_and_nonface_attributes(small):
  attrs = small["attributes"]
  faces = attrs["is_face"] == 1
  area = small["mask"].mean(axis=(1, 2))
  assert np.all(area[faces] > 0.03) and np.all(area[faces] < 0.6)
  assert not small["mask"][~faces].any()
  for name in synthetic.FACE_ATTRIBUTES + ("skin_type",):
    assert np.all(attrs[name][~faces] == -1), name
    assert np.all(np.isin(attrs[name][faces], (0, 1) if name != "skin_type" else range(1, 7))), name


def test_mask_follows_skin_type(large):
  # The mask covers skin: its mean brightness must fall with the Fitzpatrick type.
  attrs = large["attributes"]
  faces = np.flatnonzero(attrs["is_face"] == 1)
  brightness = np.array([large["image"][i][large["mask"][i]].mean() for i in faces])
  skin = attrs["skin_type"][faces]
  assert brightness[skin <= 3].mean() > brightness[skin >= 4].mean() + 40


def test_glasses_drawn_iff_eyeglasses():
  rng = np.random.default_rng(0)
  with_glasses = 0
  for k in range(60):
    d = synthetic._Draws(np.random.default_rng([5, k]))
    f = synthetic.sample_face(d, darker=bool(rng.random() < 0.5), male=bool(k % 2),
                              young=bool(k % 3))
    background = np.full((64, 64, 3), 128, np.uint8)
    drawn, bare = background.copy(), background.copy()
    synthetic.render_face(f, drawn, np.zeros((64, 64), np.uint8))
    synthetic.render_face({**f, "glasses": None}, bare, np.zeros((64, 64), np.uint8))
    changed = np.abs(drawn.astype(int) - bare).max(-1) > 10
    has = synthetic.face_attributes(f)["Eyeglasses"] == 1
    assert has == (f["glasses"] is not None)
    if not has:
      assert not changed.any()
      continue
    with_glasses += 1
    assert changed.sum() > 20
    # Changes lie around the eyes: within ~1.3 head half-widths of the eye line.
    ys, xs = np.nonzero(changed)
    cy = f["cy"] * 64 + f["eye_y"] * f["scale"] * 64
    assert np.abs(ys - cy).max() < 1.3 * f["scale"] * 64 + 2
  assert with_glasses >= 3


def test_proportions_follow_default_knobs(large):
  attrs, k = large["attributes"], synthetic.DEFAULT_KNOBS
  faces = attrs["is_face"] == 1
  assert faces.mean() == pytest.approx(k["face_fraction"], abs=0.01)
  darker = attrs["skin_type"][faces] >= 4
  male = attrs["Male"][faces] == 1
  assert darker.mean() == pytest.approx(k["darker_fraction"], abs=0.01)
  assert male[~darker].mean() == pytest.approx(k["male_fraction_lighter"], abs=0.02)
  assert male[darker].mean() == pytest.approx(k["male_fraction_darker"], abs=0.04)
  assert attrs["Young"][faces].mean() == pytest.approx(k["young_fraction"], abs=0.02)
  # Other attributes have CelebA-like, non-degenerate rates.
  for name, lo, hi in [("Smiling", 0.4, 0.56), ("Eyeglasses", 0.05, 0.2), ("No_Beard", 0.75, 0.95),
                       ("Bald", 0.01, 0.1), ("Pale_Skin", 0.15, 0.3), ("Wearing_Hat", 0.02, 0.09)]:
    assert lo < attrs[name][faces].mean() < hi, name


def test_custom_knobs_and_balanced():
  data = synthetic.generate(400, seed=1, image_size=16, task="sex", darker_fraction=0.5,
                            male_fraction_lighter=0.1, male_fraction_darker=0.9, young_fraction=0.25)
  darker = data["attributes"]["skin_type"] >= 4
  male = data["attributes"]["Male"] == 1
  assert darker.mean() == pytest.approx(0.5, abs=0.01)
  assert male[~darker].mean() == pytest.approx(0.1, abs=0.02)
  assert male[darker].mean() == pytest.approx(0.9, abs=0.02)
  assert data["attributes"]["Young"].mean() == pytest.approx(0.25, abs=0.02)
  balanced = synthetic.generate(80, seed=2, image_size=16, balanced=True)
  names, counts = np.unique(groups.assign_groups(balanced["attributes"], "skin,Male"),
                            return_counts=True)
  assert dict(zip(names, counts)) == {"darker_female": 10, "darker_male": 10, "lighter_female": 10,
                                      "lighter_male": 10, "unknown": 40}


def test_sex_task_labels_are_male():
  data = synthetic.generate(24, seed=0, image_size=16, task="sex", balanced=True)
  np.testing.assert_array_equal(data["label"], data["attributes"]["Male"])
  assert np.all(data["attributes"]["is_face"] == 1)
  assert data["label"].sum() == 12


def test_128_pixels():
  data = synthetic.generate(3, seed=0, image_size=128, face_fraction=1.0)
  assert data["image"].shape == (3, 128, 128, 3) and data["mask"].shape == (3, 128, 128)
  assert data["mask"].any(axis=(1, 2)).all()
  assert data["image"].std() > 10


@pytest.mark.parametrize("kwargs, message", [
    ({"darker_fracton": 0.1}, "darker_fracton"),
    ({"darker_fraction": 1.5}, "darker_fraction=1.5"),
    ({"face_fraction": -0.1}, "face_fraction"),
    ({"young_fraction": "half"}, "young_fraction"),
    ({"balanced": "yes"}, "balanced"),
    ({"task": "age"}, "faces_vs_nonfaces"),
    ({"seed": -1}, "seed"),
    ({"image_size": 8}, "image_size"),
])
def test_bad_arguments_raise(kwargs, message):
  args = {"seed": 0, **kwargs}
  with pytest.raises(ValueError, match=message) as info:
    synthetic.generate(2, **args)
  if "fracton" in message:
    assert "darker_fraction" in str(info.value) and "male_fraction_darker" in str(info.value)


def test_sample_grid(tmp_path):
  path = tmp_path / "grid.png"
  grid = synthetic.main([f"--grid={path}", "--image_size=16", "--per_group=3", "--scale=1"])
  assert grid == 0 and path.exists()
  image = synthetic.sample_grid(image_size=16, per_group=3, scale=1)
  assert image.dtype == np.uint8 and image.shape[1] > 3 * 16
  with pytest.raises(ValueError, match="per_group"):
    synthetic.sample_grid(per_group=2)
