"""``facebias_fairface``: label CSVs, age bins, races, splits."""

from etils import epath
import pytest

from facebias_jax.data import groups, sources
from facebias_jax.data.builders import errors
from facebias_jax.data.builders.fairface import fairface
import builder_fixtures as bf


def test_round_trip_train_and_validation(tmp_path):
  manual = bf.write_fairface(str(tmp_path / "manual"),
                             image_folder="fairface-img-margin025-trainval")
  bf.prepare(fairface.FacebiasFairface, "size_32", str(tmp_path / "data"), manual)
  train = bf.read_split("facebias_fairface/size_32", "train", str(tmp_path / "data"))
  val = bf.read_split("facebias_fairface/size_32", "validation", str(tmp_path / "data"))
  assert [r["filename"].decode() for r in train] == ["train/1.jpg", "train/2.jpg",
                                                      "train/3.jpg"]
  assert [int(r["Male"]) for r in train] == [1, 0, 0]
  assert [fairface.AGE_BINS[int(r["age_bin"])] for r in train] == ["20-29", "more than 70",
                                                                     "3-9"]
  assert [int(r["Young"]) for r in train] == [1, 0, 1]
  assert [fairface.RACES[int(r["race"])] for r in train + val] == [
      "East Asian", "Latino_Hispanic", "Black", "Middle Eastern", "White"]
  assert [int(r["service_test"]) for r in val] == [0, 1]
  source = sources.load_source("facebias_fairface/size_32", split="train",
                               data_dir=str(tmp_path / "data"), prepare=False)
  names = sources.value_names(source)
  got = groups.assign_groups(sources.read_attributes(source), "race,age_bin",
                             value_names=names)
  assert got.tolist() == ["east_asian_age_bin_20-29", "latino_hispanic_more_than_70",
                          "black_age_bin_3-9"]


def test_bad_label_names_line(tmp_path):
  manual = bf.write_fairface(str(tmp_path / "manual"))
  path = tmp_path / "manual" / "fairface_label_val.csv"
  path.write_text(path.read_text().replace("30-39", "thirty"))
  with pytest.raises(errors.AnnotationError, match=r"label_val\.csv, line 3: unknown age"):
    fairface.read_labels(epath.Path(path))
  (tmp_path / "manual" / "val" / "2.jpg").unlink()
  path.write_text(path.read_text().replace("thirty", "30-39"))
  with pytest.raises(FileNotFoundError, match=r"val/2\.jpg"):
    bf.prepare(fairface.FacebiasFairface, "size_32", str(tmp_path / "data"), manual)
