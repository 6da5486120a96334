"""Pieces shared by the real-dataset TFDS builders (CelebA, PPB, UTKFace, FairFace...).

Each concern lives here exactly once:

* errors: :func:`missing_path_error` (a file or folder the user must provide is not
  there: names the path and points to the instructions) and :class:`AnnotationError`
  (a malformed annotation line: names the file and the 1-based line number);
* annotation files: :func:`read_text_lines` and :func:`read_csv` (any of ``\\n``,
  ``\\r\\n`` or ``\\r``-only line endings, UTF-8 with or without BOM, line numbers kept),
  and :func:`lookup` (a label value through a table of accepted spellings);
* images: :class:`ImageReader` (decode with OpenCV, detect corrupt *and truncated*
  files, skip and count them or raise under ``strict``), cropping / resizing helpers
  and :func:`encode_jpeg`;
* faces: :func:`detect_largest_face` (OpenCV's frontal-face Haar cascade) and
  :func:`face_crop` (largest face plus a margin, centre-crop fallback);
* records: :func:`base_features` / :func:`base_record` (``image``, ``filename``,
  ``label``, ``is_face``) and :func:`finish_config` (the shared config checks);
* :class:`ManualBuilder`: the base of every builder here (ArrayRecord by default so
  ``tfds.data_source`` works, a ``strict`` option, the manual_dir lookup, the
  shared ``DatasetInfo``);
* :class:`FaceSource`: what a face dataset exposes so the faces-vs-non-faces mixture
  builder can combine it with negatives without knowing its format.

Images are RGB ``uint8`` everywhere; BGR only inside OpenCV calls.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

from absl import logging
import cv2
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

# The project has one Haar face detector; the PPB cropped config uses it too.
from facebias_jax.demo import face_detect

DOCS = "docs/datasets.md"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
JPEG_QUALITY = 95
# How many offending file names a warning lists before "...".
_MAX_EXAMPLES_LISTED = 5

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive.


# ----------------------------------------------------------------------------- errors


class AnnotationError(ValueError):
  """A malformed line in an annotation file (names the file and the line number)."""

  def __init__(self, path: os.PathLike | str, line_no: int, message: str):
    self.path = os.fspath(path)
    self.line_no = int(line_no)
    super().__init__(f"{self.path}, line {self.line_no}: {message}")


class CorruptImageError(ValueError):
  """An image file that cannot be decoded completely (raised under ``strict``)."""


def missing_path_error(path: os.PathLike | str, *, dataset: str,
                       what: str) -> FileNotFoundError:
  """The error for a file or folder that the user must put under ``manual_dir``.

  Args:
    path: the expected path.
    dataset: builder name, e.g. ``"facebias_celeba"``.
    what: what should be there, e.g. ``"the attribute file list_attr_celeba.txt"``.

  Returns:
    A ``FileNotFoundError`` (to raise) naming the path and the instructions.
  """
  return FileNotFoundError(
      f"{dataset}: expected {what} at {os.fspath(path)}, but it does not exist. Put the "
      f"official files under the manual_dir you pass (--manual_dir=...) in the layout "
      f"given by {dataset}'s MANUAL_DOWNLOAD_INSTRUCTIONS (see {DOCS}).")


def require_path(path: os.PathLike | str, *, dataset: str, what: str,
                 is_dir: bool = False) -> epath.Path:
  """Returns ``path`` as an ``epath.Path``; raises :func:`missing_path_error` if absent."""
  path = epath.Path(path)
  if not (path.is_dir() if is_dir else path.is_file()):
    raise missing_path_error(path, dataset=dataset, what=what)
  return path


def first_existing(candidates: Sequence[os.PathLike | str]) -> epath.Path | None:
  """The first of ``candidates`` that exists (file or folder), else None."""
  for candidate in candidates:
    candidate = epath.Path(candidate)
    if candidate.exists():
      return candidate
  return None


# ------------------------------------------------------------------- annotation files


def _read_text(path: os.PathLike | str) -> str:
  # utf-8-sig drops the BOM some spreadsheet exports put in front of the header.
  return epath.Path(path).read_bytes().decode("utf-8-sig")


def read_text_lines(path: os.PathLike | str) -> list[tuple[int, str]]:
  """Non-blank lines of a text file with their 1-based line numbers.

  ``str.splitlines`` splits on ``\\n``, ``\\r\\n`` and ``\\r`` alike, so files saved on
  any platform parse the same.
  """
  return [(i, line) for i, line in enumerate(_read_text(path).splitlines(), start=1)
          if line.strip()]


def read_csv(path: os.PathLike | str) -> tuple[list[str], list[tuple[int, list[str]]]]:
  """Reads a CSV file: header and non-empty rows with their 1-based line numbers.

  Handles ``\\r``-only line endings (old Mac exports, e.g. some copies of PPB's
  metadata) as well as ``\\n`` / ``\\r\\n``, quoted fields and a UTF-8 BOM.

  Returns:
    ``(header, rows)``: the stripped header cells, then ``(line_no, cells)`` pairs.

  Raises:
    AnnotationError: the file is empty.
  """
  # newline="" keeps the terminators for csv, which splits on \r and \n itself.
  reader = csv.reader(io.StringIO(_read_text(path), newline=""))
  header: list[str] | None = None
  rows = []
  for cells in reader:
    if not any(c.strip() for c in cells):
      continue
    if header is None:
      header = [c.strip() for c in cells]
    else:
      rows.append((reader.line_num, [c.strip() for c in cells]))
  if header is None:
    raise AnnotationError(path, 1, "the CSV file is empty (no header line).")
  return header, rows


def normalize_name(name: str) -> str:
  """Lower case, ``_``/``-`` as spaces: how column names and label values are matched."""
  return name.strip().lower().replace("_", " ").replace("-", " ")


def resolve_columns(path: os.PathLike | str, header: Sequence[str],
                    columns: Mapping[str, Sequence[str]], *,
                    optional: Sequence[str] = ()) -> dict[str, int]:
  """Maps canonical column names to their index in ``header``.

  Matching goes through :func:`normalize_name`, so ``"skin color"``, ``"Skin_Color"``
  and ``"skin-color"`` are one column.

  Args:
    path: the CSV file (for the error message).
    header: header cells.
    columns: canonical name -> accepted spellings.
    optional: canonical names that may be absent (left out of the result).

  Returns:
    ``{canonical name: column index}``.

  Raises:
    AnnotationError: a required column is missing (line 1; lists the header).
  """
  index = {normalize_name(h): i for i, h in enumerate(header)}
  found = {}
  for canonical, spellings in columns.items():
    hit = next((index[normalize_name(s)] for s in spellings
                if normalize_name(s) in index), None)
    if hit is not None:
      found[canonical] = hit
    elif canonical not in optional:
      raise AnnotationError(
          path, 1, f"no column for {canonical!r} (accepted names: {list(spellings)}); "
          f"the header is {list(header)}.")
  return found


def parse_int(path: os.PathLike | str, line_no: int, value: str, what: str, *,
              valid: Sequence[int] | None = None) -> int:
  """``int(value)``, or an :class:`AnnotationError` naming file, line and field."""
  try:
    number = int(value)
  except ValueError:
    raise AnnotationError(path, line_no, f"{what} must be an integer, got {value!r}.") from None
  if valid is not None and number not in valid:
    raise AnnotationError(path, line_no, f"{what} must be one of {list(valid)}, got {number}.")
  return number


def lookup(path: os.PathLike | str, line_no: int, table: Mapping[str, int], value: str,
           what: str, *, expected: Sequence[str] | None = None) -> int:
  """``table[value]`` (keys compared by :func:`normalize_name`), or an AnnotationError.

  Args:
    path: the annotation file (for the error message).
    line_no: 1-based line of ``value``.
    table: normalised spelling -> code, e.g. ``{"male": 1, "female": 0}``.
    value: the cell as written in the file.
    what: the field, e.g. ``"gender"``.
    expected: the canonical values listed in the error (default: the table's keys).

  Returns:
    The code of ``value``.
  """
  key = normalize_name(value)
  if key not in table:
    valid = list(expected) if expected is not None else sorted(set(table))
    raise AnnotationError(path, line_no, f"unknown {what} {value!r}; expected one of {valid}.")
  return table[key]


# ----------------------------------------------------------------------------- images


def _is_truncated(data: bytes) -> bool:
  """True when an encoded JPEG/PNG stops before its end marker.

  OpenCV decodes a truncated JPEG without error (it fills the rest with grey and
  prints a warning), so the end markers are checked here. For JPEG the end-of-image
  marker must follow the *last* start-of-scan marker: an EXIF thumbnail near the
  start carries its own EOI, and byte stuffing keeps both markers out of the
  entropy-coded data.
  """
  if data[:2] == b"\xff\xd8":
    last_scan = data.rfind(b"\xff\xda")
    return last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0
  if data[:8] == b"\x89PNG\r\n\x1a\n":
    return b"IEND" not in data[-32:]
  return False


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
  """Decodes JPEG/PNG bytes to RGB uint8 ``[H, W, 3]``.

  Args:
    data: the encoded image.
    source: where it came from, for the error message.

  Returns:
    The decoded image.

  Raises:
    CorruptImageError: undecodable or truncated data.
  """
  if not data:
    raise CorruptImageError(f"{source}: empty image file.")
  if _is_truncated(data):
    raise CorruptImageError(f"{source}: the image is truncated (no end marker).")
  bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if bgr is None:
    raise CorruptImageError(f"{source}: not a decodable JPEG/PNG image.")
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_jpeg(image_rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
  """JPEG bytes of an RGB uint8 image (OpenCV: far faster than TFDS's TF encoder)."""
  ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[..., ::-1]),
                         [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
  if not ok:
    raise RuntimeError(f"cv2.imencode failed on an image of shape {image_rgb.shape}.")
  return buf.tobytes()


class ImageReader:
  """Reads image files for one builder run, skipping (or raising on) corrupt ones.

  A corrupt or truncated file is skipped with a warning and counted; under
  ``strict=True`` it raises :class:`CorruptImageError` instead. A *missing* file is
  always an error (:func:`missing_path_error`): it means the layout is wrong, not
  that one download went bad. Other per-split events (e.g. "no face found") are
  counted with :meth:`note` and reported together by :meth:`log_summary`.
  """

  def __init__(self, dataset: str, *, strict: bool = False):
    self.dataset = dataset
    self.strict = bool(strict)
    self.skipped: list[str] = []
    self.notes: dict[str, list[str]] = {}

  def read(self, path: os.PathLike | str) -> np.ndarray | None:
    """RGB uint8 image at ``path``, or None for a corrupt file (when not strict)."""
    path = epath.Path(path)
    if not path.is_file():
      raise missing_path_error(path, dataset=self.dataset, what="an image file")
    return self.decode(path.read_bytes(), os.fspath(path))

  def decode(self, data: bytes, source: str) -> np.ndarray | None:
    """Decodes already-read bytes with the same skip/strict policy as :meth:`read`."""
    try:
      return decode_image(data, source)
    except CorruptImageError as err:
      if self.strict:
        raise CorruptImageError(f"{self.dataset}: {err} (strict=True; pass strict=False "
                                "to skip corrupt images with a warning).") from None
      logging.warning("%s: skipping corrupt image: %s", self.dataset, err)
      self.skipped.append(source)
      return None

  def note(self, event: str, source: str) -> None:
    """Counts a non-fatal event (e.g. ``"no face found, centre crop used"``)."""
    self.notes.setdefault(event, []).append(source)

  def log_summary(self, split: str, num_written: int) -> str:
    """Logs (and returns) one line with the counts of this split, then resets them."""
    parts = [f"{self.dataset} split {split!r}: wrote {num_written} examples"]
    if self.skipped:
      parts.append(f"skipped {len(self.skipped)} corrupt image(s) "
                   f"({_examples(self.skipped)})")
    for event, sources in self.notes.items():
      parts.append(f"{event}: {len(sources)} image(s) ({_examples(sources)})")
    line = "; ".join(parts)
    (logging.warning if self.skipped or self.notes else logging.info)("%s", line)
    self.skipped, self.notes = [], {}
    return line


def _examples(items: Sequence[str]) -> str:
  names = [os.path.basename(str(s)) for s in items[:_MAX_EXAMPLES_LISTED]]
  return ", ".join(names) + (", ..." if len(items) > _MAX_EXAMPLES_LISTED else "")


def list_images(root: os.PathLike | str, *, recursive: bool = True) -> list[epath.Path]:
  """Image files (JPEG/PNG, any case) under ``root``, sorted, hidden files excluded."""
  # An explicit walk: epath's rglob refuses "**" on some backends.
  found, folders = [], [epath.Path(root)]
  while folders:
    for path in folders.pop().iterdir():
      if path.name.startswith("."):
        continue
      if path.is_dir():
        if recursive:
          folders.append(path)
      elif path.suffix.lower() in IMAGE_EXTENSIONS:
        found.append(path)
  return sorted(found)


def center_square_box(height: int, width: int) -> Box:
  """The largest centred square inside an image."""
  side = min(height, width)
  y0, x0 = (height - side) // 2, (width - side) // 2
  return x0, y0, x0 + side, y0 + side


def crop_resize(image: np.ndarray, box: Box, size: int) -> np.ndarray:
  """Crops ``box`` (padding with black where it leaves the image) and resizes to size².

  Uses area interpolation when shrinking (no aliasing) and bilinear when enlarging.
  """
  x0, y0, x1, y1 = (int(round(v)) for v in box)
  h, w = image.shape[:2]
  pad = max(0, -x0, -y0, x1 - w, y1 - h)
  if pad:
    image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
  crop = image[y0:y1, x0:x1]
  return resize(crop, (size, size))


def resize(image: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
  """Resizes to ``(height, width)``; area interpolation down, bilinear up."""
  h, w = image.shape[:2]
  if (h, w) == tuple(shape_hw):
    return np.ascontiguousarray(image)
  shrink = shape_hw[0] * shape_hw[1] < h * w
  return cv2.resize(image, (shape_hw[1], shape_hw[0]),
                    interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_pad(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
  """Resizes keeping the aspect ratio so the long side is ``size``, pads to size².

  Returns:
    ``(image, scale, (x_offset, y_offset))``: a point ``(x, y)`` of the input lands
    at ``(x * scale + x_offset, y * scale + y_offset)`` in the output.
  """
  h, w = image.shape[:2]
  scale = size / max(h, w)
  new_h, new_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
  small = resize(image, (new_h, new_w))
  out = np.zeros((size, size, 3), np.uint8)
  y_off, x_off = (size - new_h) // 2, (size - new_w) // 2
  out[y_off:y_off + new_h, x_off:x_off + new_w] = small
  return out, scale, (x_off, y_off)


# ------------------------------------------------------------------------------ faces


def detect_largest_face(image_rgb: np.ndarray, *, min_size_fraction: float = 0.1) -> Box | None:
  """The largest frontal face in an image (OpenCV Haar cascade), or None.

  Uses the project's one face detector, :func:`facebias_jax.demo.face_detect.detect_faces`
  (cascade parsed once per process).

  Args:
    image_rgb: RGB uint8 image.
    min_size_fraction: smallest face side accepted, as a fraction of the shorter
      image side (rejects the tiny false positives of cluttered backgrounds).

  Returns:
    ``(x0, y0, x1, y1)`` of the largest detection, or None.
  """
  gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
  min_side = max(12, int(min(gray.shape) * min_size_fraction))
  boxes = face_detect.detect_faces(gray, min_size=(min_side, min_side), max_faces=1)
  if not boxes:
    return None
  x, y, w, h = boxes[0]
  return x, y, x + w, y + h


def expand_box(box: Box, margin: float) -> Box:
  """A square box around ``box``'s centre, ``1 + 2 * margin`` times its longer side."""
  x0, y0, x1, y1 = box
  side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
  cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
  return (int(round(cx - side / 2)), int(round(cy - side / 2)),
          int(round(cx + side / 2)), int(round(cy + side / 2)))


def face_crop(image_rgb: np.ndarray, size: int, *, margin: float = 0.2,
              detector: Callable[[np.ndarray], Box | None] = detect_largest_face,
              ) -> tuple[np.ndarray, bool]:
  """Crops the largest detected face with a margin and resizes it to size².

  Args:
    image_rgb: RGB uint8 image.
    size: output side.
    margin: extra context on each side, as a fraction of the face box side.
    detector: returns the face box or None (the Haar cascade by default).

  Returns:
    ``(crop, found)``; when no face is found the largest centred square is used
    and ``found`` is False (callers count these).
  """
  box = detector(image_rgb)
  if box is None:
    return crop_resize(image_rgb, center_square_box(*image_rgb.shape[:2]), size), False
  return crop_resize(image_rgb, expand_box(box, margin), size), True


# ----------------------------------------------------------------------- splits, misc


def hash_fraction(key: str) -> float:
  """A stable number in [0, 1) from a string (same on every machine and run)."""
  digest = hashlib.sha256(key.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(key: str, fractions: Sequence[tuple[str, float]]) -> str:
  """Deterministic split of ``key`` given ``[(split, fraction), ...]`` summing to 1."""
  u, total = hash_fraction(key), 0.0
  for split, fraction in fractions:
    total += fraction
    if u < total:
      return split
  return fractions[-1][0]


def int_features(names: Sequence[str]) -> dict[str, tfds.features.FeatureConnector]:
  """``{name: int32 scalar}``: how every attribute is stored (pipeline/analysis read these)."""
  return {name: tfds.features.Scalar(dtype=np.int32) for name in names}


def base_features(image_size: int) -> dict[str, tfds.features.FeatureConnector]:
  """Features of every record here: JPEG ``image`` (size²), ``filename``, ``label``
  (ClassLabel 0 = non-face, 1 = face: the DB-VAE task) and ``is_face`` (int32 0/1)."""
  return {
      "image": tfds.features.Image(shape=(image_size, image_size, 3),
                                   encoding_format="jpeg"),
      "filename": tfds.features.Text(),
      "label": tfds.features.ClassLabel(names=["non_face", "face"]),
      "is_face": tfds.features.Scalar(dtype=np.int32),
  }


def base_record(image_rgb: np.ndarray, filename: str, *, is_face: bool) -> dict[str, Any]:
  """The :func:`base_features` fields of one record; the image is JPEG-encoded as is."""
  return {"image": encode_jpeg(image_rgb), "filename": filename, "label": int(is_face),
          "is_face": np.int32(is_face)}


@dataclasses.dataclass(frozen=True)
class FaceSource:
  """What a face dataset module gives the faces-vs-non-faces mixture builder.

  Attributes:
    name: short name used in mixture config names (``"celeba"``).
    dataset: its builder name, for messages (``"facebias_celeba"``).
    instructions: the expected layout of its files.
    splits: ``fn(root) -> [split, ...]``: the splits found under ``root``.
    attribute_features: ``fn(image_size) -> {name: feature}``: its per-example
      features other than ``image``, ``label``, ``is_face`` and ``filename``.
    examples: ``fn(root, split, image_size, reader) -> iterator of (key, record)``;
      records hold ``image`` (encoded bytes or uint8 array), ``filename`` and the
      attribute features.
    split_fractions: how negatives without their own split folders are shared out.
  """

  name: str
  dataset: str
  instructions: str
  splits: Callable[[epath.Path], list[str]]
  attribute_features: Callable[[int], dict[str, Any]]
  examples: Callable[[epath.Path, str, int, ImageReader], Iterator[tuple[str, dict]]]
  split_fractions: Mapping[str, float]


def finish_config(config: tfds.core.BuilderConfig, description: str) -> None:
  """What every builder config here does in ``__post_init__`` after its own checks.

  Rejects an ``image_size`` below 8 pixels, and fills in ``version`` (the builders'
  ``VERSION``) and ``description`` when they were left unset.

  Raises:
    ValueError: ``config.image_size`` is too small (names the config and the value).
  """
  if int(config.image_size) < 8:
    raise ValueError(f"{type(config).__name__} {config.name!r}: image_size="
                     f"{config.image_size} is too small; use at least 8 pixels.")
  if config.version is None:
    config.version = ManualBuilder.VERSION
  if config.description is None:
    config.description = description


@dataclasses.dataclass(eq=False)
class SizeConfig(tfds.core.BuilderConfig):
  """A builder config that only sets the output image side (``size_<n>``)."""

  image_size: int = 64

  def __post_init__(self):
    finish_config(self, f"images resized to {self.image_size}x{self.image_size}")


def size_configs(sizes: Sequence[int]) -> list[SizeConfig]:
  """``size_<n>`` configs for the given sides."""
  return [SizeConfig(name=f"size_{s}", image_size=s) for s in sizes]


class ManualBuilder(tfds.core.GeneratorBasedBuilder):
  """Base of the builders that read official files from ``manual_dir``.

  Abstract (no ``_info``), so TFDS does not register it as a dataset. Subclasses
  give ``_info``, and ``_split_generators`` returning
  ``{split: self._generate_examples(examples_fn, root, split, ...)}``; their configs
  have an ``image_size``.

  * Writes ArrayRecord unless ``file_format`` says otherwise, so the prepared data
    reads through ``tfds.data_source`` (random access) and the grain pipeline.
  * ``strict=True`` (``tfds.builder(name, strict=True)`` or
    ``builder_kwargs={"strict": True}``) makes a corrupt image an error instead of
    a skipped, counted example.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def __init__(self, *, strict: bool = False, file_format=None, **kwargs):
    self.strict = bool(strict)
    # split -> the summary line logged after writing it (counts of skipped images...).
    self.summaries: dict[str, str] = {}
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _dataset_info(self, features: Mapping[str, Any], *,
                    homepage: str | None = None) -> tfds.core.DatasetInfo:
    """The ``_info`` of every builder here: :func:`base_features` plus ``features``."""
    size = int(self.builder_config.image_size)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({**base_features(size), **features}),
        supervised_keys=("image", "label"),
        # Records keep the source's order (file names, metadata rows); the samplers
        # shuffle, and skipping TFDS's shuffle makes preparing faster.
        disable_shuffling=True,
        homepage=homepage,
    )

  def _manual_root(self, dl_manager: tfds.download.DownloadManager) -> epath.Path:
    """``dl_manager.manual_dir``, with a clear error when it is absent or empty."""
    try:
      return epath.Path(dl_manager.manual_dir)
    except AssertionError as err:
      raise FileNotFoundError(
          f"{self.name}: {err}\nPass the folder with the official files as manual_dir "
          f"(tfds.download.DownloadConfig(manual_dir=...), or --manual_dir=... for the "
          f"experiment scripts); see {DOCS}.") from None

  def _generate_examples(self, examples_fn, root: epath.Path, split: str,
                         **kwargs) -> Iterator[tuple[str, dict]]:
    """Runs ``examples_fn(root, split, image_size, reader, **kwargs)`` for one split.

    Subclasses' ``_split_generators`` return one of these per split; it counts the
    records, and logs the skipped/corrected images once the split is written.
    """
    reader = ImageReader(self.name, strict=self.strict)
    count = 0
    for key, record in examples_fn(root, split, int(self.builder_config.image_size),
                                   reader, **kwargs):
      count += 1
      yield key, record
    self.summaries[split] = reader.log_summary(split, count)
