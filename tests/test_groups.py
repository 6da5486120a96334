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
  by_pale = {"Pale_Skin": np.array([1, 0]), "Male": np.array([0, 1])}
  np.testing.assert_array_equal(groups.assign_groups(by_pale, "skin"), ["lighter", "darker"])
  # One unknown attribute makes the whole group unknown.
  partial = {"skin_type": np.array([2, 4]), "Male": np.array([-1, 1])}
  np.testing.assert_array_equal(groups.assign_groups(partial, "skin,Male"), ["unknown", "darker_male"])


def test_case_insensitive_and_other_values():
  np.testing.assert_array_equal(groups.assign_groups(ATTRS, "SKIN, male")[:2],
                                ["lighter_female", "darker_female"])
  multi = {"race": np.array(["East Asian", "Black", ""]), "age_bin": np.array([0, 3, 1])}
  np.testing.assert_array_equal(groups.assign_groups(multi, "race"), ["east_asian", "black", "unknown"])
  np.testing.assert_array_equal(groups.assign_groups(multi, "age_bin"),
                                ["not_age_bin", "age_bin_3", "age_bin"])


def test_parse_group_spec():
  assert groups.parse_group_spec("skin, Male") == ["skin", "Male"]
  assert groups.parse_group_spec(["Young"]) == ["Young"]
  assert groups.parse_group_spec("male", ATTRS) == ["Male"]
  with pytest.raises(ValueError, match="empty"):
    groups.parse_group_spec("skin,,Male")
  with pytest.raises(ValueError, match="repeats"):
    groups.parse_group_spec("Male,male", ATTRS)
  with pytest.raises(ValueError, match=r"'Race'.*available: Eyeglasses, Male, Pale_Skin, Young, skin"):
    groups.parse_group_spec("skin,Race", ATTRS)
  with pytest.raises(ValueError, match="available"):
    groups.assign_groups({"Male": np.array([1])}, "skin")
  with pytest.raises(ValueError, match="string like"):
    groups.parse_group_spec(3)
  with pytest.raises(ValueError, match="different lengths"):
    groups.assign_groups({"Male": np.array([1, 0]), "Young": np.array([1])}, "Male")
