"""Tests of the shared builder helpers: errors, annotation readers, images, face crops."""

import functools

import cv2
import numpy as np
import pytest

from facebias_jax import faces
from facebias_jax.data.builders import annotations, common, errors, image_io
import builder_fixtures as bf


def _encoded(ext: str, shape=(40, 30)) -> bytes:
  image = np.random.default_rng(0).integers(0, 255, shape + (3,), dtype=np.uint8)
  ok, buf = cv2.imencode(ext, image)
  assert ok
  return buf.tobytes()


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_decode_image_rejects_truncated_and_garbage(ext):
  data = _encoded(ext)
  assert image_io.decode_image(data).shape == (40, 30, 3)
  with pytest.raises(errors.CorruptImageError, match="truncated"):
    image_io.decode_image(data[: len(data) // 2], "x" + ext)
  with pytest.raises(errors.CorruptImageError, match="not a decodable"):
    image_io.decode_image(b"this is not an image", "notes.jpg")
  with pytest.raises(errors.CorruptImageError, match="empty"):
    image_io.decode_image(b"", "empty.jpg")


def test_image_reader_skips_counts_and_strict_raises(tmp_path):
  good = bf.write_image(str(tmp_path / "good.jpg"))
  bad = bf.write_image(str(tmp_path / "bad.jpg"))
  bf.truncate(bad)
  reader = image_io.ImageReader("facebias_test")
  assert reader.read(good).dtype == np.uint8
  assert reader.read(bad) is None
  reader.note("no face found, centre crop used", "a.jpg")
  line = reader.log_summary("train", 1)
  assert "wrote 1 examples" in line and "skipped 1 corrupt image(s) (bad.jpg)" in line
  assert "no face found, centre crop used: 1 image(s) (a.jpg)" in line
  assert reader.skipped == [] and reader.notes == {}  # Reset for the next split.
  with pytest.raises(errors.CorruptImageError, match="strict=True"):
    image_io.ImageReader("facebias_test", strict=True).read(bad)
  with pytest.raises(FileNotFoundError, match="missing.jpg"):
    reader.read(tmp_path / "missing.jpg")


def test_missing_path_error_names_path_and_instructions(tmp_path):
  with pytest.raises(FileNotFoundError) as err:
    errors.require_path(tmp_path / "imgs", dataset="facebias_ppb", is_dir=True,
                        what="the images folder imgs/")
  message = str(err.value)
  assert str(tmp_path / "imgs") in message
  assert "MANUAL_DOWNLOAD_INSTRUCTIONS" in message and "docs/datasets.md" in message


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_read_csv_any_line_ending_keeps_line_numbers(tmp_path, ending):
  path = tmp_path / "m.csv"
  path.write_bytes(("\ufeffa,b" + ending + "1,x" + ending + ending + '2,"y, z"' + ending)
                   .encode("utf-8"))
  header, rows = annotations.read_csv(path)
  assert header == ["a", "b"]
  assert rows == [(2, ["1", "x"]), (4, ["2", "y, z"])]


def test_read_text_lines_and_annotation_errors(tmp_path):
  path = tmp_path / "t.txt"
  path.write_text("3\r\nname  v\r\n\r\na 1\r\n")
  assert annotations.read_text_lines(path) == [(1, "3"), (2, "name  v"), (4, "a 1")]
  with pytest.raises(errors.AnnotationError, match=r"t\.txt, line 7: .*one of \[0, 1\]"):
    annotations.parse_int(path, 7, "5", "flag", valid=(0, 1))
  with pytest.raises(errors.AnnotationError, match="line 1: no column for 'skin_type'"):
    annotations.resolve_columns(path, ["file", "Gender"], {"gender": ("gender",),
                                                       "skin_type": ("numeric",)})
  cols = annotations.resolve_columns(path, ["File", "Skin_Color"],
                                {"file": ("file",), "skin": ("skin color",),
                                 "country": ("country",)}, optional=("country",))
  assert cols == {"file": 0, "skin": 1}


def test_crop_and_resize_geometry():
  image = np.zeros((20, 40, 3), np.uint8)
  image[:, 20:] = 255
  assert image_io.center_square_box(20, 40) == (10, 0, 30, 20)
  out = image_io.crop_resize(image, (10, 0, 30, 20), 10)
  assert out.shape == (10, 10, 3) and out[:, :4].max() == 0 and out[:, 6:].min() == 255
  padded = image_io.crop_resize(image, (-10, 0, 10, 20), 20)  # Leaves the image: black.
  assert padded[:, :10].max() == 0
  out, scale, (x_off, y_off) = image_io.resize_pad(image, 16)
  assert out.shape == (16, 16, 3) and scale == pytest.approx(0.4) and (x_off, y_off) == (0, 4)
  assert out[:4].max() == 0 and out[12:].max() == 0  # Black bars above and below.
  assert faces.square_around((10, 10, 30, 20), 0.25) == (5, 0, 35, 30)


def test_face_crop_uses_detector_and_falls_back():
  image = np.zeros((40, 60, 3), np.uint8)
  image[10:20, 30:40] = 200
  crop, found = image_io.face_crop(image, 8, margin=0.0, detector=lambda im: (30, 10, 40, 20))
  assert found and crop.min() == 200
  crop, found = image_io.face_crop(image, 8, detector=lambda im: None)
  assert not found and crop.shape == (8, 8, 3)
  # The real detectors load and find nothing in a blank image.
  for detector in faces.DETECTORS:
    assert faces.detect_largest_face(np.full((64, 64, 3), 128, np.uint8),
                                     detector=detector) is None


def test_hash_split_is_deterministic_and_proportional():
  fractions = [("train", 0.8), ("test", 0.2)]
  splits = [common.hash_split(f"{i}.jpg", fractions) for i in range(2000)]
  assert splits == [common.hash_split(f"{i}.jpg", fractions) for i in range(2000)]
  assert 0.75 < splits.count("train") / 2000 < 0.85


@pytest.mark.parametrize("detector", ["haar", "cnn"])
def test_detectors_find_synthetic_faces(detector):
  """The real detectors on procedurally drawn faces: boxes land on the face mask."""
  from facebias_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  data = synthetic.generate(4, seed=0, image_size=256, task="sex")
  found = 0
  for image, mask in zip(data["image"], data["mask"]):
    box = faces.detect_largest_face(image, detector=detector)
    if box is not None:
      found += 1
      x0, y0, x1, y1 = box
      assert mask[y0:y1, x0:x1].mean() > 2 * mask.mean()  # Mostly face inside the box.
      crop, ok = image_io.face_crop(image, 32, detector=functools.partial(
          faces.detect_largest_face, detector=detector))
      assert ok and crop.shape == (32, 32, 3)
  assert found >= 1
