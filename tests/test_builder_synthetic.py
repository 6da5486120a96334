"""Tests of the ``facebias_synthetic_faces`` TFDS builder on tiny custom configs."""

import numpy as np
import pytest
import tensorflow_datasets as tfds


from facebias_jax.data import groups
from facebias_jax.data.builders.synthetic_faces import DEFAULT_SIZES, SyntheticFacesConfig
from facebias_jax.data.builders.synthetic_faces import synthetic_faces

SIZES = {"train": 40, "validation": 8, "test": 16}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  config = SyntheticFacesConfig(name="tiny_faces16", image_size=16, sizes=SIZES,
                                chunk_size=16, num_workers=1)
  builder = tfds.builder("facebias_synthetic_faces", config=config, data_dir=data_dir)
  builder.download_and_prepare()
  return builder


def test_default_configs_are_registered():
  cls = tfds.builder_cls("facebias_synthetic_faces")
  assert set(cls.builder_configs) >= {"faces_vs_nonfaces_64", "faces_vs_nonfaces_128",
                                      "sex_64", "sex_128"}
  config = cls.builder_configs["sex_128"]
  assert (config.task, config.image_size) == ("sex", 128)
  assert config.split_sizes() == DEFAULT_SIZES
  assert DEFAULT_SIZES["train"] > DEFAULT_SIZES["test"] > 0


def test_splits_counts_and_format(prepared):
  assert {k: v.num_examples for k, v in prepared.info.splits.items()} == SIZES
  assert prepared.info.file_format.value == "array_record"
  source = prepared.as_data_source(split="train")
  assert len(source) == SIZES["train"]


def test_record_features(prepared):
  record = prepared.as_data_source(split="validation")[0]
  assert record["image"].shape == (16, 16, 3) and record["image"].dtype == np.uint8
  assert record["mask"].shape == (16, 16) and record["mask"].dtype == np.bool_
  for name in ("Male", "Young", "skin_type", "is_face", "Eyeglasses", "label"):
    assert name in record
  features = prepared.info.features
  assert features["Male"].np_dtype == np.int32
  assert features["label"].names == ["non_face", "face"]


def test_records_match_the_generator(prepared):
  """Split 'train' chunk 0 is exactly synthetic.generate with the chunk seed."""
  from facebias_jax.data import synthetic
  expected = synthetic.generate(16, seed=synthetic_faces.chunk_seed(0, "train", 0),
                                image_size=16, task="faces_vs_nonfaces")
  source = prepared.as_data_source(split="train")
  for i in (0, 7, 15):
    record = source[i]
    np.testing.assert_array_equal(record["image"], expected["image"][i])
    np.testing.assert_array_equal(record["mask"], expected["mask"][i])
    assert record["label"] == expected["label"][i]
    assert record["skin_type"] == expected["attributes"]["skin_type"][i]


def test_test_split_is_balanced_and_splits_differ(prepared):
  test = prepared.as_data_source(split="test")
  records = [test[i] for i in range(len(test))]
  attrs = {k: np.array([r[k] for r in records]) for k in ("skin_type", "Male", "is_face")}
  assert 0 < attrs["is_face"].sum() < len(records)  # Non-faces are in the faces test set.
  names = groups.assign_groups(attrs, "skin,Male")
  faces = names[names != groups.UNKNOWN]
  counts = {g: int((faces == g).sum()) for g in np.unique(faces)}
  assert len(counts) == 4 and len(set(counts.values())) == 1, counts
  train0 = prepared.as_data_source(split="train")[0]["image"]
  assert not np.array_equal(train0, records[0]["image"])


def test_chunk_seeds_are_distinct():
  seeds = {synthetic_faces.chunk_seed(0, split, c) for split in SIZES for c in range(3)}
  assert len(seeds) == 9
  assert synthetic_faces.chunk_seed(0, "train", 1) == synthetic_faces.chunk_seed(0, "train", 1)


@pytest.mark.parametrize("kwargs,match", [
    ({"task": "age"}, "task='age'"),
    ({"sizes": {"dev": 3}}, "unknown split"),
    ({"knobs": {"balanced": True}}, "'balanced' is not a knob"),
    ({"image_encoding": "jpeg"}, "image_encoding"),
])
def test_config_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    SyntheticFacesConfig(name="bad", **kwargs)


def test_png_encoding_round_trips(tmp_path):
  config = SyntheticFacesConfig(name="tiny_sex_png", task="sex", image_size=16,
                                sizes={"train": 4, "validation": 0, "test": 4},
                                image_encoding="png", num_workers=1)
  builder = tfds.builder("facebias_synthetic_faces", config=config, data_dir=str(tmp_path))
  builder.download_and_prepare()
  assert set(builder.info.splits) == {"train", "test"}
  record = builder.as_data_source(split="train")[0]
  assert record["image"].shape == (16, 16, 3)
  assert record["label"] == record["Male"]  # Task "sex": label 1 = Male.
