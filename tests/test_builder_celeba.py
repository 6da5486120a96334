"""``facebias_celeba``: official txt and Kaggle csv layouts, stock TFDS copy, bad input."""

import io
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from facebias_jax.data import groups, sources
from facebias_jax.data.builders import errors
from facebias_jax.data.builders.celeba import celeba
import builder_fixtures as bf

NAME = "facebias_celeba/crop_32"


def _prepare(tmp_path, manual_dir, **kwargs):
  return bf.prepare(celeba.FacebiasCeleba, "crop_32", str(tmp_path / "data"),
                    str(manual_dir), **kwargs)


def test_official_txt_layout_round_trip(tmp_path):
  manual = bf.write_celeba(str(tmp_path / "manual"))
  _prepare(tmp_path, manual)
  data_dir = str(tmp_path / "data")
  by_split = {s: bf.read_split(NAME, s, data_dir) for s in ("train", "validation", "test")}
  assert {s: [r["filename"].decode() for r in rs] for s, rs in by_split.items()} == {
      "train": ["000001.jpg", "000002.jpg", "000003.jpg"], "validation": ["000004.jpg"],
      "test": ["000005.jpg", "000006.jpg"]}
  for records in by_split.values():
    for r in records:
      name = r["filename"].decode()
      assert r["image"].shape == (32, 32, 3) and r["image"].dtype == np.uint8
      assert r["label"] == 1 and r["is_face"] == 1
      expected = (np.array(bf.celeba_attr_values(name)) > 0).astype(int)
      assert [int(r[a]) for a in celeba.ATTRIBUTES] == expected.tolist()
      assert int(r["Male"]) == int(name in bf.MALE_ROWS)
      assert int(r["identity"]) == 100 + int(name[:6]) - 1
      # Landmarks map from the aligned frame through the crop (0, 32)-(178, 210).
      xy = np.array(bf.landmarks_of(name), np.float32).reshape(5, 2)
      np.testing.assert_allclose(r["landmarks"], (xy - [0, 32]) * 32 / 178, rtol=1e-5)
      # The cheeks the skin tone is read from: two small discs between eyes and mouth.
      cheeks = celeba.cheek_mask(xy, celeba.ALIGNED_HW)
      assert 100 <= cheeks.sum() < 0.05 * np.prod(celeba.ALIGNED_HW)
      ys, xs = np.nonzero(cheeks)
      assert xy[:2, 1].max() < ys.min() and ys.max() < xy[3:, 1].min()
      assert np.isfinite(r["skin_ita"])
  # CelebA has no skin-type label: its groups say "pale" / "not_pale", never "darker".
  source = sources.load_source(NAME, split="train+validation+test", data_dir=data_dir,
                               prepare=False)
  attributes = sources.read_attributes(source)
  names = groups.assign_groups(attributes, "Male,Pale_Skin").tolist()
  assert set(names) <= {"male_pale", "male_not_pale", "female_pale", "female_not_pale"}
  with pytest.raises(ValueError, match="no labelled skin type.*Pale_Skin is CelebA's"):
    groups.assign_groups(attributes, "skin,Male")
  assert set(groups.assign_groups(attributes, "ita_tone")) <= {"ita_lighter", "ita_darker"}


def test_kaggle_csv_layout_without_identity(tmp_path):
  manual = bf.write_celeba(str(tmp_path / "manual"), csv=True, kaggle_nested=True,
                           with_identity=False)
  builder = _prepare(tmp_path, manual)
  assert builder.info.splits["train"].num_examples == 3
  records = bf.read_split(NAME, "test", str(tmp_path / "data"))
  assert [int(r["Male"]) for r in records] == [1, 0]
  assert all(int(r["identity"]) == -1 for r in records)
  assert records[0]["landmarks"][0, 0] == pytest.approx(74 * 32 / 178)


def test_malformed_attribute_line_names_file_and_line(tmp_path):
  manual = bf.write_celeba(str(tmp_path / "manual"))
  path = os.path.join(manual, "list_attr_celeba.txt")
  lines = open(path).read().splitlines()
  cells = lines[4].split()
  lines[4] = " ".join(cells[:-3])  # Line 5 loses three values.
  open(path, "w").write("\n".join(lines) + "\n")
  with pytest.raises(errors.AnnotationError, match=r"list_attr_celeba\.txt, line 5: "
                     r"expected a file name and 40 values"):
    celeba.load_annotations(manual)
  lines[4] = " ".join(cells[:-1] + ["2"])  # Young = 2.
  open(path, "w").write("\n".join(lines) + "\n")
  with pytest.raises(errors.AnnotationError, match=r"line 5: Young of 000003.jpg must be"):
    celeba.load_annotations(manual)


def test_missing_folder_error_points_to_instructions(tmp_path):
  manual = bf.write_celeba(str(tmp_path / "manual"))
  os.rename(os.path.join(manual, "img_align_celeba"), os.path.join(manual, "images"))
  with pytest.raises(FileNotFoundError) as err:
    _prepare(tmp_path, manual)
  assert os.path.join(manual, "img_align_celeba") in str(err.value)
  assert "MANUAL_DOWNLOAD_INSTRUCTIONS" in str(err.value)
  with pytest.raises(FileNotFoundError, match="does not exist or is empty"):
    _prepare(tmp_path, tmp_path / "nowhere")


def test_corrupt_image_skipped_and_counted_or_strict(tmp_path):
  manual = bf.write_celeba(str(tmp_path / "manual"))
  bf.truncate(os.path.join(manual, "img_align_celeba", "000002.jpg"))
  with pytest.raises(errors.CorruptImageError, match="000002.jpg.*truncated"):
    bf.prepare(celeba.FacebiasCeleba, "crop_32", str(tmp_path / "strict"), manual,
               strict=True)
  builder = _prepare(tmp_path, manual)
  assert "skipped 1 corrupt image(s) (000002.jpg)" in builder.summaries["train"]
  records = bf.read_split(NAME, "train", str(tmp_path / "data"))
  assert [r["filename"].decode() for r in records] == ["000001.jpg", "000003.jpg"]


def test_convert_stock_example_matches_file_path():
  image = np.random.default_rng(0).integers(0, 255, (218, 178, 3), dtype=np.uint8)
  values = bf.celeba_attr_values("000004.jpg")
  stock = {
      "image": image,
      "attributes": {a: v > 0 for a, v in zip(celeba.ATTRIBUTES, values)},
      "landmarks": dict(zip(celeba.LANDMARKS, bf.landmarks_of("000004.jpg"))),
      "identity": {"Identity_No": 7},
  }
  record = celeba.convert_stock_example(stock, image_size=32, filename="x")
  expected = celeba.make_record(
      image, {a: int(v > 0) for a, v in zip(celeba.ATTRIBUTES, values)}, filename="x",
      image_size=32, identity=7,
      landmarks=np.array(bf.landmarks_of("000004.jpg")).reshape(5, 2))
  assert record.keys() == expected.keys()
  for key in record:
    np.testing.assert_array_equal(record[key], expected[key])
  assert record["identity"] == 7 and record["Male"] == 0


@pytest.mark.slow
def test_stock_tfds_celeb_a_is_converted(tmp_path, monkeypatch):
  """A stock ``celeb_a`` prepared (from fixture files) in manual_dir is read and converted."""
  files = bf.write_celeba(str(tmp_path / "files"))
  paths = {"img_align_celeba": os.path.join(files, "img_align_celeba"),
           "list_eval_partition": os.path.join(files, "list_eval_partition.txt"),
           "list_attr_celeba": os.path.join(files, "list_attr_celeba.txt"),
           "landmarks_celeba": os.path.join(files, "list_landmarks_align_celeba.txt"),
           "identity_celeba": os.path.join(files, "identity_CelebA.txt")}

  def fake_iter_archive(self, path):
    for name in sorted(os.listdir(path)):
      with open(os.path.join(path, name), "rb") as f:
        yield f"img_align_celeba/{name}", io.BytesIO(f.read())

  # The stock builder downloads from Google Drive: hand it the fixture files instead.
  monkeypatch.setattr(tfds.download.DownloadManager, "download", lambda self, urls: paths)
  monkeypatch.setattr(tfds.download.DownloadManager, "iter_archive", fake_iter_archive)
  stock_dir = str(tmp_path / "stock")
  tfds.builder("celeb_a", data_dir=stock_dir).download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP))
  monkeypatch.undo()

  _prepare(tmp_path, stock_dir)
  converted = bf.read_split(NAME, "train", str(tmp_path / "data"))
  bf.write_celeba(str(tmp_path / "again"))
  direct = bf.read_split(NAME, "train", str(_prepare(tmp_path / "d", tmp_path / "again")
                                            .data_dir_root))
  assert len(converted) == len(direct) == 3
  # The stock builder shuffles its records: pair them by identity.
  converted = sorted(converted, key=lambda r: int(r["identity"]))
  for a, b in zip(converted, direct):
    assert [a[k] for k in celeba.ATTRIBUTES + ("identity",)] == \
        [b[k] for k in celeba.ATTRIBUTES + ("identity",)]
    np.testing.assert_allclose(a["landmarks"], b["landmarks"])
    # Both decode the same JPEG bytes; only the stock record's re-encoding differs.
    assert np.abs(a["image"].astype(int) - b["image"].astype(int)).mean() < 8
