"""TFDS builder ``facebias_image_folder``: any folder of JPEG/PNG images as non-faces.

Faces-vs-non-faces detectors (the DB-VAE task) need negatives: scenes, objects,
animals... (the MIT 6.S191 lab used ImageNet images). Any folder tree works:

* if ``manual_dir`` has ``train/``, ``validation/`` (or ``val/``) and/or ``test/``
  subfolders, each is a split;
* otherwise every image under ``manual_dir`` is in ``train``.

Every image is centre-cropped to a square and resized (configs ``size_<n>``: 32,
64, 128, 224). Features: ``image``, ``filename`` (path relative to the split
folder), ``label`` (0 = non-face), ``is_face`` (0) and ``category`` (the first
folder below the split folder, e.g. an ImageNet synset; empty at top level).
"""

from __future__ import annotations

from typing import Iterator, Mapping

from etils import epath
import tensorflow_datasets as tfds

from facebias_jax.data.builders import common, errors, image_io

DATASET = "facebias_image_folder"
SPLIT_DIRS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}
SIZES = (32, 64, 128, 224)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Point manual_dir at any folder of JPEG/PNG images that contain no faces (e.g. an
ImageNet subset without person classes). Either split them yourself

  manual_dir/train/<any/sub/folders>/*.jpg
  manual_dir/validation/...   (or val/)
  manual_dir/test/...

or put them anywhere under manual_dir: they all go to the `train` split.
"""


def split_folders(root: epath.Path) -> dict[str, epath.Path]:
  """``{split: folder}`` for the split subfolders present under ``root`` (may be empty)."""
  found = {}
  for split, names in SPLIT_DIRS.items():
    folder = errors.first_existing([root / n for n in names])
    if folder is not None and folder.is_dir():
      found[split] = folder
  return found


def assign_splits(root: epath.Path, fractions: Mapping[str, float] | None = None,
                  ) -> dict[str, list[tuple[epath.Path, epath.Path]]]:
  """Shares the images under ``root`` out to splits.

  Args:
    root: the images folder.
    fractions: used only when ``root`` has no split subfolders: ``{split: fraction}``
      for a deterministic hash split of the relative paths; None puts everything
      in ``train``.

  Returns:
    ``{split: [(image path, folder it is relative to), ...]}`` (sorted paths).
  """
  errors.require_path(root, dataset=DATASET, is_dir=True, what="the images folder")
  folders = split_folders(root)
  if folders:
    return {split: [(p, folder) for p in image_io.list_images(folder)]
            for split, folder in folders.items()}
  images = image_io.list_images(root)
  if fractions is None:
    return {"train": [(p, root) for p in images]}
  shares = list(fractions.items())
  total = sum(f for _, f in shares)
  shares = [(s, f / total) for s, f in shares]
  out = {split: [] for split, _ in shares}
  for path in images:
    out[common.hash_split(str(path.relative_to(root)), shares)].append((path, root))
  return out


def examples_from(items: list[tuple[epath.Path, epath.Path]], image_size: int,
                  reader: image_io.ImageReader) -> Iterator[tuple[str, dict]]:
  """Non-face records (centre square, resized) of the given ``(path, base)`` pairs."""
  size = int(image_size)
  for path, base in items:
    image = reader.read(path)
    if image is None:
      continue
    rel = str(path.relative_to(base))
    parts = rel.split("/")
    square = image_io.crop_resize(image, image_io.center_square_box(*image.shape[:2]), size)
    yield rel, {**common.base_record(square, rel, is_face=False),
                "category": parts[0] if len(parts) > 1 else ""}


def examples(root: epath.Path, split: str, image_size: int, reader: image_io.ImageReader,
             ) -> Iterator[tuple[str, dict]]:
  """Records of one split of the folder."""
  yield from examples_from(assign_splits(root).get(split, []), image_size, reader)


class FacebiasImageFolder(common.ManualBuilder):
  """A folder tree of non-face images (label 0)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = common.size_configs(SIZES)
  DEFAULT_BUILDER_CONFIG_NAME = "size_64"

  def _info(self) -> tfds.core.DatasetInfo:
    return self._dataset_info({"category": tfds.features.Text()})

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._manual_root(dl_manager)
    splits = assign_splits(root)
    if not any(splits.values()):
      raise errors.missing_path_error(root / "*.jpg", dataset=DATASET,
                                      what="JPEG/PNG images (none found)")
    return {split: self._generate_examples(examples, root, split) for split in splits}
