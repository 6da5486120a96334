"""Input pipeline: TFDS ArrayRecord -> ``tfds.data_source`` -> ``grain.MapDataset``.

The flax ``examples/gemma/input_pipeline_grain.py`` pattern, with no tf.data:

* :func:`load_source` returns a random-access source for one split of a TFDS
  builder (preparing it first if asked; TensorFlow is needed only for that).
* :func:`read_column` / :func:`read_attributes` return labels and attributes for
  every record without decoding a single image: raw records are parsed for their
  scalar features once, then cached in memory and as ``columns-<split>.npz`` next
  to the prepared data.
* :func:`batches` turns an ordered list of example indices (one epoch, made by a
  sampler in :mod:`facebias_jax.data.sampling`) into batches of numpy arrays. It
  is a ``grain.MapDataset`` over batch numbers, so batch ``k`` is a pure function
  of ``(indices, k, seed, epoch)``: a run resumed at ``start_batch=k`` sees exactly
  the batches it would have seen. Batches are read and decoded by a few grain
  threads ahead of the consumer.

Multi-host: every process passes the same ``indices``; process ``p`` of ``P``
reads rows ``[p*B/P, (p+1)*B/P)`` of each global batch of size ``B``, so the
processes together cover each global batch exactly once.
"""

from __future__ import annotations

import logging as py_logging
import math
import os
import re
import sys
import tempfile
import threading
from typing import Any, Iterator, Mapping, Sequence

import cv2
import grain
import numpy as np

NORMALIZATIONS = ("unit", "imagenet")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# benchmarks/bench_pipeline.py, 2-core CPU: 2 reader threads were fastest at batch
# 256 (~1.6x inline) and within noise of 0-4 at batch 32; with threads, decoding
# also overlaps the train step, which inline reading (0) cannot.
DEFAULT_NUM_THREADS = 2
# Integer feature that marks which example a batch row is; -1 on eval padding.
PAD_INDEX = -1
# The record feature holding the face mask (synthetic set); in batches it is
# renamed `face_mask` because `mask` there marks real (non-padding) rows.
RECORD_MASK_KEY = "mask"
_FLIP_STREAM = 0x464C4950  # "FLIP": keeps flip draws apart from other seeded streams.

_columns_cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}
_columns_lock = threading.Lock()


# --------------------------------------------------------------------------- sources


def _quiet_tensorflow() -> None:
  """Silences TensorFlow's C++ and Python logging (TFDS imports it to prepare)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if "tensorflow" in sys.modules:
    sys.modules["tensorflow"].get_logger().setLevel(py_logging.ERROR)


def _project_builders() -> list[str]:
  """Registered builder names defined in this package (for error messages)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  names, todo = set(), [tfds.core.DatasetBuilder]
  while todo:
    cls = todo.pop()
    todo.extend(cls.__subclasses__())
    if cls.__module__.startswith("facebias_jax.data.builders"):
      names.add(cls.name)
  # Abstract bases (e.g. a shared ManualBuilder) are not registered: drop them.
  return sorted(names & set(tfds.list_builders(with_community_datasets=False)))


def _known_names_help(name: str) -> str:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
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
  # Importing this module ran facebias_jax/data/__init__.py: builders are registered.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

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


class _Reader:
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

  def scalar_keys(self) -> list[str]:
    """Names of the integer (or bool) scalar features, in a stable order."""
    if self.features is not None:
      return sorted(k for k, f in self.features.items()
                    if tuple(f.shape) == () and _is_int_dtype(f.np_dtype))
    if not len(self.source):
      return []
    first = self.source[0]
    return sorted(k for k, v in first.items()
                  if np.ndim(v) == 0 and isinstance(np.asarray(v).item(), (int, bool)))

  def has_face_mask(self) -> bool:
    if self.features is not None:
      return RECORD_MASK_KEY in self.features
    return bool(len(self.source)) and RECORD_MASK_KEY in self.source[0]

  def image_shape(self) -> tuple[int, ...] | None:
    """Stored image shape when fixed (None dims for variable-size datasets)."""
    if self.features is not None and "image" in self.features:
      return tuple(self.features["image"].shape)
    return None

  def read_columns(self, keys: Sequence[str], progress: bool = False) -> dict[str, np.ndarray]:
    n = len(self)
    out = {k: np.empty(n, np.int64) for k in keys}
    chunk = 2048
    starts = range(0, n, chunk)
    if progress and n > 4 * chunk:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      starts = tqdm(starts, desc="reading labels and attributes", unit="chunk")
    for start in starts:
      ids = list(range(start, min(n, start + chunk)))
      if self.raw is not None:
        from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
        for j, record in zip(ids, self.raw.__getitems__(ids)):
          feature = tf_example_pb2.Example.FromString(record).features.feature
          for k in keys:
            out[k][j] = feature[k].int64_list.value[0]
      else:
        for j in ids:
          record = self.source[j]
          for k in keys:
            out[k][j] = int(record[k])
    return {k: v.astype(np.int32) for k, v in out.items()}

  def read_images(self, ids: Sequence[int], want_mask: bool):
    """Decoded (image uint8 HxWx3, face mask bool HxW or None) per id."""
    if self.raw is not None:
      from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
      image_feature = self.features["image"]
      mask_feature = self.features[RECORD_MASK_KEY] if want_mask else None
      out = []
      for record in self.raw.__getitems__(list(ids)):
        feature = tf_example_pb2.Example.FromString(record).features.feature
        image = image_feature.decode_example_np(feature["image"].bytes_list.value[0])
        mask = None
        if mask_feature is not None:
          mask = mask_feature.decode_example_np(
              feature[RECORD_MASK_KEY].bytes_list.value[0])
        out.append((_as_rgb(image), mask))
      return out
    out = []
    for i in ids:
      record = self.source[int(i)]
      mask = np.asarray(record[RECORD_MASK_KEY], bool) if want_mask else None
      out.append((_as_rgb(np.asarray(record["image"])), mask))
    return out


def _is_int_dtype(dtype) -> bool:
  dtype = np.dtype(dtype)
  return np.issubdtype(dtype, np.integer) or dtype == np.bool_


def _as_rgb(image: np.ndarray) -> np.ndarray:
  if image.ndim == 2:
    return np.repeat(image[..., None], 3, axis=-1)
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image


def _cache_file(source) -> tuple[tuple[str, str] | None, str | None]:
  info = getattr(source, "dataset_info", None)
  split = getattr(source, "split", None)
  if info is None or split is None:
    return None, None
  data_dir = str(info.data_dir)
  safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(split))
  return (data_dir, str(split)), os.path.join(data_dir, f"columns-{safe}.npz")


def _all_columns(source, progress: bool = False) -> dict[str, np.ndarray]:
  """Every integer scalar column of the source (memory + .npz cached for TFDS)."""
  reader = _Reader(source)
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
        columns = {k: loaded[k].astype(np.int32) for k in keys}
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


def read_column(source: Sequence[Any], key: str) -> np.ndarray:
  """One integer feature (``label``, ``Male``, ``skin_type``...) of every record.

  Args:
    source: a source from :func:`load_source` (or any sequence of record dicts).
    key: the feature name.

  Returns:
    int32 ``[len(source)]``, without decoding any image.
  """
  columns = _all_columns(source)
  if key not in columns:
    raise KeyError(f"Feature {key!r} is not an integer scalar feature of {_describe(source)}; "
                   f"available: {sorted(columns)}.")
  return columns[key]


def read_attributes(source: Sequence[Any], *, progress: bool = False) -> dict[str, np.ndarray]:
  """All integer scalar features except ``label``, as int32 ``[len(source)]`` arrays."""
  columns = _all_columns(source, progress)
  return {k: v for k, v in columns.items() if k != "label"}


def read_images(source: Sequence[Any], indices: Sequence[int]) -> list[np.ndarray]:
  """Decoded RGB uint8 images of the given records, stored size (for grids, CAM export)."""
  ids = np.asarray(indices, dtype=np.int64).reshape(-1)
  if len(ids) and (ids.min() < 0 or ids.max() >= len(source)):
    raise ValueError(f"indices must be in [0, {len(source)}) for {_describe(source)}; got "
                     f"min {ids.min()}, max {ids.max()}.")
  return [image for image, _ in _Reader(source).read_images(ids, want_mask=False)]


def _describe(source) -> str:
  info = getattr(source, "dataset_info", None)
  if info is None:
    return f"the source ({type(source).__name__})"
  config = f"/{info.config_name}" if getattr(info, "config_name", None) else ""
  return f"dataset {info.name}{config} split {getattr(source, 'split', '?')!s}"


# -------------------------------------------------------------------------- batches


def num_batches(num_indices: int, batch_size: int, train: bool) -> int:
  """Batches in one epoch: train drops the remainder, eval pads the last batch."""
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  return num_indices // batch_size if train else math.ceil(num_indices / batch_size)


def flip_decisions(num: int, *, seed: int, epoch: int) -> np.ndarray:
  """Horizontal-flip decision per position of an epoch's order: bool ``[num]``.

  A pure function of ``(seed, epoch, position)``: resuming mid-epoch replays the
  same flips, and an example drawn several times in one epoch (oversampling)
  gets an independent flip at each position.
  """
  rng = np.random.default_rng([int(seed), int(epoch), _FLIP_STREAM])
  return rng.random(num) < 0.5


def normalize_images(images_uint8: np.ndarray, normalize: str) -> np.ndarray:
  """uint8 ``[..., 3]`` -> float32: ``"unit"`` [0, 1]; ``"imagenet"`` mean/std."""
  if normalize not in NORMALIZATIONS:
    raise ValueError(f"normalize={normalize!r} is not one of {NORMALIZATIONS}.")
  # In place on one float32 copy: big batches are memory-bound, not FLOP-bound.
  x = images_uint8.astype(np.float32)
  if normalize == "imagenet":
    x -= IMAGENET_MEAN * np.float32(255.0)
    x *= np.float32(1.0) / (IMAGENET_STD * np.float32(255.0))
  else:
    x *= np.float32(1.0 / 255.0)
  return x


def _resize(image: np.ndarray, size: int, interpolation: int) -> np.ndarray:
  if image.shape[0] == size and image.shape[1] == size:
    return image
  return cv2.resize(image, (size, size), interpolation=interpolation)


class _BatchLoader:
  """Builds local batch ``k`` of an epoch plan; called from grain threads."""

  def __init__(self, reader: _Reader, plan: dict[str, np.ndarray], columns: dict,
               label_key: str, image_size: int | None, normalize: str):
    self.reader = reader
    self.plan = plan
    self.columns = columns
    self.label_key = label_key
    self.image_size = image_size
    self.normalize = normalize
    self.want_mask = reader.has_face_mask()
    self.attribute_keys = [k for k in columns if k != "label"]

  def _frame_shape(self, decoded) -> tuple[int, int]:
    if self.image_size:
      return (self.image_size, self.image_size)
    if decoded:
      return decoded[0][0].shape[:2]
    stored = self.reader.image_shape()
    if not stored or None in stored[:2]:
      raise ValueError(f"Images of {_describe(self.reader.source)} have no fixed size; "
                       "pass image_size to batches().")
    return stored[:2]

  def __call__(self, k: int) -> dict[str, Any]:
    ids = self.plan["index"][k]
    real = ids != PAD_INDEX
    rows = np.flatnonzero(real)
    decoded = self.reader.read_images(ids[rows], self.want_mask)
    height, width = self._frame_shape(decoded)
    # Padding rows stay zero; real rows are written in place (no list + stack).
    images = np.zeros((len(ids), height, width, 3), np.uint8)
    masks = np.zeros((len(ids), height, width), bool) if self.want_mask else None
    for row, (image, mask) in zip(rows, decoded):
      if self.image_size:
        image = _resize(image, self.image_size, cv2.INTER_AREA)
        if mask is not None:
          mask = _resize(mask.astype(np.uint8), self.image_size, cv2.INTER_NEAREST) > 0
      if image.shape[:2] != (height, width):
        raise ValueError(f"Images of different sizes ({image.shape[:2]} and {(height, width)})"
                         f" in one batch of {_describe(self.reader.source)}; pass image_size "
                         "to batches() to resize them.")
      flip = self.plan["flip"][k][row]
      images[row] = image[:, ::-1] if flip else image
      if masks is not None:
        masks[row] = mask[:, ::-1] if flip else mask
    safe_ids = np.where(real, ids, 0)
    batch = {
        "image": normalize_images(images, self.normalize),
        "label": np.where(real, self.columns[self.label_key][safe_ids], 0).astype(np.int32),
        "index": ids.astype(np.int64),
        "mask": real,
        "attributes": {key: np.where(real, self.columns[key][safe_ids], -1).astype(np.int32)
                       for key in self.attribute_keys},
    }
    if masks is not None:
      batch["face_mask"] = masks
    return batch


def epoch_plan(indices: np.ndarray, *, batch_size: int, train: bool, seed: int, epoch: int,
               flip: bool, process_index: int, process_count: int) -> dict[str, np.ndarray]:
  """This process's rows of every global batch of the epoch.

  Returns:
    ``{"index": int64 [num_batches, batch_size // process_count],
    "flip": bool [same]}``; eval padding rows have index ``PAD_INDEX``.
  """
  n = len(indices)
  nb = num_batches(n, batch_size, train)
  flips = flip_decisions(n, seed=seed, epoch=epoch) if flip else np.zeros(n, bool)
  total = nb * batch_size
  ids = np.full(total, PAD_INDEX, np.int64)
  kept = min(n, total)
  ids[:kept] = indices[:kept]
  flip_rows = np.zeros(total, bool)
  flip_rows[:kept] = flips[:kept]
  local = batch_size // process_count
  cols = slice(process_index * local, (process_index + 1) * local)
  return {"index": ids.reshape(nb, batch_size)[:, cols],
          "flip": flip_rows.reshape(nb, batch_size)[:, cols]}


def batches(source: Sequence[Any], indices: Sequence[int] | np.ndarray, *, batch_size: int,
            image_size: int | None = None, train: bool, seed: int = 0, epoch: int = 0,
            start_batch: int = 0, normalize: str = "unit", flip: bool | None = None,
            label_key: str = "label", process_index: int | None = None,
            process_count: int | None = None,
            num_threads: int = DEFAULT_NUM_THREADS) -> Iterator[dict[str, Any]]:
  """Batches of one epoch, in the order of ``indices``, read by grain threads.

  Args:
    source: from :func:`load_source` (or any sequence of record dicts with
      ``image`` and integer features).
    indices: example indices of the epoch, in order (a sampler made them).
    batch_size: global batch size (all processes together).
    image_size: resize images to this square size (``cv2.INTER_AREA``); None
      keeps the stored size.
    train: True drops the last partial batch and flips; False pads it.
    seed: flip seed.
    epoch: epoch number (flips differ per epoch).
    start_batch: first batch to yield (resuming from a checkpoint).
    normalize: ``"unit"`` ([0, 1]) or ``"imagenet"`` (mean/std).
    flip: random horizontal flips; default ``train``.
    label_key: integer record feature used as ``label`` (e.g. ``"Male"``).
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).
    num_threads: grain reader threads (0 reads in the consuming thread).

  Returns:
    A (grain) iterator of dicts: ``image`` float32 [b,H,W,3], ``label`` int32 [b],
    ``index`` int64 [b] (-1 on padding), ``mask`` bool [b] (True = real row),
    ``attributes`` {name: int32 [b]} (-1 on padding) and, when the records have
    a face mask, ``face_mask`` bool [b,H,W]; ``b = batch_size // process_count``.
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  indices = np.asarray(indices, dtype=np.int64).reshape(-1)
  _validate(source, indices, batch_size=batch_size, image_size=image_size, seed=seed,
            epoch=epoch, normalize=normalize, process_index=process_index,
            process_count=process_count, num_threads=num_threads)
  nb = num_batches(len(indices), batch_size, train)
  if not 0 <= start_batch <= nb:
    raise ValueError(f"start_batch={start_batch} is outside [0, {nb}] for {len(indices)} "
                     f"indices at batch_size={batch_size} (train={train}).")
  reader = _Reader(source)
  columns = _all_columns(source)
  if label_key not in columns:
    raise ValueError(f"label_key={label_key!r} is not an integer feature of "
                     f"{_describe(source)}; available: {sorted(columns)}.")
  plan = epoch_plan(indices, batch_size=batch_size, train=train, seed=seed, epoch=epoch,
                    flip=train if flip is None else flip, process_index=process_index,
                    process_count=process_count)
  loader = _BatchLoader(reader, plan, columns, label_key, image_size, normalize)
  dataset = grain.MapDataset.range(start_batch, nb).map(loader)
  options = grain.ReadOptions(num_threads=num_threads,
                              prefetch_buffer_size=max(2, 2 * num_threads))
  return iter(dataset.to_iter_dataset(options))


def _validate(source, indices: np.ndarray, *, batch_size: int, image_size: int | None,
              seed: int, epoch: int, normalize: str, process_index: int,
              process_count: int, num_threads: int) -> None:
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count="
                     f"{process_count}).")
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} must be divisible by process_count="
                     f"{process_count} (each process reads an equal slice).")
  if image_size is not None and image_size <= 0:
    raise ValueError(f"image_size must be positive or None, got {image_size}.")
  if normalize not in NORMALIZATIONS:
    raise ValueError(f"normalize={normalize!r} is not one of {NORMALIZATIONS}.")
  if seed < 0 or epoch < 0:
    raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}.")
  if num_threads < 0:
    raise ValueError(f"num_threads must be >= 0, got {num_threads}.")
  if len(indices) and (indices.min() < 0 or indices.max() >= len(source)):
    raise ValueError(f"indices must be in [0, {len(source)}) for {_describe(source)}; got "
                     f"min {indices.min()}, max {indices.max()}.")
