"""TFDS builder ``facebias_ppb``: the Pilot Parliaments Benchmark (PPB).

PPB (Buolamwini & Gebru, "Gender Shades", FAT* 2018; distributed by the Gender
Shades project / MIT Media Lab on request) holds 1,270 portraits of members of six
national parliaments (Rwanda, Senegal, South Africa, Iceland, Finland, Sweden),
balanced over sex and skin type. It is the evaluation set of the DB-VAE paper:
one ``test`` split, every image a face (``label`` = 1).

``PPB-2017-metadata.csv`` lists each image with its gender, Fitzpatrick skin type
(``numeric``, 1-6) and the binary ``skin color`` (lighter = types I-III, darker =
IV-VI), plus the country. Some copies of that file use old-Mac ``\\r``-only line
endings; both are read (:func:`annotations.read_csv`).

Configs:

* ``cropped_<size>`` (32, 64, 128, 224): the largest face found by the face detector
  (``PpbConfig.detector``, default ``facebias_jax.faces.DEFAULT_DETECTOR``, dlib's CNN;
  ``"haar"`` was the only one before version 1.2.0), with a 20 % margin each side,
  squared and resized. Where no face is found the largest centred square is used
  instead; those images have ``face_found`` = 0, every evaluation report shows the
  detection rate per group, and the count is logged after preparing (and kept in
  ``builder.summaries``).
* ``full_<size>`` (32, 256, 512): the whole portrait resized so its long side is
  ``size``, centred on a black square (the protocol that slides a face classifier
  over the whole image).

Features: ``image``, ``filename``, ``label`` (1), ``is_face`` (1), ``Male`` (0/1),
``skin_type`` (1-6), ``skin`` (0 lighter / 1 darker), ``country`` (text),
``face_found`` (1 when the detector found the face; always 1 for ``full_*``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from facebias_jax import faces
from facebias_jax.data.builders import annotations, common, errors, image_io

DATASET = "facebias_ppb"
METADATA = "PPB-2017-metadata.csv"
MODES = ("cropped", "full")
COLUMNS = {
    "file": ("file", "filename", "file name", "image", "img", "name"),
    "gender": ("gender", "sex"),
    "skin_type": ("numeric", "fitzpatrick", "skin type", "fitzpatrick skin type", "type"),
    "skin": ("skin color", "skin colour", "skin", "skin tone"),
    "country": ("country", "nationality"),
}
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}
_GENDERS = {"male": 1, "m": 1, "man": 1, "female": 0, "f": 0, "woman": 0}
_SKINS = {"lighter": 0, "light": 0, "darker": 1, "dark": 1}

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Request PPB from the Gender Shades project (gendershades.org, "Pilot Parliaments
Benchmark", MIT Media Lab) and unzip it into manual_dir:

  manual_dir/
    PPB-2017-metadata.csv     columns: id, file, gender, numeric (Fitzpatrick 1-6),
                              skin color (lighter/darker), country
    imgs/0001.jpg ...         the images named in the `file` column

(a PPB-2017/ folder holding these two is found too).
"""


@dataclasses.dataclass(eq=False)
class PpbConfig(tfds.core.BuilderConfig):
  """One PPB variant.

  Attributes:
    mode: ``"cropped"`` (face crop) or ``"full"`` (whole image, padded).
    image_size: side of the square output images.
    margin: face-crop context on each side, as a fraction of the face box.
    detector: the face detector of ``cropped`` (``facebias_jax.faces.DETECTORS``).
  """

  mode: str = "cropped"
  image_size: int = 64
  margin: float = 0.2
  detector: str = faces.DEFAULT_DETECTOR

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"PpbConfig {self.name!r}: mode={self.mode!r} is not one of {MODES}.")
    faces.check_detector(self.detector, flag=f"PpbConfig({self.name!r}).detector")
    what = (f"largest face ({self.detector} detector) + margin" if self.mode == "cropped"
            else "whole image, aspect kept, padded")
    common.finish_config(self, f"{what}, {self.image_size}x{self.image_size}")


@dataclasses.dataclass(frozen=True)
class PpbRow:
  """One parsed metadata row."""

  file: str
  male: int
  skin_type: int
  skin: int
  country: str
  line_no: int


def _root(manual_dir: epath.Path) -> epath.Path:
  nested = manual_dir / "PPB-2017"
  return nested if (nested / METADATA).is_file() else manual_dir


def parse_skin_type(path, line_no: int, value: str) -> int:
  """Fitzpatrick type 1-6 from ``"3"``, ``"3.0"`` or Roman ``"III"``."""
  key = value.strip().lower()
  if key in _ROMAN:
    return _ROMAN[key]
  try:
    number = float(key)
  except ValueError:
    number = -1.0
  if number not in (1, 2, 3, 4, 5, 6):
    raise errors.AnnotationError(path, line_no, f"Fitzpatrick skin type must be 1-6 (or "
                                 f"I-VI), got {value!r}.")
  return int(number)


def read_metadata(manual_dir: epath.Path) -> list[PpbRow]:
  """Parses ``PPB-2017-metadata.csv`` (any line endings) into rows."""
  path = errors.require_path(_root(manual_dir) / METADATA, dataset=DATASET,
                             what=f"the metadata file {METADATA}")
  header, rows = annotations.read_csv(path)
  cols = annotations.resolve_columns(path, header, COLUMNS, optional=("skin", "country"))
  parsed = []
  for line_no, cells in rows:
    if len(cells) < len(header):
      raise errors.AnnotationError(path, line_no, f"expected {len(header)} fields "
                                   f"({', '.join(header)}), got {len(cells)}.")
    skin_type = parse_skin_type(path, line_no, cells[cols["skin_type"]])
    skin = (annotations.lookup(path, line_no, _SKINS, cells[cols["skin"]], "skin color")
            if "skin" in cols else int(skin_type >= 4))
    parsed.append(PpbRow(
        file=cells[cols["file"]], line_no=line_no,
        male=annotations.lookup(path, line_no, _GENDERS, cells[cols["gender"]], "gender"),
        skin_type=skin_type, skin=skin,
        country=cells[cols["country"]] if "country" in cols else ""))
  return parsed


ITA_CROP_SIZE = 128


def process_image(image: np.ndarray, config: PpbConfig, *, detector=None
                  ) -> tuple[np.ndarray, bool]:
  """The output image of one portrait and whether a face was detected.

  Args:
    image: RGB uint8 portrait.
    config: the builder config (mode, size, margin).
    detector: face detector for ``cropped`` (default: ``config.detector``).

  Returns:
    ``(image, face_found)``; ``face_found`` is always True in ``full`` mode.
  """
  size = int(config.image_size)
  if config.mode == "full":
    return image_io.resize_pad(image, size)[0], True
  detector = detector or functools.partial(faces.detect_largest_face,
                                           detector=config.detector)
  return image_io.face_crop(image, size, margin=float(config.margin), detector=detector)


def examples(root: epath.Path, split: str, image_size: int, reader: image_io.ImageReader,
             config: PpbConfig | None = None) -> Iterator[tuple[str, dict]]:
  """Records of PPB (only split ``test``) in metadata order."""
  del split  # PPB is one evaluation set.
  config = config or PpbConfig(name=f"cropped_{image_size}", image_size=image_size)
  rows = read_metadata(root)
  image_dir = errors.require_path(_root(root) / "imgs", dataset=DATASET, is_dir=True,
                                  what="the images folder imgs/")
  for row in rows:
    image = reader.read(image_dir / row.file)
    if image is None:
      continue
    # One detection per portrait, shared by the output crop and the skin-tone crop.
    box = faces.detect_largest_face(image, detector=config.detector)
    detect = lambda _: box  # noqa: E731
    out, found = process_image(image, config, detector=detect)
    if not found:
      reader.note("no face found, centre crop used", row.file)
    # The skin tone is estimated on a face crop in both modes (a full portrait's centre
    # is often shirt or background), at a resolution with enough skin pixels.
    face = image_io.face_crop(image, ITA_CROP_SIZE, margin=float(config.margin),
                              detector=detect)[0]
    yield row.file, {
        **common.base_record(out, row.file, is_face=True), "Male": np.int32(row.male),
        "skin_type": np.int32(row.skin_type), "skin": np.int32(row.skin),
        "country": row.country, "face_found": np.int32(found),
        common.SKIN_ITA: common.central_ita(face),
    }


def _configs() -> list[PpbConfig]:
  return ([PpbConfig(name=f"cropped_{s}", mode="cropped", image_size=s)
           for s in (32, 64, 128, 224)]
          + [PpbConfig(name=f"full_{s}", mode="full", image_size=s) for s in (32, 256, 512)])


class FacebiasPpb(common.ManualBuilder):
  """Pilot Parliaments Benchmark: faces balanced over sex x skin type (test only)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = _configs()
  DEFAULT_BUILDER_CONFIG_NAME = "cropped_64"

  def _info(self) -> tfds.core.DatasetInfo:
    return self._dataset_info(
        {**common.int_features(("Male", "skin_type", "skin", "face_found")),
         "country": tfds.features.Text(), **common.ita_features()},
        homepage="http://gendershades.org/")

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._manual_root(dl_manager)
    return {"test": self._generate_examples(examples, root, "test",
                                            config=self.builder_config)}
