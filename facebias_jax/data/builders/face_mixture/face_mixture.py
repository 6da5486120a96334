"""TFDS builder ``facebias_face_mixture``: faces (label 1) vs non-faces (label 0).

The training data of the DB-VAE (Amini et al., AIES 2019; the MIT 6.S191 lab):
real faces from a face dataset plus non-face negatives from any image folder, in
one dataset with ``label`` 1 = face, 0 = non-face. The face dataset is read in its
official layout by the same code as its own builder (CelebA, UTKFace or FairFace),
the negatives as by ``facebias_image_folder``.

Configs ``<face source>_<size>``: ``celeba_32``, ``celeba_64``, ``celeba_128``,
``utkface_64``, ``fairface_64`` (custom ones: :class:`MixtureConfig`). Splits are the
face source's (CelebA: train/validation/test); negatives come from the
``train/ validation/ test/`` subfolders of the negatives folder when present, else
are shared out by a hash of their path in the face source's proportions.

Features: ``image``, ``filename`` (``faces/...`` or ``negatives/...``), ``label``,
``is_face`` and every attribute of the face source (CelebA's 40, ``identity``,
``landmarks``...); on negatives each attribute is -1 (text: empty), which
``groups.assign_groups`` reports as the ``"unknown"`` group.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from facebias_jax.data.builders import common, errors, image_io
from facebias_jax.data.builders.celeba import celeba
from facebias_jax.data.builders.fairface import fairface
from facebias_jax.data.builders.image_folder import image_folder
from facebias_jax.data.builders.utkface import utkface

DATASET = "facebias_face_mixture"
FACE_SOURCES = {s.name: s for s in (celeba.SOURCE, utkface.SOURCE, fairface.SOURCE)}

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
manual_dir holds two folders (symbolic links are fine):

  manual_dir/
    faces/        the face dataset in its own builder's layout, e.g. for CelebA:
                  img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt ...
    negatives/    non-face JPEG/PNG images, any tree; optional train/ validation/
                  test/ subfolders are used as splits

Face layouts: see facebias_celeba, facebias_utkface, facebias_fairface.
"""


@dataclasses.dataclass(eq=False)
class MixtureConfig(tfds.core.BuilderConfig):
  """One faces-vs-non-faces mixture.

  Attributes:
    face_source: ``"celeba"``, ``"utkface"`` or ``"fairface"``.
    image_size: side of the square output images.
    faces_dir: folder of the face dataset, relative to manual_dir.
    negatives_dir: folder of the non-face images, relative to manual_dir.
  """

  face_source: str = "celeba"
  image_size: int = 64
  faces_dir: str = "faces"
  negatives_dir: str = "negatives"

  def __post_init__(self):
    if self.face_source not in FACE_SOURCES:
      raise ValueError(f"MixtureConfig {self.name!r}: face_source={self.face_source!r} is "
                       f"not one of {sorted(FACE_SOURCES)}.")
    common.finish_config(self, f"{self.face_source} faces (label 1) vs images of "
                         f"{self.negatives_dir}/ (label 0), {self.image_size}x"
                         f"{self.image_size}")


def unknown_value(feature: tfds.features.FeatureConnector):
  """The "not applicable" value of a face attribute on a non-face: '' for text, NaN for
  a real number (``skin_ita``), else -1 (-1s for landmarks, as where they are missing)."""
  if isinstance(feature, tfds.features.Text):
    return ""
  real_scalar = feature.shape == () and np.issubdtype(np.dtype(feature.np_dtype), np.floating)
  return np.full(feature.shape, np.nan if real_scalar else -1, dtype=feature.np_dtype)


def _configs() -> list[MixtureConfig]:
  sizes = {"celeba": (32, 64, 128), "utkface": (64,), "fairface": (64,)}
  return [MixtureConfig(name=f"{source}_{s}", face_source=source, image_size=s)
          for source, ss in sizes.items() for s in ss]


class FacebiasFaceMixture(common.ManualBuilder):
  """Faces from a face dataset (label 1) and non-faces from an image folder (label 0)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = _configs()
  DEFAULT_BUILDER_CONFIG_NAME = "celeba_64"

  @property
  def _source(self) -> common.FaceSource:
    return FACE_SOURCES[self.builder_config.face_source]

  def _info(self) -> tfds.core.DatasetInfo:
    return self._dataset_info(
        self._source.attribute_features(self.builder_config.image_size),
        value_names=self._source.value_names)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._manual_root(dl_manager)
    config = self.builder_config
    faces = errors.require_path(root / config.faces_dir, dataset=self.name, is_dir=True,
                                what=f"the {config.face_source} faces folder")
    negatives_dir = errors.require_path(root / config.negatives_dir, dataset=self.name,
                                        is_dir=True, what="the non-face images folder")
    negatives = image_folder.assign_splits(negatives_dir, self._source.split_fractions)
    return {split: self._generate_examples(self._mixture_examples, faces, split,
                                           negatives=negatives.get(split, []))
            for split in self._source.splits(faces)}

  def _mixture_examples(self, faces: epath.Path, split: str, image_size: int,
                        reader: image_io.ImageReader, negatives) -> Iterator[tuple[str, dict]]:
    """Faces of ``split`` then its negatives, with -1 attributes on the negatives."""
    for key, record in self._source.examples(faces, split, image_size, reader):
      record["filename"] = f"faces/{record['filename']}"
      yield f"faces/{key}", record
    unknown = {name: unknown_value(feature) for name, feature
               in self._source.attribute_features(image_size).items()}
    for key, record in image_folder.examples_from(negatives, image_size, reader):
      del record["category"]
      record.update(unknown)
      record["filename"] = f"negatives/{record['filename']}"
      yield f"negatives/{key}", record
