"""Prepared datasets as random-access sources, and their columns without decoding images.

The first half of the flax ``examples/gemma/input_pipeline_grain.py`` pattern (the
second, batching, is ``data.pipeline``), with no tf.data:

* :func:`load_source` returns a ``tfds.data_source`` for one split of a TFDS builder
  (preparing it first if asked; TensorFlow is needed only for that). The project's
  builders are registered here, when a source is first loaded.
* :func:`read_column` / :func:`read_attributes` return labels and attributes for
  every record without decoding a single image: raw records are parsed for their
  scalar features once, then cached in memory and as ``columns-<split>.npz`` next
  to the prepared data.
* :class:`Reader` decodes the images (and face masks) of given records: the raw
  ``tf.train.Example`` fast path for ArrayRecord sources, ``source[i]`` otherwise.
"""

from __future__ import annotations

import logging as py_logging
import os
import re
import sys
import tempfile
import threading
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2
from tqdm import tqdm

# Registers the project's TFDS builders by name (tfds.builder("facebias_...")).
from facebias_jax.data import builders  # noqa: F401  pylint: disable=unused-import

# The record feature holding the face mask (synthetic set); in batches it is
# renamed `face_mask` because `mask` there marks real (non-padding) rows.
RECORD_MASK_KEY = "mask"

_columns_cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}
_columns_lock = threading.Lock()


def _quiet_tensorflow() -> None:
  """Silences TensorFlow's C++ and Python logging (TFDS imports it to prepare)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if "tensorflow" in sys.modules:
    sys.modules["tensorflow"].get_logger().setLevel(py_logging.ERROR)


def _project_builders() -> list[str]:
  """Registered builder names defined in this package (for error messages)."""
  names, todo = set(), [tfds.core.DatasetBuilder]
  while todo:
    cls = todo.pop()
    todo.extend(cls.__subclasses__())
    if cls.__module__.startswith("facebias_jax.data.builders"):
      names.add(cls.name)
  # Abstract bases (e.g. a shared ManualBuilder) are not registered: drop them.
  return sorted(names & set(tfds.list_builders(with_community_datasets=False)))


def _known_names_help(name: str) -> str:
  base = name.split("/", 1)[0].split(":", 1)[0]
  try:
    configs = sorted(tfds.builder_cls(base).builder_configs)
  except Exception:  # pylint: disable=broad-except  (unknown builder: list the builders)
    return (f"Use '<builder>/<config>'; this project's builders are {_project_builders()}.")
  return (f"Builder {base!r} has the configs {configs}; use '{base}/<config>', or prepare a "
          "custom config first (see the builder's module docstring).")


def _default_manual_dir(builder) -> str:
  """Where TFDS looks for manual files when no manual_dir is given."""
  return os.path.join(str(builder.data_dir_root), "downloads", "manual")


def _manual_help(builder, manual_dir: str | None) -> str:
  instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
  if not instructions:
    return ""
  where = manual_dir or _default_manual_dir(builder)
  return (f"\nThis dataset is read from files you download yourself, into manual_dir="
          f"{where!r} (flag --manual_dir):\n{instructions.strip()}")


def load_source(name: str, *, split: str, data_dir: str | None = None,
                manual_dir: str | None = None, prepare: bool = True,
                builder_kwargs: Mapping[str, Any] | None = None) -> Sequence[dict]:
  """Random-access source for one split of a TFDS builder, prepared if needed.

  Args:
    name: TFDS name with config, e.g. ``"facebias_synthetic_faces/sex_64"``.
    split: split name; TFDS slicing (``"train[:10%]"``) is accepted.
    data_dir: where prepared datasets live (TFDS default ``~/tensorflow_datasets``).
    manual_dir: where a manual-download builder finds its raw files
      (default ``<data_dir>/downloads/manual``).
    prepare: prepare the dataset (ArrayRecord) when it is not there yet; with
      False a missing dataset is a FileNotFoundError saying how to prepare it.
    builder_kwargs: extra ``tfds.builder`` arguments, e.g. ``{"config":
      SyntheticFacesConfig(...)}`` (then ``name`` is the bare builder name).

  Returns:
    A ``tfds.data_source`` sequence of record dicts (``image`` uint8 HxWx3,
    ``label``, attribute features...).

  Raises:
    ValueError: unknown dataset, config or split.
    FileNotFoundError: not prepared and ``prepare=False``, or the manual files
      of a manual-download builder are missing.
  """

  _quiet_tensorflow()
  manual_dir = os.path.expanduser(manual_dir) if manual_dir else None
  where = data_dir or "the TFDS default (~/tensorflow_datasets)"
  try:
    builder = tfds.builder(name, data_dir=data_dir, **dict(builder_kwargs or {}))
  except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
    raise ValueError(f"Unknown dataset {name!r} (data_dir={where}): {str(e).splitlines()[0]}\n"
                     + _known_names_help(name)) from e

  if not builder.is_prepared():
    manual_help = _manual_help(builder, manual_dir)
    if not prepare:
      raise FileNotFoundError(
          f"Dataset {name!r} is not prepared in data_dir={str(builder.data_dir_root)!r} "
          f"(looked for {builder.data_dir}). Prepare it with "
          f"facebias_jax.data.pipeline.load_source({name!r}, split=..., prepare=True, "
          "data_dir=...) or pass the data_dir where it was prepared." + manual_help)
    if manual_help:
      manual = manual_dir or _default_manual_dir(builder)
      if not os.path.isdir(manual):
        raise FileNotFoundError(f"Cannot prepare {name!r}: manual_dir {manual!r} does not "
                                f"exist.{manual_help}")
    try:
      builder.download_and_prepare(
          file_format="array_record",
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except (AssertionError, FileNotFoundError) as e:
      if not manual_help:
        raise
      extra = "" if builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip() in str(e) else manual_help
      raise FileNotFoundError(f"Preparing {name!r} failed: {e}{extra}") from e

  available = list(builder.info.splits)
  for part in re.split(r"\+", split):
    base = part.split("[", 1)[0].strip()
    if base not in available:
      raise ValueError(f"Dataset {name!r} has no split {base!r} (requested split="
                       f"{split!r}); available splits: {available}.")
  file_format = builder.info.file_format
  if file_format is not None and file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise ValueError(
        f"Dataset {name!r} in {builder.data_dir} was prepared as {file_format.value}, but "
        "the grain pipeline needs random access (ArrayRecord). Delete that directory and "
        "prepare again with load_source, or `tfds build --file_format=array_record`.")
  return builder.as_data_source(split=split)


# --------------------------------------------------------------------- record access


class Reader:
  """Reads records of a source: raw tf.Example fast path, or decoded dicts.

  TFDS ArrayRecord sources hold serialized ``tf.train.Example`` protos; parsing
  them ourselves lets us decode only the image (and face mask) of a batch and
  read scalar columns without touching images. Any other sequence of dicts
  (e.g. a list in a test) is read through ``source[i]``.
  """

  def __init__(self, source: Sequence[Any]):
    self.source = source
    self.features = None
    self.raw = None
    info = getattr(source, "dataset_info", None)
    raw = getattr(source, "data_source", None)
    if info is not None and info.features is not None:
      self.features = info.features
      file_format = getattr(info.file_format, "value", info.file_format)
      if raw is not None and file_format == "array_record":
        self.raw = raw

  def __len__(self) -> int:
    return len(self.source)

  def scalar_keys(self) -> dict[str, str]:
    """The scalar features that are columns: name -> ``"int"``, ``"float"`` or ``"text"``.

    Integer and bool features (labels, attributes), real numbers (``skin_ita``) and text
    (an image folder's ``category``); ``filename`` is an identifier, not a column.
    """
    if self.features is not None:
      items = [(k, np.dtype(f.np_dtype)) for k, f in self.features.items()
               if tuple(f.shape) == () and k not in _NOT_COLUMNS]
    elif len(self.source):
      items = [(k, np.asarray(v).dtype) for k, v in self.source[0].items()
               if np.ndim(v) == 0 and k not in _NOT_COLUMNS]
    else:
      items = []
    kinds = {k: _column_kind(dtype) for k, dtype in items}
    return {k: kinds[k] for k in sorted(kinds) if kinds[k] is not None}

  def has_face_mask(self) -> bool:
    if self.features is not None:
      return RECORD_MASK_KEY in self.features
    return bool(len(self.source)) and RECORD_MASK_KEY in self.source[0]

  def image_shape(self) -> tuple[int, ...] | None:
    """Stored image shape when fixed (None dims for variable-size datasets)."""
    if self.features is not None and "image" in self.features:
      return tuple(self.features["image"].shape)
    return None

  def read_columns(self, kinds: Mapping[str, str], progress: bool = False
                   ) -> dict[str, np.ndarray]:
    """The columns ``kinds`` names (see :meth:`scalar_keys`) of every record."""
    n = len(self)
    values = {k: [None] * n for k in kinds}
    chunk = 2048
    starts = range(0, n, chunk)
    if progress and n > 4 * chunk:
      starts = tqdm(starts, desc="reading labels and attributes", unit="chunk")
    for start in starts:
      ids = list(range(start, min(n, start + chunk)))
      if self.raw is not None:
        for j, record in zip(ids, self.raw.__getitems__(ids)):
          feature = tf_example_pb2.Example.FromString(record).features.feature
          for k, kind in kinds.items():
            values[k][j] = _proto_value(feature[k], kind)
      else:
        for j in ids:
          record = self.source[j]
          for k, kind in kinds.items():
            values[k][j] = _plain_value(record[k], kind)
    return {k: np.asarray(values[k], _COLUMN_DTYPES[kind]) for k, kind in kinds.items()}

  def read_images(self, ids: Sequence[int], want_mask: bool):
    """Decoded (image uint8 HxWx3, face mask bool HxW or None) per id."""
    if self.raw is not None:
      image_feature = self.features["image"]
      mask_feature = self.features[RECORD_MASK_KEY] if want_mask else None
      out = []
      # One record at a time: ArrayRecordDataSource.__getitems__ starts a thread pool
      # on every call, which cost more than the reading (3.9 vs 1.5 ms for 32 records
      # of the 64 px set); grain's reader threads already read batches in parallel.
      for record in (self.raw[int(i)] for i in ids):
        feature = tf_example_pb2.Example.FromString(record).features.feature
        image = image_feature.decode_example_np(feature["image"].bytes_list.value[0])
        mask = None
        if mask_feature is not None:
          mask = mask_feature.decode_example_np(
              feature[RECORD_MASK_KEY].bytes_list.value[0])
        out.append((as_rgb(image), mask))
      return out
    out = []
    for i in ids:
      record = self.source[int(i)]
      mask = np.asarray(record[RECORD_MASK_KEY], bool) if want_mask else None
      out.append((as_rgb(np.asarray(record["image"])), mask))
    return out


# Scalar features that identify a record rather than describe it.
_NOT_COLUMNS = ("filename",)
_COLUMN_DTYPES = {"int": np.int32, "float": np.float32, "text": np.str_}


def _column_kind(dtype: np.dtype) -> str | None:
  if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
    return "int"
  if np.issubdtype(dtype, np.floating):
    return "float"
  if dtype.kind in "USO":
    return "text"
  return None


def _proto_value(feature, kind: str):
  if kind == "int":
    return feature.int64_list.value[0]
  if kind == "float":
    return feature.float_list.value[0]
  return feature.bytes_list.value[0].decode("utf-8")


def _plain_value(value, kind: str):
  if kind == "text":
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
  return int(value) if kind == "int" else float(value)


def as_rgb(image: np.ndarray) -> np.ndarray:
  """RGB ``[H, W, 3]`` of a stored image: grey ``[H, W]`` or ``[H, W, 1]`` repeated."""
  if image.ndim == 2:
    return np.repeat(image[..., None], 3, axis=-1)
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image


def source_key(source) -> tuple[str, str] | None:
  """``(prepared dataset folder, split)`` of a TFDS source, None for any other sequence:
  what in-memory caches of a split's contents are keyed on."""
  info = getattr(source, "dataset_info", None)
  split = getattr(source, "split", None)
  if info is None or split is None:
    return None
  return str(info.data_dir), str(split)


def _cache_file(source) -> tuple[tuple[str, str] | None, str | None]:
  key = source_key(source)
  if key is None:
    return None, None
  safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key[1])
  return key, os.path.join(key[0], f"columns-{safe}.npz")


def all_columns(source, progress: bool = False) -> dict[str, np.ndarray]:
  """Every scalar column of the source: int32, float32 or text arrays [N] (memory and
  .npz cached for TFDS sources)."""
  reader = Reader(source)
  keys = reader.scalar_keys()
  key, path = _cache_file(source)
  if key is None:
    return reader.read_columns(keys, progress)
  with _columns_lock:
    cached = _columns_cache.get(key)
  if cached is not None and len(next(iter(cached.values()), ())) == len(reader):
    return cached
  columns = None
  if path and os.path.exists(path):
    try:
      with np.load(path) as data:
        loaded = {k: data[k] for k in data.files}
      if set(keys) <= set(loaded) and all(len(v) == len(reader) for v in loaded.values()):
        columns = {k: loaded[k].astype(_COLUMN_DTYPES[kind]) for k, kind in keys.items()}
    except (OSError, ValueError):
      columns = None  # A damaged cache is rebuilt below.
  if columns is None:
    columns = reader.read_columns(keys, progress)
    _write_npz_atomic(path, columns)
  with _columns_lock:
    _columns_cache[key] = columns
  return columns


def _write_npz_atomic(path: str, columns: Mapping[str, np.ndarray]) -> None:
  """Best effort: a read-only data_dir just means no on-disk cache."""
  try:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **columns)
    os.replace(tmp, path)
  except OSError:
    return


def integer_columns(source: Sequence[Any]) -> list[str]:
  """Names of the integer scalar features (what can be a label)."""
  return sorted(k for k, v in all_columns(source).items() if v.dtype == np.int32)


def read_column(source: Sequence[Any], key: str) -> np.ndarray:
  """One integer feature (``label``, ``Male``, ``skin_type``...) of every record.

  Args:
    source: a source from :func:`load_source` (or any sequence of record dicts).
    key: the feature name.

  Returns:
    int32 ``[len(source)]``, without decoding any image.
  """
  columns = all_columns(source)
  if key not in columns or columns[key].dtype != np.int32:
    raise KeyError(f"Feature {key!r} is not an integer scalar feature of {describe(source)}; "
                   f"available: {integer_columns(source)}.")
  return columns[key]


def read_attributes(source: Sequence[Any], *, progress: bool = False) -> dict[str, np.ndarray]:
  """All scalar features except ``label``, ``[len(source)]`` arrays each: int32 (-1 =
  unknown), float32 (NaN = unknown; e.g. ``skin_ita``) or text (``""`` = unknown)."""
  columns = all_columns(source, progress)
  return {k: v for k, v in columns.items() if k != "label"}


def value_names(source: Sequence[Any]) -> dict[str, list[str]]:
  """The dataset's names of the values of its integer attributes (e.g. UTKFace's
  ``race``: White, Black, ...), stored at preparation in the dataset's metadata; ``{}``
  when it stores none."""
  info = getattr(source, "dataset_info", None)
  metadata = getattr(info, "metadata", None) or {}
  return {str(k): list(v) for k, v in (metadata.get("value_names") or {}).items()}


def read_images(source: Sequence[Any], indices: Sequence[int]) -> list[np.ndarray]:
  """Decoded RGB uint8 images of the given records, stored size (for grids, CAM export)."""
  ids = np.asarray(indices, dtype=np.int64).reshape(-1)
  if len(ids) and (ids.min() < 0 or ids.max() >= len(source)):
    raise ValueError(f"indices must be in [0, {len(source)}) for {describe(source)}; got "
                     f"min {ids.min()}, max {ids.max()}.")
  return [image for image, _ in Reader(source).read_images(ids, want_mask=False)]


def describe(source) -> str:
  info = getattr(source, "dataset_info", None)
  if info is None:
    return f"the source ({type(source).__name__})"
  config = f"/{info.config_name}" if getattr(info, "config_name", None) else ""
  return f"dataset {info.name}{config} split {getattr(source, 'split', '?')!s}"


