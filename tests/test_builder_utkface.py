"""``facebias_utkface``: labels from file names, malformed names, hash split."""

import numpy as np
import pytest

from facebias_jax.data import groups, sources
from facebias_jax.data.builders.utkface import utkface
import builder_fixtures as bf


def test_parse_filename():
  labels = utkface.parse_filename("25_0_2_20170116174525125.jpg.chip.jpg")
  assert (labels.age, labels.male, labels.race) == (25, 1, 2)  # gender 0 = male.
  assert utkface.parse_filename("3_1_4_20170109.jpg").male == 0
  for bad in bf.UTK_MALFORMED + ["25_2_0_2017.jpg", "25_0_5_2017.jpg", "x_0_0_1.jpg"]:
    assert utkface.parse_filename(bad) is None, bad


def test_round_trip_with_malformed_names_counted(tmp_path):
  manual = bf.write_utkface(str(tmp_path / "manual"))
  builder = bf.prepare(utkface.FacebiasUtkface, "size_32", str(tmp_path / "data"), manual)
  records = {s: bf.read_split("facebias_utkface/size_32", s, str(tmp_path / "data"))
             for s in ("train", "test")}
  expected = {bf.utk_name(i, *labels): labels for i, labels in enumerate(bf.UTK_LABELS)}
  seen = {}
  for split, rs in records.items():
    for r in rs:
      name = r["filename"].decode()
      assert utkface.split_of(name) == split
      seen[name] = (int(r["age"]), 1 - int(r["Male"]), int(r["race"]))
      assert int(r["Young"]) == int(r["age"] < 40) and r["image"].shape == (32, 32, 3)
  assert seen == expected
  assert len(records["train"]) and len(records["test"])
  summary = builder.summaries["train"]  # Both malformed names hash to train.
  assert "malformed file name" in summary and "2 image(s)" in summary
  assert "39_1_20170116174525125.jpg.chip.jpg" in summary


def test_group_names_use_the_dataset_race_names(tmp_path):
  manual = bf.write_utkface(str(tmp_path / "manual"))
  data_dir = str(tmp_path / "data")
  bf.prepare(utkface.FacebiasUtkface, "size_32", data_dir, manual)
  source = sources.load_source("facebias_utkface/size_32", split="train+test",
                               data_dir=data_dir, prepare=False)
  names = sources.value_names(source)
  assert names == {"race": list(utkface.RACES)}
  attributes = sources.read_attributes(source)
  got = groups.assign_groups(attributes, "race,Male", value_names=names)
  expected = [f"{utkface.RACES[r].lower()}_{'male' if m else 'female'}"
              for r, m in zip(attributes["race"], attributes["Male"])]
  np.testing.assert_array_equal(got, expected)
  assert not any(n.startswith(("not_race", "race")) for n in got)
  # UTKFace labels no skin type: the default "skin,Male" says so and lists what there is.
  with pytest.raises(ValueError, match=r"no labelled skin type.*Available: .*ita_tone.*race"):
    groups.assign_groups(attributes, "skin,Male", value_names=names)
