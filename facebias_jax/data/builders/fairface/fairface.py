"""TFDS builder ``facebias_fairface``: FairFace, balanced over seven race groups.

FairFace (Kärkkäinen & Joo, "FairFace: Face Attribute Dataset for Balanced Race,
Gender, and Age", WACV 2021; project repository "joojs/fairface") has 108,501
faces from YFCC-100M, labelled with

* ``gender``: Male / Female;
* ``age``: one of nine bins ``0-2``, ``3-9``, ``10-19``, ``20-29``, ``30-39``,
  ``40-49``, ``50-59``, ``60-69``, ``more than 70``;
* ``race``: White, Black, Latino_Hispanic, East Asian, Southeast Asian, Indian,
  Middle Eastern.

``fairface_label_train.csv`` / ``fairface_label_val.csv`` (columns ``file, age,
gender, race, service_test``) give the ``train`` and ``validation`` splits; ``file``
is relative to the images folder (``train/1.jpg``, ``val/1.jpg``).

Configs ``size_<n>`` (32, 64, 128, 224): the whole image (a face with the release's
padding) resized to n². Features: ``image``, ``filename``, ``label`` (1),
``is_face`` (1), ``Male``, ``age_bin`` (0-8, index in :data:`AGE_BINS`), ``Young``
(age bin below 40), ``race`` (0-6, index in :data:`RACES`), ``service_test``
(0/1; -1 when the column is absent).
"""

from __future__ import annotations

from typing import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from facebias_jax.data.builders import annotations, common, errors, image_io

DATASET = "facebias_fairface"
AGE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
            "more than 70")
YOUNG_BINS = 5  # Bins 0..4 are under 40 years.
RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
         "Middle Eastern")
# The dataset's own names of its multi-valued attributes (group names use them).
VALUE_NAMES = {"race": RACES, "age_bin": AGE_BINS}
LABEL_FILES = {"train": "fairface_label_train.csv", "validation": "fairface_label_val.csv"}
# Folders of the two official image zips, tried when `file` is not under manual_dir.
IMAGE_ROOTS = ("", "fairface-img-margin025-trainval", "fairface-img-margin125-trainval")
COLUMNS = {"file": ("file",), "age": ("age",), "gender": ("gender",), "race": ("race",),
           "service_test": ("service_test",)}
SIZES = (32, 64, 128, 224)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Get FairFace from its project repository ("joojs/fairface": the padding=0.25 image
zip fairface-img-margin025-trainval.zip and the two label CSVs) and put them in
manual_dir:

  manual_dir/
    fairface_label_train.csv      file,age,gender,race,service_test
    fairface_label_val.csv
    train/1.jpg ...               (the paths in the `file` column; they may also sit
    val/1.jpg ...                  under fairface-img-margin025-trainval/)
"""


_AGE_INDEX = {annotations.normalize_name(b): i for i, b in enumerate(AGE_BINS)}
_AGE_INDEX[annotations.normalize_name("70+")] = len(AGE_BINS) - 1
_RACE_INDEX = {annotations.normalize_name(r): i for i, r in enumerate(RACES)}
_GENDER = {"male": 1, "female": 0}
_BOOL = {"true": 1, "false": 0, "1": 1, "0": 0}


def read_labels(path: epath.Path) -> list[dict]:
  """Parses one FairFace label CSV into dicts (``file``, ints, ``line_no``)."""
  header, rows = annotations.read_csv(path)
  cols = annotations.resolve_columns(path, header, COLUMNS, optional=("service_test",))
  parsed = []
  for line_no, cells in rows:
    if len(cells) < len(header):
      raise errors.AnnotationError(path, line_no, f"expected {len(header)} fields "
                                   f"({', '.join(header)}), got {len(cells)}.")
    def lookup(table, column, what, expected):
      return annotations.lookup(path, line_no, table, cells[cols[column]], what,
                           expected=expected)

    parsed.append({
        "file": cells[cols["file"]], "line_no": line_no,
        "age_bin": lookup(_AGE_INDEX, "age", "age bin", AGE_BINS),
        "Male": lookup(_GENDER, "gender", "gender", ("Male", "Female")),
        "race": lookup(_RACE_INDEX, "race", "race", RACES),
        "service_test": (lookup(_BOOL, "service_test", "service_test", ("True", "False"))
                         if "service_test" in cols else -1),
    })
  return parsed


def image_root(manual_dir: epath.Path, first_file: str) -> epath.Path:
  """The folder the CSV's ``file`` paths are relative to (see :data:`IMAGE_ROOTS`)."""
  for sub in IMAGE_ROOTS:
    root = manual_dir / sub if sub else manual_dir
    if (root / first_file).is_file():
      return root
  raise errors.missing_path_error(manual_dir / first_file, dataset=DATASET,
                                  what=f"the image {first_file} named in the label CSV "
                                  f"(also looked under {list(IMAGE_ROOTS[1:])})")


def attribute_features(image_size: int) -> dict[str, tfds.features.FeatureConnector]:
  """FairFace's per-example features besides image/label/is_face/filename."""
  del image_size
  return {**common.int_features(("Male", "age_bin", "Young", "race", "service_test")),
          **common.ita_features()}


def examples(root: epath.Path, split: str, image_size: int, reader: image_io.ImageReader,
             ) -> Iterator[tuple[str, dict]]:
  """Records of one split in CSV order."""
  csv_path = errors.require_path(root / LABEL_FILES[split], dataset=DATASET,
                                 what=f"the {split} label file {LABEL_FILES[split]}")
  rows = read_labels(csv_path)
  if not rows:
    return
  images = image_root(root, rows[0]["file"])
  size = int(image_size)
  for row in rows:
    image = reader.read(images / row["file"])
    if image is None:
      continue
    face = image_io.resize(image, (size, size))
    yield row["file"], {
        **common.base_record(face, row["file"], is_face=True),
        common.SKIN_ITA: common.central_ita(image),  # Full resolution.
        "Male": np.int32(row["Male"]), "age_bin": np.int32(row["age_bin"]),
        "Young": np.int32(row["age_bin"] < YOUNG_BINS), "race": np.int32(row["race"]),
        "service_test": np.int32(row["service_test"]),
    }


SOURCE = common.FaceSource(
    name="fairface", dataset=DATASET, instructions=MANUAL_DOWNLOAD_INSTRUCTIONS,
    splits=lambda root: list(LABEL_FILES), attribute_features=attribute_features,
    examples=examples, value_names=VALUE_NAMES, split_fractions={"train": 0.87, "validation": 0.13})


class FacebiasFairface(common.ManualBuilder):
  """FairFace faces with sex, age bin and seven race groups."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = common.size_configs(SIZES)
  DEFAULT_BUILDER_CONFIG_NAME = "size_64"

  def _info(self) -> tfds.core.DatasetInfo:
    return self._dataset_info(attribute_features(self.builder_config.image_size),
                              homepage="https://github.com/joojs/fairface",
                              value_names=VALUE_NAMES)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._manual_root(dl_manager)
    for split, name in LABEL_FILES.items():  # Fail before writing anything.
      errors.require_path(root / name, dataset=DATASET,
                          what=f"the {split} label file {name}")
    return {split: self._generate_examples(examples, root, split) for split in LABEL_FILES}
