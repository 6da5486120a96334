"""TFDS builder ``facebias_utkface``: UTKFace, labels parsed from the file names.

UTKFace (Zhang, Song & Qi, "Age Progression/Regression by Conditional Adversarial
Autoencoder", CVPR 2017; project page "UTKFace - Large Scale Face Dataset") has
over 20,000 faces aged 0-116. Each file is named
``[age]_[gender]_[race]_[date&time].jpg`` (the "Aligned&Cropped Faces" zip, 200x200,
adds ``.chip.jpg``: ``25_0_2_20170116174525125.jpg.chip.jpg``) with

* gender: 0 = male, 1 = female (so ``Male = 1 - gender``);
* race: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.

A few official files have malformed names (e.g. a missing race); they are skipped,
counted and reported in one warning with examples, never fatal.

UTKFace has no official split: each file goes to ``train`` (80 %) or ``test``
(20 %) by a hash of its file name (:func:`common.hash_split`), the same on every
machine and independent of which other files are present.

Configs ``size_<n>`` (32, 64, 128, 224): the whole (already aligned and cropped)
face resized to n². Features: ``image``, ``filename``, ``label`` (1), ``is_face`` (1),
``Male``, ``age`` (years), ``Young`` (age < 40, the FairFace bins' boundary used
here too), ``race`` (0-4).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from facebias_jax.data.builders import common, errors, image_io

DATASET = "facebias_utkface"
RACES = ("White", "Black", "Asian", "Indian", "Others")
# The dataset's own names of its multi-valued attributes (group names use them).
VALUE_NAMES = {"race": RACES}
YOUNG_BELOW_AGE = 40
MAX_AGE = 130
SPLIT_FRACTIONS = (("train", 0.8), ("test", 0.2))
SIZES = (32, 64, 128, 224)
_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.jpg(\.chip\.jpg)?$", re.IGNORECASE)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Get UTKFace from its project page ("UTKFace - Large Scale Face Dataset"): download
the "Aligned&Cropped Faces" archive (UTKFace.tar.gz) and extract it into manual_dir:

  manual_dir/
    UTKFace/25_0_2_20170116174525125.jpg.chip.jpg ...   ([age]_[gender]_[race]_[date&time].jpg)

(the images may also sit directly in manual_dir).
"""


@dataclasses.dataclass(frozen=True)
class UtkLabels:
  """Labels encoded in one UTKFace file name."""

  age: int
  male: int
  race: int


def parse_filename(name: str) -> UtkLabels | None:
  """Parses ``[age]_[gender]_[race]_[date&time].jpg[.chip.jpg]``; None if malformed."""
  match = _NAME.match(name)
  if match is None:
    return None
  age, gender, race = (int(match.group(i)) for i in (1, 2, 3))
  if age > MAX_AGE or gender not in (0, 1) or race not in range(len(RACES)):
    return None
  return UtkLabels(age=age, male=1 - gender, race=race)


def image_dir(manual_dir: epath.Path) -> epath.Path:
  """``manual_dir/UTKFace`` when present, else ``manual_dir`` itself."""
  nested = manual_dir / "UTKFace"
  return nested if nested.is_dir() else manual_dir


def split_of(name: str) -> str:
  """The documented, deterministic split of a file name."""
  return common.hash_split(name, SPLIT_FRACTIONS)


def list_files(manual_dir: epath.Path) -> tuple[list[tuple[epath.Path, UtkLabels]], list[str]]:
  """``([(path, labels), ...], malformed names)`` of the JPEGs in the image folder."""
  folder = image_dir(manual_dir)
  good, bad = [], []
  for path in image_io.list_images(folder, recursive=False):
    labels = parse_filename(path.name)
    if labels is None:
      bad.append(path.name)
    else:
      good.append((path, labels))
  if not good:
    raise errors.missing_path_error(
        folder / "[age]_[gender]_[race]_[date&time].jpg", dataset=DATASET,
        what="UTKFace images named like 25_0_2_20170116174525125.jpg.chip.jpg"
        + (f" (found only malformed names such as {bad[:3]})" if bad else ""))
  return good, bad


def attribute_features(image_size: int) -> dict[str, tfds.features.FeatureConnector]:
  """UTKFace's per-example features besides image/label/is_face/filename."""
  del image_size
  return {**common.int_features(("Male", "age", "Young", "race")), **common.ita_features()}


def examples(root: epath.Path, split: str, image_size: int, reader: image_io.ImageReader,
             ) -> Iterator[tuple[str, dict]]:
  """Records of one split, sorted by file name."""
  files, malformed = list_files(root)
  for name in malformed:
    # Counted in the split the name hashes to, so each is reported once, in the
    # warning logged after that split.
    if split_of(name) == split:
      reader.note("malformed file name (not [age]_[gender]_[race]_[date&time].jpg), "
                  "skipped", name)
  for path, labels in files:
    if split_of(path.name) != split:
      continue
    image = reader.read(path)
    if image is None:
      continue
    size = int(image_size)
    face = image_io.resize(image, (size, size))
    yield path.name, {
        **common.base_record(face, path.name, is_face=True),
        "Male": np.int32(labels.male), "age": np.int32(labels.age),
        "Young": np.int32(labels.age < YOUNG_BELOW_AGE), "race": np.int32(labels.race),
        common.SKIN_ITA: common.central_ita(image),  # Full resolution.
    }


SOURCE = common.FaceSource(
    name="utkface", dataset=DATASET, instructions=MANUAL_DOWNLOAD_INSTRUCTIONS,
    splits=lambda root: [s for s, _ in SPLIT_FRACTIONS],
    attribute_features=attribute_features, examples=examples, value_names=VALUE_NAMES,
    split_fractions=dict(SPLIT_FRACTIONS))


class FacebiasUtkface(common.ManualBuilder):
  """UTKFace aligned & cropped faces with age, sex and race from the file names."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = common.size_configs(SIZES)
  DEFAULT_BUILDER_CONFIG_NAME = "size_64"

  def _info(self) -> tfds.core.DatasetInfo:
    return self._dataset_info(attribute_features(self.builder_config.image_size),
                              homepage="https://susanqq.github.io/UTKFace/",
                              value_names=VALUE_NAMES)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._manual_root(dl_manager)
    list_files(root)  # Fails early, before any split is written, if nothing is there.
    return {split: self._generate_examples(examples, root, split)
            for split, _ in SPLIT_FRACTIONS}
