"""Tests for group naming and group-spec validation (facebias_jax.data.groups)."""

import numpy as np
import pytest

from facebias_jax.data import groups

ATTRS = {
    "skin_type": np.array([1, 5, 3, 6, -1]),
    "Male": np.array([0, 0, 1, 1, -1]),
    "Young": np.array([1, 0, 1, 0, -1]),
    "Pale_Skin": np.array([1, 0, 0, 0, -1]),
    "Eyeglasses": np.array([0, 1, 0, 1, -1]),
}


def test_names_in_spec_order():
  np.testing.assert_array_equal(
      groups.assign_groups(ATTRS, "skin,Male,Young"),
      ["lighter_female_young", "darker_female_old", "lighter_male_young", "darker_male_old",
       "unknown"])
  np.testing.assert_array_equal(
      groups.assign_groups(ATTRS, ["Male", "Pale_Skin", "Young"]),
      ["female_pale_young", "female_not_pale_old", "male_not_pale_young", "male_not_pale_old",
       "unknown"])
  np.testing.assert_array_equal(groups.assign_groups(ATTRS, "Eyeglasses")[:2],
                                ["not_eyeglasses", "eyeglasses"])


def test_skin_sources_and_unknowns():
  by_skin = {"skin": np.array([0, 1, -1]), "Male": np.array([1, 0, 1])}
  np.testing.assert_array_equal(groups.assign_groups(by_skin, "skin,Male"),
                                ["lighter_male", "darker_female", "unknown"])
  # CelebA has no skin-type label: Pale_Skin is named for what it is, never "darker".
  celeba = {"Pale_Skin": np.array([1, 0]), "Male": np.array([0, 1])}
  np.testing.assert_array_equal(groups.assign_groups(celeba, "Pale_Skin,Male"),
                                ["pale_female", "not_pale_male"])
  with pytest.raises(ValueError, match=r"no labelled skin type.*Pale_Skin is CelebA's pale"):
    groups.assign_groups(celeba, "skin,Male")
  # One unknown attribute makes the whole group unknown.
  partial = {"skin_type": np.array([2, 4]), "Male": np.array([-1, 1])}
  np.testing.assert_array_equal(groups.assign_groups(partial, "skin,Male"), ["unknown", "darker_male"])


def test_case_insensitive_and_other_values():
  np.testing.assert_array_equal(groups.assign_groups(ATTRS, "SKIN, male")[:2],
                                ["lighter_female", "darker_female"])
  multi = {"race": np.array(["East Asian", "Black", ""]), "age_bin": np.array([0, 3, 1])}
  np.testing.assert_array_equal(groups.assign_groups(multi, "race"), ["east_asian", "black", "unknown"])
  # More than two integer values without names: numbered, never "x" / "not_x".
  np.testing.assert_array_equal(groups.assign_groups(multi, "age_bin"),
                                ["age_bin_0", "age_bin_3", "age_bin_1"])


def test_dataset_value_names():
  attrs = {"race": np.array([0, 1, 4, -1]), "age_bin": np.array([0, 8, 3, 1])}
  names = {"race": ("White", "Black", "Asian", "Indian", "Others"),
           "age_bin": ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
                       "more than 70")}
  np.testing.assert_array_equal(groups.assign_groups(attrs, "race", value_names=names),
                                ["white", "black", "others", "unknown"])
  np.testing.assert_array_equal(groups.assign_groups(attrs, "age_bin", value_names=names),
                                ["age_bin_0-2", "more_than_70", "age_bin_20-29", "age_bin_3-9"])
  with pytest.raises(ValueError, match="names only 2 values"):
    groups.assign_groups({"race": np.array([2])}, "race", value_names={"race": ("a", "b")})


def test_ita_bands_and_tone():
  ita = np.array([60.0, 55.0, 41.5, 30.0, 28.0, 11.0, -5.0, -30.0, -45.0, np.nan])
  np.testing.assert_array_equal(
      groups.ita_band(ita),
      ["very_light", "light", "light", "intermediate", "tan", "tan", "brown", "dark", "dark", ""])
  attrs = {"skin_ita": ita, "Male": np.array([1, 0] * 5)}
  np.testing.assert_array_equal(groups.assign_groups(attrs, "ita_tone,Male")[[0, 4, 9]],
                                ["ita_lighter_male", "ita_darker_male", "unknown"])
  assert groups.assign_groups(attrs, "ita_band")[0] == "very_light"
  with pytest.raises(ValueError, match="real numbers.*ita_band"):
    groups.assign_groups(attrs, "skin_ita")
  assert "ita_band" in groups.available(attrs) and "skin" not in groups.available(attrs)


def test_text_attributes_and_descriptions():
  folder = {"category": np.array(["Cars", "pets/cats", ""], dtype=object)}
  np.testing.assert_array_equal(groups.assign_groups(folder, "category"),
                                ["cars", "pets_cats", "unknown"])
  described = groups.describe("skin,Pale_Skin,ita_tone,race")
  assert "Fitzpatrick" in described["skin"] and "not a skin-type label" in described["Pale_Skin"]
  assert "estimated from the pixels" in described["ita_tone"]
  assert described["race"] == "the dataset's race attribute"


def test_parse_group_spec():
  assert groups.parse_group_spec("skin, Male") == ["skin", "Male"]
  assert groups.parse_group_spec(["Young"]) == ["Young"]
  assert groups.parse_group_spec("male", ATTRS) == ["Male"]
  with pytest.raises(ValueError, match="empty"):
    groups.parse_group_spec("skin,,Male")
  with pytest.raises(ValueError, match="repeats"):
    groups.parse_group_spec("Male,male", ATTRS)
  with pytest.raises(ValueError, match=r"'Race'.*Available: Eyeglasses, Male, Pale_Skin, Young, skin"):
    groups.parse_group_spec("skin,Race", ATTRS)
  with pytest.raises(ValueError, match="no labelled skin type.*Available: Male"):
    groups.assign_groups({"Male": np.array([1])}, "skin")
  with pytest.raises(ValueError, match="string like"):
    groups.parse_group_spec(3)
  with pytest.raises(ValueError, match="different lengths"):
    groups.assign_groups({"Male": np.array([1, 0]), "Young": np.array([1])}, "Male")
