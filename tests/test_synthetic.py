"""Tests for the synthetic biased-faces benchmark (facebias_jax.data.synthetic)."""

import hashlib

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

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
    image, mask, attrs, hair = synthetic.render_example(
        3, i, image_size=32, is_face=bool(plan["is_face"][i]), darker=bool(plan["darker"][i]),
        male=bool(plan["male"][i]), young=bool(plan["young"][i]),
        nonface_darker_fraction=knobs["nonface_darker_fraction"])
    np.testing.assert_array_equal(image, small["image"][i])
    np.testing.assert_array_equal(mask, small["mask"][i])
    np.testing.assert_array_equal(hair, small["hair_mask"][i])
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


# sha256 of generate(16, seed=0, task="sex", image_size=32)["image"], recorded before the
# sex_ambiguity knob existed: level 0 must keep these pixels exactly.
_SEX_32_DIGEST = "31b9b0bb2a096a3ae3457d1471f27725914dc1f57011f5467564542c3b11662d"


def test_sex_ambiguity_zero_keeps_todays_pixels():
  for knobs in ({}, {"sex_ambiguity": 0.0}):
    images = synthetic.generate(16, seed=0, task="sex", image_size=32, **knobs)["image"]
    assert hashlib.sha256(images.tobytes()).hexdigest() == _SEX_32_DIGEST


def test_sex_ambiguity_changes_only_the_sex_cues():
  base = synthetic.generate(64, seed=4, task="sex", image_size=32, balanced=True)
  blurred = synthetic.generate(64, seed=4, task="sex", image_size=32, balanced=True,
                               sex_ambiguity=1.0)
  np.testing.assert_array_equal(base["label"], blurred["label"])  # Sex itself is kept.
  for name in ("skin_type", "Young", "Eyeglasses", "Smiling", "Wearing_Hat"):
    np.testing.assert_array_equal(base["attributes"][name], blurred["attributes"][name])


def test_sex_ambiguity_one_makes_the_cues_independent_of_sex():
  data = synthetic.generate(2000, seed=6, task="sex", image_size=16, balanced=True,
                            sex_ambiguity=1.0)
  attrs, male = data["attributes"], data["attributes"]["Male"] == 1
  for name in ("Wearing_Lipstick", "No_Beard", "Bald", "Wearing_Earrings"):
    gap = abs(attrs[name][male].mean() - attrs[name][~male].mean())
    assert gap < 0.06, (name, gap)  # At level 0 lipstick alone differs by ~0.45.


def test_a_sex_classifier_drops_to_chance_at_full_ambiguity():
  # A pixel logistic regression trained at level 0 (measured: 0.70 at level 0, 0.62 at
  # 0.5 and 0.51 at 1 on these seeds).
  train = synthetic.generate(3000, seed=1, task="sex", image_size=32, balanced=True)
  flat = lambda d: d["image"].reshape(len(d["image"]), -1) / 255.0
  clf = LogisticRegression(C=0.01, max_iter=500).fit(flat(train), train["label"])
  accuracy = {}
  for level in (0.0, 0.5, 1.0):
    test = synthetic.generate(1000, seed=2, task="sex", image_size=32, balanced=True,
                              sex_ambiguity=level)
    accuracy[level] = clf.score(flat(test), test["label"])
  assert accuracy[0.0] > 0.65 and accuracy[0.0] > accuracy[0.5] > accuracy[1.0]
  assert abs(accuracy[1.0] - 0.5) < 0.05, accuracy


def test_hair_mask_covers_hair_and_not_the_face():
  data = synthetic.generate(40, seed=8, task="sex", image_size=64)
  attrs = data["attributes"]
  assert not (data["hair_mask"] & data["mask"]).any()  # Disjoint from the face skin.
  for i in range(40):
    hair = data["hair_mask"][i]
    if attrs["Bald"][i] == 0 and attrs["Wearing_Hat"][i] == 0:
      assert hair.sum() > 50, i  # Visible hair on every non-bald, hatless head.
      # Hair pixels are darker or lighter than skin alike: their mean colour differs
      # from the face skin's.
      image = data["image"][i].astype(float)
      assert np.abs(image[hair].mean(0) - image[data["mask"][i]].mean(0)).max() > 5
  nonfaces = synthetic.generate(8, seed=1, image_size=32, face_fraction=0.0)
  assert not nonfaces["hair_mask"].any()
