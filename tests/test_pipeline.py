"""Tests of the grain input pipeline over a tiny prepared synthetic dataset."""

import os

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from facebias_jax import imaging
from facebias_jax.data import pipeline, sources
import train_testlib

NAME = "facebias_synthetic_faces/tiny_pipe16"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  train_testlib.prepare_tiny_dataset(data_dir, name="tiny_pipe16", train=40, validation=8,
                                     test=16)
  return data_dir


@pytest.fixture(scope="module")
def source(data_dir):
  # Read back by name from files, as another process would.
  return sources.load_source(NAME, split="train", data_dir=data_dir, prepare=False)


@pytest.fixture(scope="module")
def records(source):
  return [source[i] for i in range(len(source))]


def _run(source, indices, **kwargs):
  kwargs.setdefault("process_index", 0)
  kwargs.setdefault("process_count", 1)
  return list(pipeline.batches(source, indices, **kwargs))


def test_num_batches():
  assert pipeline.num_batches(37, 8, train=True) == 4
  assert pipeline.num_batches(37, 8, train=False) == 5
  assert pipeline.num_batches(32, 8, train=False) == 4


def test_train_batch_shapes_dtypes_and_drop_remainder(source):
  out = _run(source, np.arange(37), batch_size=8, train=True)
  assert len(out) == 4
  batch = out[0]
  assert batch["image"].shape == (8, 16, 16, 3) and batch["image"].dtype == np.float32
  assert batch["label"].dtype == np.int32 and batch["index"].dtype == np.int64
  assert batch["mask"].dtype == np.bool_ and batch["mask"].all()
  assert batch["face_mask"].shape == (8, 16, 16) and batch["face_mask"].dtype == np.bool_
  assert batch["attributes"]["skin_type"].dtype == np.int32
  np.testing.assert_array_equal(np.concatenate([b["index"] for b in out]), np.arange(32))


def test_eval_pads_last_batch(source, records):
  out = _run(source, np.arange(13), batch_size=8, train=False)
  assert len(out) == 2
  last = out[1]
  np.testing.assert_array_equal(last["mask"], [True] * 5 + [False] * 3)
  np.testing.assert_array_equal(last["index"], [8, 9, 10, 11, 12, -1, -1, -1])
  assert (last["image"][5:] == 0).all() and (last["attributes"]["Male"][5:] == -1).all()
  np.testing.assert_array_equal(last["label"][:5], [records[i]["label"] for i in range(8, 13)])


def test_values_and_normalisation(source, records):
  order = np.array([5, 3, 30, 0])
  unit = _run(source, order, batch_size=4, train=False)[0]
  for row, i in enumerate(order):
    np.testing.assert_allclose(unit["image"][row], records[i]["image"] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(unit["face_mask"][row], records[i]["mask"])
    assert unit["label"][row] == records[i]["label"]
    assert unit["attributes"]["skin_type"][row] == records[i]["skin_type"]
  net = _run(source, order, batch_size=4, train=False, normalize="imagenet")[0]
  expected = (unit["image"] - imaging.IMAGENET_MEAN) / imaging.IMAGENET_STD
  np.testing.assert_allclose(net["image"], expected, atol=1e-5)


def test_resize_uses_inter_area(source, records):
  batch = _run(source, [2, 4], batch_size=2, train=False, image_size=8)[0]
  assert batch["image"].shape == (2, 8, 8, 3) and batch["face_mask"].shape == (2, 8, 8)
  expected = cv2.resize(records[2]["image"], (8, 8), interpolation=cv2.INTER_AREA)
  np.testing.assert_allclose(batch["image"][0], expected / 255.0, atol=1e-6)


def test_label_key(source, records):
  batch = _run(source, np.arange(8), batch_size=8, train=False, label_key="skin_type")[0]
  np.testing.assert_array_equal(batch["label"], [r["skin_type"] for r in records[:8]])
  with pytest.raises(ValueError, match="label_key='nope'.*available"):
    pipeline.batches(source, [0], batch_size=1, train=False, label_key="nope",
                     process_index=0, process_count=1)


def test_flips_follow_seed_epoch_position(source, records):
  order = np.random.default_rng(0).permutation(40)
  out = _run(source, order, batch_size=8, train=True, seed=3, epoch=1)
  images = np.concatenate([b["image"] for b in out])
  flips = pipeline.flip_decisions(40, seed=3, epoch=1)
  assert 0 < flips.sum() < 40
  for pos, i in enumerate(order):
    expected = records[i]["image"][:, ::-1] if flips[pos] else records[i]["image"]
    np.testing.assert_allclose(images[pos], expected / 255.0, atol=1e-6)
  again = _run(source, order, batch_size=8, train=True, seed=3, epoch=1)
  for a, b in zip(out, again):
    np.testing.assert_array_equal(a["image"], b["image"])
  other = _run(source, order, batch_size=8, train=True, seed=3, epoch=2)
  assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(out, other))
  plain = _run(source, order, batch_size=8, train=True, flip=False)
  np.testing.assert_allclose(plain[0]["image"][0], records[order[0]]["image"] / 255.0,
                             atol=1e-6)


def test_start_batch_resumes_identically(source):
  order = np.random.default_rng(1).permutation(40)
  kwargs = dict(batch_size=8, train=True, seed=7, epoch=4)
  full = _run(source, order, **kwargs)
  resumed = _run(source, order, start_batch=3, **kwargs)
  assert len(resumed) == len(full) - 3
  for a, b in zip(full[3:], resumed):
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(a["image"], b["image"])
  with pytest.raises(ValueError, match="start_batch=9"):
    pipeline.batches(source, order, start_batch=9, process_index=0, process_count=1, **kwargs)


CELEBA_CROP = ((0.7, 1.0), (1.0, 4.0 / 3.0))


def test_random_resized_crop_boxes_follow_torchvision_rules():
  rng = np.random.default_rng(0)
  boxes = [pipeline.random_resized_crop_box(64, 64, rng, scale=CELEBA_CROP[0],
                                            ratio=CELEBA_CROP[1]) for _ in range(500)]
  for y0, x0, h, w in boxes:
    assert 0 <= y0 and y0 + h <= 64 and 0 <= x0 and x0 + w <= 64
    # Area fraction and aspect ratio in range, up to the rounding to whole pixels.
    assert 0.7 - 0.05 <= h * w / 64 ** 2 <= 1.0
    assert 1.0 - 0.05 <= w / h <= 4 / 3 + 0.05
  assert len({b for b in boxes}) > 100  # Varied positions and sizes.
  # No try fits (scale 1 needs the whole image at ratio >= 2): the clamped centre crop.
  assert pipeline.random_resized_crop_box(40, 40, rng, scale=(1.0, 1.0), ratio=(2.0, 3.0)) == (
      10, 0, 20, 40)


def test_random_crops_are_deterministic_and_resume_identically(source, records):
  order = np.random.default_rng(5).permutation(40)
  kwargs = dict(batch_size=8, train=True, seed=3, epoch=1, random_crop=CELEBA_CROP)
  crops = _run(source, order, **kwargs)
  assert any(not np.allclose(b["image"][0], records[order[8 * k]]["image"] / 255.0)
             for k, b in enumerate(crops))
  again = _run(source, order, start_batch=2, **kwargs)
  for a, b in zip(crops[2:], again):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["face_mask"], b["face_mask"])  # Cropped alike.
  other = _run(source, order, **dict(kwargs, epoch=2))
  assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(crops, other))
  # Evaluation batches are never cropped.
  plain = _run(source, order[:8], batch_size=8, train=False, random_crop=CELEBA_CROP)
  np.testing.assert_allclose(plain[0]["image"][0], records[order[0]]["image"] / 255.0,
                             atol=1e-6)
  with pytest.raises(ValueError, match="random_crop"):
    _run(source, order, batch_size=8, train=True, random_crop=((0.9, 0.5), (1.0, 1.0)))


@pytest.mark.parametrize("train", [True, False])
def test_two_processes_cover_each_global_batch_once(source, train):
  order = np.random.default_rng(2).permutation(40)[:30]
  kwargs = dict(batch_size=8, train=train, seed=1)
  full = _run(source, order, **kwargs)
  parts = [_run(source, order, process_index=p, process_count=2, **kwargs) for p in (0, 1)]
  assert len(parts[0]) == len(parts[1]) == len(full)
  for g, b0, b1 in zip(full, *parts):
    assert len(b0["index"]) == len(b1["index"]) == 4
    np.testing.assert_array_equal(np.concatenate([b0["index"], b1["index"]]), g["index"])
    np.testing.assert_array_equal(np.concatenate([b0["image"], b1["image"]]), g["image"])
  with pytest.raises(ValueError, match="divisible by process_count=3"):
    pipeline.batches(source, order, batch_size=8, train=True, process_index=0, process_count=3)


def test_default_process_is_jax_process(source):
  batch = next(pipeline.batches(source, np.arange(4), batch_size=4, train=False))
  assert len(batch["index"]) == 4


def test_read_attributes_equal_records_and_are_cached(source, records, data_dir):
  attributes = sources.read_attributes(source)
  assert "label" not in attributes and {"Male", "Young", "skin_type", "is_face"} <= set(attributes)
  for name, values in attributes.items():
    assert values.dtype == (np.float32 if name == "skin_ita" else np.int32), name
    np.testing.assert_array_equal(values, [r[name] for r in records])
  # The estimated skin tone: NaN on non-faces, lighter for lower Fitzpatrick types.
  ita, skin_type = attributes["skin_ita"], attributes["skin_type"]
  assert np.isnan(ita[attributes["is_face"] == 0]).all()
  faces = attributes["is_face"] == 1
  assert np.isfinite(ita[faces]).all()
  assert ita[faces & (skin_type <= 2)].mean() > ita[faces & (skin_type >= 4)].mean() + 30
  np.testing.assert_array_equal(sources.read_column(source, "label"),
                                [r["label"] for r in records])
  cache = os.path.join(source.dataset_info.data_dir, "columns-train.npz")
  assert os.path.exists(cache)
  sources._columns_cache.clear()  # pylint: disable=protected-access
  np.testing.assert_array_equal(sources.read_attributes(source)["Male"], attributes["Male"])
  with pytest.raises(KeyError, match="'image' is not an integer scalar feature"):
    sources.read_column(source, "image")
  with pytest.raises(KeyError, match="'skin_ita' is not an integer"):
    sources.read_column(source, "skin_ita")


def test_in_memory_sources_work(records):
  small = [dict(r) for r in records[:6]]
  batch = _run(small, [5, 1], batch_size=2, train=False)[0]
  np.testing.assert_allclose(batch["image"][0], records[5]["image"] / 255.0, atol=1e-6)
  np.testing.assert_array_equal(sources.read_column(small, "Male"), [r["Male"] for r in small])
  images = sources.read_images(small, [3])
  np.testing.assert_array_equal(images[0], records[3]["image"])


def test_load_source_errors(data_dir, tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    sources.load_source("facebias_synthetic_faces/sex_64", split="train",
                         data_dir=str(tmp_path), prepare=False)
  message = str(e.value)
  assert "facebias_synthetic_faces/sex_64" in message and str(tmp_path) in message
  assert "prepare=True" in message
  with pytest.raises(ValueError, match="facebias_synthetic_faces"):
    sources.load_source("no_such_dataset_xyz/abc", split="train", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="no split 'dev'.*'train'"):
    sources.load_source(NAME, split="dev", data_dir=data_dir, prepare=False)


def test_bad_arguments(source):
  with pytest.raises(ValueError, match="indices must be in"):
    pipeline.batches(source, [0, 99], batch_size=2, train=False, process_index=0,
                     process_count=1)
  with pytest.raises(ValueError, match="normalize='none'"):
    pipeline.batches(source, [0], batch_size=1, train=False, normalize="none",
                     process_index=0, process_count=1)


class FacebiasPipelineManualProbe(tfds.core.GeneratorBasedBuilder):
  """A manual-download builder that only checks the error messages."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Put probe.txt into manual_dir."

  def _info(self):
    # DatasetInfo directly: dataset_info_from_configs needs a package directory.
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({"label": tfds.features.ClassLabel(num_classes=2)}))

  def _split_generators(self, dl_manager):
    path = os.path.join(dl_manager.manual_dir, "probe.txt")
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} is missing")
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    yield 0, {"label": 1}


def test_manual_dataset_errors_show_instructions(tmp_path):
  name = "facebias_pipeline_manual_probe"
  with pytest.raises(FileNotFoundError, match="Put probe.txt into manual_dir"):
    sources.load_source(name, split="train", data_dir=str(tmp_path), prepare=False)
  with pytest.raises(FileNotFoundError, match="(?s)does not exist.*Put probe.txt"):
    sources.load_source(name, split="train", data_dir=str(tmp_path),
                         manual_dir=str(tmp_path / "missing"))
  (tmp_path / "manual").mkdir()
  with pytest.raises(FileNotFoundError, match="(?s)does not exist or is empty.*Put probe.txt"):
    sources.load_source(name, split="train", data_dir=str(tmp_path),
                         manual_dir=str(tmp_path / "manual"))
  (tmp_path / "manual" / "other.txt").write_text("not the file")
  with pytest.raises(FileNotFoundError, match="(?s)probe.txt is missing.*Put probe.txt"):
    sources.load_source(name, split="train", data_dir=str(tmp_path),
                         manual_dir=str(tmp_path / "manual"))
  (tmp_path / "manual" / "probe.txt").write_text("ok")
  source = sources.load_source(name, split="train", data_dir=str(tmp_path),
                                manual_dir=str(tmp_path / "manual"))
  assert sources.read_column(source, "label").tolist() == [1]


@pytest.mark.parametrize("shape", [(3,), (5, 3), (4, 5, 3), (2, 4, 5, 3)])
def test_imagenet_normalisation_equals_the_formula_for_any_shape(shape):
  x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  expected = ((x.astype(np.float32) / np.float32(255.0) - imaging.IMAGENET_MEAN)
              / imaging.IMAGENET_STD)
  out = imaging.normalize_images(x, "imagenet")
  assert out.shape == shape and out.dtype == np.float32
  np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)
  np.testing.assert_allclose(imaging.to_uint8_images(out, "imagenet"), x)
