"""What every real-dataset TFDS builder here uses (CelebA, PPB, UTKFace, FairFace...).

* records: :func:`base_features` / :func:`base_record` (``image``, ``filename``,
  ``label``, ``is_face``), :func:`int_features`, :func:`finish_config` (the shared
  config checks), ``size_<n>`` configs;
* :class:`ManualBuilder`: the base of every builder here (ArrayRecord by default so
  ``tfds.data_source`` works, a ``strict`` option, the manual_dir lookup, the shared
  ``DatasetInfo``);
* :class:`FaceSource`: what a face dataset exposes so the faces-vs-non-faces mixture
  builder can combine it with negatives without knowing its format;
* deterministic splits by file name (:func:`hash_split`).

Errors that name the file and the fix are in ``builders.errors``, annotation files are
read by ``builders.annotations``, images by ``builders.image_io``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Iterator, Mapping, Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from facebias_jax import imaging
from facebias_jax.data.builders.errors import DOCS
from facebias_jax.data.builders.image_io import ImageReader, encode_jpeg

SKIN_ITA = "skin_ita"


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


def ita_features() -> dict[str, tfds.features.FeatureConnector]:
  """``{"skin_ita": float32}``: the skin tone estimated at preparation (degrees, NaN when
  unknown); groups ``ita_band`` / ``ita_tone`` read it (``data.groups``)."""
  return {SKIN_ITA: tfds.features.Scalar(dtype=np.float32)}


def central_ita(face_rgb: np.ndarray) -> np.float32:
  """``skin_ita`` of a face crop with no better skin region (``imaging.central_face_mask``)."""
  return np.float32(imaging.ita_degrees(face_rgb, imaging.central_face_mask(*face_rgb.shape[:2])))


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
    value_names: the dataset's names of its multi-valued attributes (e.g. ``race``).
  """

  name: str
  dataset: str
  instructions: str
  splits: Callable[[epath.Path], list[str]]
  attribute_features: Callable[[int], dict[str, Any]]
  examples: Callable[[epath.Path, str, int, ImageReader], Iterator[tuple[str, dict]]]
  split_fractions: Mapping[str, float]
  value_names: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)


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

  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "skin_ita (estimated skin tone); the dataset's names of "
                            "multi-valued attributes (race, age_bin) in the metadata.",
                   "1.2.0": "PPB cropped_*: faces found by dlib's CNN detector (was the "
                            "Haar cascade), PpbConfig.detector to choose."}

  def __init__(self, *, strict: bool = False, file_format=None, **kwargs):
    self.strict = bool(strict)
    # split -> the summary line logged after writing it (counts of skipped images...).
    self.summaries: dict[str, str] = {}
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _dataset_info(self, features: Mapping[str, Any], *, homepage: str | None = None,
                    value_names: Mapping[str, Sequence[str]] | None = None
                    ) -> tfds.core.DatasetInfo:
    """The ``_info`` of every builder here: :func:`base_features` plus ``features``.

    ``value_names`` (attribute -> the dataset's name of each value) are stored in the
    prepared data's metadata, where ``sources.value_names`` reads them for group names.
    """
    size = int(self.builder_config.image_size)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({**base_features(size), **features}),
        metadata=tfds.core.MetadataDict(value_names={k: list(v) for k, v in
                                                     (value_names or {}).items()}),
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

