"""TFDS builder ``facebias_celeba``: CelebA from the official files (or a stock TFDS copy).

CelebA (Liu et al., "Deep Learning Face Attributes in the Wild", ICCV 2015; project
page "Large-scale CelebFaces Attributes (CelebA) Dataset", MMLAB, CUHK) has 202,599
aligned 178x218 face images of 10,177 identities with 40 binary attributes and 5
landmarks. Nothing is downloaded: ``manual_dir`` holds either

1. the official files (``img_align_celeba/``, ``list_attr_celeba.txt``,
   ``list_eval_partition.txt``, optionally ``identity_CelebA.txt`` and
   ``list_landmarks_align_celeba.txt``), or Kaggle's CSV copies of them; or
2. an already prepared stock TFDS ``celeb_a`` dataset (``manual_dir`` is then the
   TFDS ``data_dir`` that contains ``celeb_a/2.1.0/``), which is read with
   ``tfds.builder("celeb_a", data_dir=manual_dir)`` and converted record by record
   (:func:`convert_stock_example`).

Configs ``crop_<size>`` (32, 64, 128, 224): the square of the aligned image centred
on the face (``crop_box``, full width, rows 32..209) resized to size². Splits follow
``list_eval_partition``: 0 train, 1 validation, 2 test.

Features: ``image``, ``filename``, ``label`` (1 = face: every CelebA image is a
face; use ``label_key="Male"`` etc. for attribute tasks), ``is_face`` (1), the 40
attributes under their CelebA names as int32 0/1 (``Male``, ``Young``,
``Pale_Skin``, ``Eyeglasses``...), ``identity`` (int32, -1 when the identity file is
absent) and ``landmarks`` (float32 [5, 2] x,y of left eye, right eye, nose, left
and right mouth corner in output-image pixels; -1 when the landmark file is absent).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from facebias_jax import imaging
from facebias_jax.data.builders import annotations, common, errors, image_io

DATASET = "facebias_celeba"
ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald",
    "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young")
LANDMARKS = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
             "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")
SPLITS = ("train", "validation", "test")  # list_eval_partition values 0, 1, 2.
ALIGNED_HW = (218, 178)
# Square on the face in the aligned 178x218 frame: full width, centred on y=121
# (between the eyes, y~112, and the mouth, y~152), so hair and chin stay in view.
DEFAULT_CROP_BOX = (0, 32, 178, 210)
SIZES = (32, 64, 128, 224)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Get CelebA from its project page ("Large-scale CelebFaces Attributes (CelebA)
Dataset", MMLAB CUHK; or the Kaggle copy "CelebFaces Attributes (CelebA) Dataset"),
unzip img_align_celeba.zip and put the files in manual_dir:

  manual_dir/
    img_align_celeba/000001.jpg ...          (Kaggle: img_align_celeba/img_align_celeba/)
    list_attr_celeba.txt  (or list_attr_celeba.csv)          required
    list_eval_partition.txt (or list_eval_partition.csv)     required
    identity_CelebA.txt                                      optional (identity = -1)
    list_landmarks_align_celeba.txt (or .csv)                optional (landmarks = -1)

Alternatively manual_dir may be a TFDS data_dir holding a prepared stock `celeb_a`
(manual_dir/celeb_a/2.1.0/...); it is then read and converted.
"""


@dataclasses.dataclass(eq=False)
class CelebaConfig(tfds.core.BuilderConfig):
  """One CelebA variant.

  Attributes:
    image_size: side of the square output images.
    crop_box: ``(x0, y0, x1, y1)`` cropped from the aligned 178x218 image before
      resizing (scaled proportionally for images of another size).
  """

  image_size: int = 64
  crop_box: tuple[int, int, int, int] = DEFAULT_CROP_BOX

  def __post_init__(self):
    x0, y0, x1, y1 = self.crop_box
    if not (x1 > x0 and y1 > y0):
      raise ValueError(f"CelebaConfig {self.name!r}: crop_box={self.crop_box} must be "
                       "(x0, y0, x1, y1) with x1 > x0 and y1 > y0.")
    common.finish_config(self, f"crop {self.crop_box} of the aligned 178x218 images, "
                         f"resized to {self.image_size}x{self.image_size}")


# ------------------------------------------------------------------ annotation parsing


@dataclasses.dataclass
class Annotations:
  """Parsed CelebA annotations (``name`` is the image file name, e.g. ``000001.jpg``)."""

  image_dir: epath.Path
  attributes: dict[str, np.ndarray]        # name -> int32 [40], 0/1, ATTRIBUTES order
  partition: dict[str, tuple[int, int]]    # name -> (0/1/2, line number)
  partition_file: epath.Path
  identity: dict[str, int] | None = None
  landmarks: dict[str, np.ndarray] | None = None  # name -> float32 [5, 2] aligned px


def _parse_counted_table(path: epath.Path, expected_header: tuple[str, ...],
                         valid: tuple[int, ...] | None = None,
                         ) -> dict[str, list[int]]:
  """Reads CelebA's txt tables: a count line, a header line, then ``name v1 v2 ...``."""
  lines = annotations.read_text_lines(path)
  if len(lines) < 2:
    raise errors.AnnotationError(path, len(lines) + 1,
                                 "expected a count line and a header line.")
  count_no, count_line = lines[0]
  count = annotations.parse_int(path, count_no, count_line.strip(), "the first line (record count)")
  header_no, header_line = lines[1]
  header = tuple(header_line.split())
  _check_header(path, header_no, header, expected_header)
  table = {}
  for line_no, line in lines[2:]:
    cells = line.split()
    if len(cells) != len(header) + 1:
      raise errors.AnnotationError(
          path, line_no, f"expected a file name and {len(header)} values, got "
          f"{len(cells)} fields: {line.strip()[:80]!r}.")
    table[cells[0]] = [annotations.parse_int(path, line_no, v, f"{header[i]} of {cells[0]}",
                                        valid=valid) for i, v in enumerate(cells[1:])]
  if len(table) != count:
    raise errors.AnnotationError(path, count_no, f"the count line says {count} records but "
                                 f"{len(table)} follow; is the file complete?")
  return table


def _parse_csv_table(path: epath.Path, expected_header: tuple[str, ...],
                     valid: tuple[int, ...] | None = None) -> dict[str, list[int]]:
  """Reads Kaggle's CSV copies: ``image_id,<names...>`` then one row per image."""
  header, rows = annotations.read_csv(path)
  _check_header(path, 1, tuple(header[1:]), expected_header)
  table = {}
  for line_no, cells in rows:
    if len(cells) != len(header):
      raise errors.AnnotationError(path, line_no, f"expected {len(header)} fields, got "
                                   f"{len(cells)}.")
    table[cells[0]] = [annotations.parse_int(path, line_no, v, f"{header[i + 1]} of {cells[0]}",
                                        valid=valid) for i, v in enumerate(cells[1:])]
  return table


def _check_header(path: epath.Path, line_no: int, header: tuple[str, ...],
                  expected: tuple[str, ...]) -> None:
  """Raises an AnnotationError unless ``header`` lists exactly the ``expected`` names."""
  if expected and tuple(header) != tuple(expected):
    missing = [n for n in expected if n not in header]
    raise errors.AnnotationError(
        path, line_no, f"unexpected header: missing {missing[:5]}, got {list(header)[:5]}"
        f"... ({len(header)} names, expected {len(expected)}).")


def _parse_pairs(path: epath.Path, valid: tuple[int, ...] | None = None,
                 ) -> dict[str, tuple[int, int]]:
  """Reads ``name value`` lines (partition / identity txt, or their 2-column CSVs)."""
  if path.suffix.lower() == ".csv":
    _, rows = annotations.read_csv(path)
  else:
    rows = [(no, line.split()) for no, line in annotations.read_text_lines(path)]
  pairs = {}
  for line_no, cells in rows:
    if len(cells) != 2:
      raise errors.AnnotationError(path, line_no, f"expected 'name value', got {cells}.")
    pairs[cells[0]] = (annotations.parse_int(path, line_no, cells[1], f"the value of {cells[0]}",
                                        valid=valid), line_no)
  return pairs


def _image_dir(root: epath.Path) -> epath.Path:
  nested = root / "img_align_celeba" / "img_align_celeba"  # Kaggle's zip nests it.
  if nested.is_dir():
    return nested
  return errors.require_path(root / "img_align_celeba", dataset=DATASET, is_dir=True,
                             what="the aligned images folder img_align_celeba/")


def _pick(root: epath.Path, stem: str, *, required: bool, what: str) -> epath.Path | None:
  path = errors.first_existing([root / f"{stem}.txt", root / f"{stem}.csv"])
  if path is None and required:
    raise errors.missing_path_error(root / f"{stem}.txt", dataset=DATASET,
                                    what=f"{what} (or {stem}.csv)")
  return path


def load_annotations(root: os.PathLike | str) -> Annotations:
  """Parses the official (txt) or Kaggle (csv) CelebA annotation files under ``root``."""
  root = epath.Path(root)
  image_dir = _image_dir(root)
  attr_path = _pick(root, "list_attr_celeba", required=True, what="the attribute file")
  part_path = _pick(root, "list_eval_partition", required=True, what="the partition file")
  parse = _parse_csv_table if attr_path.suffix.lower() == ".csv" else _parse_counted_table
  attributes = {name: (np.asarray(values) > 0).astype(np.int32)
                for name, values in parse(attr_path, ATTRIBUTES, valid=(-1, 0, 1)).items()}
  partition = _parse_pairs(part_path, valid=(0, 1, 2))
  notes = []
  identity = None
  id_path = errors.first_existing([root / "identity_CelebA.txt"])
  if id_path is not None:
    identity = {name: value for name, (value, _) in _parse_pairs(id_path).items()}
  else:
    notes.append("identity_CelebA.txt absent: identity = -1")
  landmarks = None
  lm_path = _pick(root, "list_landmarks_align_celeba", required=False, what="landmarks")
  if lm_path is not None:
    parse = _parse_csv_table if lm_path.suffix.lower() == ".csv" else _parse_counted_table
    landmarks = {name: np.asarray(values, np.float32).reshape(5, 2)
                 for name, values in parse(lm_path, LANDMARKS).items()}
  else:
    notes.append("list_landmarks_align_celeba.txt absent: landmarks = -1")
  if notes:
    logging.warning("%s: %s (under %s).", DATASET, "; ".join(notes), root)
  return Annotations(image_dir=image_dir, attributes=attributes, partition=partition,
                     partition_file=part_path, identity=identity, landmarks=landmarks)


# -------------------------------------------------------------------------- records


def attribute_features(image_size: int) -> dict[str, tfds.features.FeatureConnector]:
  """CelebA's per-example features besides image/label/is_face/filename."""
  del image_size  # Landmarks are stored in output pixels; their shape is fixed.
  features = common.int_features(ATTRIBUTES + ("identity",))
  features["landmarks"] = tfds.features.Tensor(shape=(5, 2), dtype=np.float32)
  features.update(common.ita_features())
  return features


def cheek_mask(landmarks: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
  """The two cheeks of an aligned face, from its 5 landmarks (eyes, nose, mouth corners).

  Each cheek is a disc of radius 0.15 x the inter-ocular distance, centred 55% of the
  way from the eye down to the mouth corner of its side and 0.15 x that distance
  further out: skin below the eye, beside the nose, clear of the beard line in most
  faces. Falls back to ``imaging.central_face_mask`` when landmarks are missing (-1).
  """
  pts = np.asarray(landmarks, np.float64).reshape(5, 2)
  if (pts < 0).any():
    return imaging.central_face_mask(*image_hw)
  iod = float(np.linalg.norm(pts[1] - pts[0]))
  yy, xx = np.mgrid[:image_hw[0], :image_hw[1]]
  mask = np.zeros(image_hw, bool)
  for eye, mouth, outward in ((pts[0], pts[3], -1.0), (pts[1], pts[4], 1.0)):
    cx, cy = eye + 0.55 * (mouth - eye) + (outward * 0.15 * iod, 0.0)
    mask |= (xx - cx) ** 2 + (yy - cy) ** 2 <= (0.15 * iod) ** 2
  return mask


def make_record(image: np.ndarray, attributes: dict[str, int], *, filename: str,
                image_size: int, crop_box=DEFAULT_CROP_BOX, identity: int = -1,
                landmarks: np.ndarray | None = None) -> dict:
  """One output record from an aligned CelebA image and its annotations.

  Args:
    image: RGB uint8 aligned image (normally 218x178).
    attributes: CelebA attribute name -> 0/1 (all 40).
    filename: the image's file name.
    image_size: output side.
    crop_box: crop in the 178x218 aligned frame (scaled to the actual image size).
    identity: celebrity id, -1 if unknown.
    landmarks: float [5, 2] x,y in the aligned image's pixels, or None.

  Returns:
    The record dict (image as JPEG bytes, landmarks in output pixels).
  """
  h, w = image.shape[:2]
  sx, sy = w / ALIGNED_HW[1], h / ALIGNED_HW[0]
  x0, y0, x1, y1 = crop_box
  box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
  face = image_io.crop_resize(image, box, image_size)
  record = common.base_record(face, filename, is_face=True)
  record["identity"] = np.int32(identity)
  for name in ATTRIBUTES:
    record[name] = np.int32(attributes[name])
  if landmarks is None:
    record["landmarks"] = np.full((5, 2), -1.0, np.float32)
  else:
    # Same map as the crop: aligned pixels -> crop -> output pixels.
    scale = np.array([image_size / (box[2] - box[0]), image_size / (box[3] - box[1])])
    points = (np.asarray(landmarks, np.float64) * [sx, sy] - [box[0], box[1]]) * scale
    record["landmarks"] = points.astype(np.float32)
  # The skin tone is read at the aligned image's full resolution (the 32 px crop has a
  # handful of cheek pixels), from the cheeks, or the crop's centre without landmarks.
  if landmarks is None:
    region = image[int(box[1]):int(box[3]), int(box[0]):int(box[2])]
    ita = imaging.ita_degrees(region, imaging.central_face_mask(*region.shape[:2]))
  else:
    points = np.asarray(landmarks, np.float64) * [sx, sy]
    ita = imaging.ita_degrees(image, cheek_mask(points, image.shape[:2]))
  record[common.SKIN_ITA] = np.float32(ita)
  return record


def file_examples(root: epath.Path, split: str, image_size: int, reader: image_io.ImageReader,
                  crop_box=DEFAULT_CROP_BOX, annotations: Annotations | None = None,
                  ) -> Iterator[tuple[str, dict]]:
  """Records of one split from the official/Kaggle files (sorted by file name)."""
  ann = annotations or load_annotations(root)
  split_id = SPLITS.index(split)
  for name in sorted(n for n, (s, _) in ann.partition.items() if s == split_id):
    if name not in ann.attributes:
      raise errors.AnnotationError(
          ann.partition_file, ann.partition[name][1],
          f"{name} is listed in the partition file but has no attribute line.")
    image = reader.read(ann.image_dir / name)
    if image is None:
      continue
    yield name, make_record(
        image, dict(zip(ATTRIBUTES, ann.attributes[name])), filename=name,
        image_size=image_size, crop_box=crop_box,
        identity=ann.identity.get(name, -1) if ann.identity is not None else -1,
        landmarks=ann.landmarks.get(name) if ann.landmarks is not None else None)


# ---------------------------------------------------------------- stock TFDS celeb_a


def is_stock_dir(root: os.PathLike | str) -> bool:
  """True when ``root`` is a TFDS data_dir with ``celeb_a`` and not the raw files."""
  root = epath.Path(root)
  return (root / "celeb_a").is_dir() and not (root / "img_align_celeba").exists()


def convert_stock_example(example: dict, *, image_size: int, crop_box=DEFAULT_CROP_BOX,
                          filename: str = "", reader: image_io.ImageReader | None = None,
                          ) -> dict | None:
  """Converts one record of the stock TFDS ``celeb_a`` into this builder's record.

  Args:
    example: a stock record as numpy: ``image`` (uint8 218x178x3, or the encoded
      JPEG bytes when read with ``SkipDecoding``), ``attributes`` (name -> bool),
      ``landmarks`` (``lefteye_x``... -> int) and ``identity`` (``{"Identity_No": id}``).
    image_size: output side.
    crop_box: crop in the aligned frame.
    filename: stored as ``filename`` (the stock records carry none).
    reader: decodes encoded images with the skip/strict policy.

  Returns:
    The record, or None when the encoded image is corrupt (and not strict).
  """
  image = example["image"]
  if isinstance(image, (bytes, np.bytes_)):
    reader = reader or image_io.ImageReader(DATASET)
    image = reader.decode(bytes(image), filename or "celeb_a record")
    if image is None:
      return None
  attributes = {name: int(bool(example["attributes"][name])) for name in ATTRIBUTES}
  marks = example.get("landmarks")
  landmarks = (np.array([marks[n] for n in LANDMARKS], np.float32).reshape(5, 2)
               if marks else None)
  identity = example.get("identity", {}).get("Identity_No", -1)
  return make_record(np.asarray(image), attributes, filename=filename,
                     image_size=image_size, crop_box=crop_box, identity=int(identity),
                     landmarks=landmarks)


def stock_examples(root: epath.Path, split: str, image_size: int,
                   reader: image_io.ImageReader, crop_box=DEFAULT_CROP_BOX,
                   ) -> Iterator[tuple[str, dict]]:
  """Records of one split read from a prepared stock TFDS ``celeb_a`` in ``root``."""
  stock = tfds.builder("celeb_a", data_dir=os.fspath(root))
  if not stock.is_prepared():
    raise errors.missing_path_error(
        stock.data_dir, dataset=DATASET, what="a prepared stock TFDS celeb_a "
        "(dataset_info.json and its record files)")
  dataset = stock.as_dataset(split=split, shuffle_files=False,
                             decoders={"image": tfds.decode.SkipDecoding()})
  for i, example in enumerate(tfds.as_numpy(dataset)):
    key = f"celeb_a_{split}_{i:06d}"
    record = convert_stock_example(example, image_size=image_size, crop_box=crop_box,
                                   filename=key, reader=reader)
    if record is not None:
      yield key, record


def examples(root: epath.Path, split: str, image_size: int, reader: image_io.ImageReader,
             crop_box=DEFAULT_CROP_BOX) -> Iterator[tuple[str, dict]]:
  """Records of one split from whichever layout ``root`` holds."""
  if is_stock_dir(root):
    return stock_examples(root, split, image_size, reader, crop_box)
  return file_examples(root, split, image_size, reader, crop_box)


SOURCE = common.FaceSource(
    name="celeba", dataset=DATASET, instructions=MANUAL_DOWNLOAD_INSTRUCTIONS,
    splits=lambda root: list(SPLITS), attribute_features=attribute_features,
    examples=examples, split_fractions={"train": 0.8, "validation": 0.1, "test": 0.1})


class FacebiasCeleba(common.ManualBuilder):
  """CelebA aligned faces with 40 attributes, identities and landmarks."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [CelebaConfig(name=f"crop_{s}", image_size=s) for s in SIZES]
  DEFAULT_BUILDER_CONFIG_NAME = "crop_64"

  def _info(self) -> tfds.core.DatasetInfo:
    return self._dataset_info(attribute_features(self.builder_config.image_size),
                              homepage="http://mmlab.ie.cuhk.edu.hk/projects/CelebA.html")

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._manual_root(dl_manager)
    crop_box = tuple(self.builder_config.crop_box)
    if is_stock_dir(root):
      return {split: self._generate_examples(stock_examples, root, split, crop_box=crop_box)
              for split in SPLITS}
    annotations = load_annotations(root)  # Parsed once for the three splits.
    return {split: self._generate_examples(file_examples, root, split, crop_box=crop_box,
                                           annotations=annotations)
            for split in SPLITS}
