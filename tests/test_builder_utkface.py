"""``facebias_utkface``: labels from file names, malformed names, hash split."""

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
