"""``facebias_image_folder`` and the faces-vs-non-faces ``facebias_face_mixture``."""

import os

import numpy as np

from facebias_jax.data import groups, sources
from facebias_jax.data.builders.celeba import celeba
from facebias_jax.data.builders.face_mixture import face_mixture
from facebias_jax.data.builders.image_folder import image_folder
import builder_fixtures as bf


def test_image_folder_split_dirs_and_flat(tmp_path):
  manual = bf.write_negatives(str(tmp_path / "split"), split_dirs=True)
  builder = bf.prepare(image_folder.FacebiasImageFolder, "size_32", str(tmp_path / "d1"),
                       manual)
  assert sorted(builder.info.splits) == ["test", "train"]
  train = bf.read_split("facebias_image_folder/size_32", "train", str(tmp_path / "d1"))
  assert [r["filename"].decode() for r in train] == ["class0/img0.png", "class0/img2.jpg",
                                                      "class0/img4.jpg"]
  assert all(r["label"] == 0 and r["is_face"] == 0 and r["category"] == b"class0"
             for r in train)
  # Text attributes are columns and group like any other.
  source = sources.load_source("facebias_image_folder/size_32", split="train",
                               data_dir=str(tmp_path / "d1"), prepare=False)
  assert groups.assign_groups(sources.read_attributes(source), "category").tolist() == [
      "class0"] * 3
  flat = bf.write_negatives(str(tmp_path / "flat"))
  builder = bf.prepare(image_folder.FacebiasImageFolder, "size_32", str(tmp_path / "d2"),
                       flat)
  assert list(builder.info.splits) == ["train"]
  assert builder.info.splits["train"].num_examples == 6


def test_celeba_mixture_labels_and_unknown_attributes(tmp_path):
  manual = tmp_path / "manual"
  bf.write_celeba(str(manual / "faces"))
  bf.write_negatives(str(manual / "negatives"), count=12)
  bf.truncate(str(manual / "negatives" / "class1" / "img1.jpg"))
  builder = bf.prepare(face_mixture.FacebiasFaceMixture, "celeba_32", str(tmp_path / "data"),
                       str(manual))
  total_negatives = 0
  for split in ("train", "validation", "test"):
    records = bf.read_split("facebias_face_mixture/celeba_32", split, str(tmp_path / "data"))
    faces = [r for r in records if r["label"] == 1]
    negatives = [r for r in records if r["label"] == 0]
    assert len(faces) == list(bf.CELEBA_PARTITION.values()).count(
        ("train", "validation", "test").index(split))
    for r in faces:
      assert r["is_face"] == 1 and r["filename"].startswith(b"faces/")
      assert int(r["Male"]) == int(r["filename"].decode()[6:] in bf.MALE_ROWS)
    for r in negatives:
      assert r["is_face"] == 0 and r["filename"].startswith(b"negatives/")
      assert all(int(r[a]) == -1 for a in celeba.ATTRIBUTES + ("identity",))
      np.testing.assert_array_equal(r["landmarks"], -np.ones((5, 2)))
    total_negatives += len(negatives)
  assert total_negatives == 11  # 12 written, the truncated one skipped.
  assert any("skipped 1 corrupt image(s) (img1.jpg)" in s for s in builder.summaries.values())


def test_missing_negatives_folder(tmp_path):
  manual = tmp_path / "manual"
  bf.write_celeba(str(manual / "faces"))
  try:
    bf.prepare(face_mixture.FacebiasFaceMixture, "celeba_32", str(tmp_path / "data"),
               str(manual))
  except FileNotFoundError as err:
    assert os.path.join(str(manual), "negatives") in str(err)
    assert "non-face images folder" in str(err)
  else:
    raise AssertionError("expected FileNotFoundError")
