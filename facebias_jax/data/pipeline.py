"""Batches of an epoch: ``grain.MapDataset`` over a random-access source, no tf.data.

The second half of the flax ``examples/gemma/input_pipeline_grain.py`` pattern (the
first, reading prepared sources, is ``data.sources``). :func:`batches` turns an ordered
list of example indices (one epoch, made by a sampler in ``data.sampling``) into
batches of numpy arrays. It is a ``grain.MapDataset`` over batch numbers, so batch
``k`` is a pure function of ``(indices, k, seed, epoch)``: a run resumed at
``start_batch=k`` sees exactly the batches it would have seen. Batches are read and
decoded by a few grain threads ahead of the consumer.

Multi-host: every process passes the same ``indices``; process ``p`` of ``P`` reads
rows ``[p*B/P, (p+1)*B/P)`` of each global batch of size ``B`` (:func:`batch_layout`),
so the processes together cover each global batch exactly once.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import cv2
import grain
import jax
import numpy as np

from facebias_jax import imaging
from facebias_jax.data import image_cache, sources

# benchmarks/bench_pipeline.py, 2-core CPU: 2 reader threads were fastest at batch
# 256 (~1.6x inline) and within noise of 0-4 at batch 32; with threads, decoding
# also overlaps the train step, which inline reading (0) cannot.
DEFAULT_NUM_THREADS = 2
# Integer feature that marks which example a batch row is; -1 on eval padding.
PAD_INDEX = -1
_FLIP_STREAM = 0x464C4950  # "FLIP": keeps flip draws apart from other seeded streams.
_CROP_STREAM = 0x43524F50  # "CROP"
# RandomResizedCrop's attempts before its fallback (torchvision's value).
_CROP_TRIES = 10


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


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator, *,
                           scale: tuple[float, float], ratio: tuple[float, float]
                           ) -> tuple[int, int, int, int]:
  """torchvision's ``RandomResizedCrop`` box ``(y0, x0, h, w)`` of an image.

  Up to 10 tries of an area fraction uniform in ``scale`` and an aspect ratio (w/h)
  log-uniform in ``ratio``; the first that fits is placed uniformly. If none fits, the
  centre crop of the image clamped to ``ratio``.
  """
  area = height * width
  log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
  for _ in range(_CROP_TRIES):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = float(np.exp(rng.uniform(*log_ratio)))
    w = int(round(np.sqrt(target * aspect)))
    h = int(round(np.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    h, w = height, int(round(height * ratio[1]))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def _resize(image: np.ndarray, size: int, interpolation: int) -> np.ndarray:
  if image.shape[0] == size and image.shape[1] == size:
    return image
  return cv2.resize(image, (size, size), interpolation=interpolation)


class _BatchLoader:
  """Builds local batch ``k`` of an epoch plan; called from grain threads."""

  def __init__(self, reader: sources.Reader, layout: dict[str, np.ndarray], columns: dict,
               label_key: str, image_size: int | None, normalize: str, *,
               crop: tuple | None = None, seed: int = 0, epoch: int = 0,
               face_masks: bool = True):
    self.reader = reader
    self.crop = crop
    self.crop_key = (int(seed), int(epoch), _CROP_STREAM)
    self.layout = layout
    self.columns = columns
    self.label_key = label_key
    self.image_size = image_size
    self.normalize = normalize
    self.want_mask = face_masks and reader.has_face_mask()
    self.cache = None
    self.attribute_keys = [k for k in columns if k != "label"]

  def _frame_shape(self) -> tuple[int, int] | None:
    """The batch's image size: the model's, else the stored one; None when the dataset's
    images vary in size (the batch's first image then sets it)."""
    if self.image_size:
      return (self.image_size, self.image_size)
    stored = self.reader.image_shape()
    return tuple(stored[:2]) if stored and None not in stored[:2] else None

  def _random_crop(self, image: np.ndarray, mask: np.ndarray | None, position: int):
    """The random resized crop of the example at ``position`` of the epoch's order (a
    pure function of seed, epoch and position: resumed runs crop alike)."""
    rng = np.random.default_rng([*self.crop_key, position])
    y0, x0, h, w = random_resized_crop_box(*image.shape[:2], rng, scale=self.crop[0],
                                           ratio=self.crop[1])
    size = self.image_size or max(image.shape[:2])
    shrink = h * w > size * size
    image = cv2.resize(image[y0:y0 + h, x0:x0 + w], (size, size),
                       interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if mask is not None:
      mask = cv2.resize(mask[y0:y0 + h, x0:x0 + w].astype(np.uint8), (size, size),
                        interpolation=cv2.INTER_NEAREST) > 0
    return image, mask

  def _prepared(self, image: np.ndarray, mask: np.ndarray | None, position: int):
    """One decoded example cropped (train) and resized to the model's input size."""
    if self.crop is not None:
      image, mask = self._random_crop(image, mask, position)
    if self.image_size:
      image = _resize(image, self.image_size, cv2.INTER_AREA)
      if mask is not None:
        mask = _resize(mask.astype(np.uint8), self.image_size, cv2.INTER_NEAREST) > 0
    return image, mask

  def _read(self, ids: np.ndarray, positions: np.ndarray, frame: tuple[int, int] | None):
    """``(images uint8 [n, h, w, 3], face masks bool [n, h, w] or None)`` of ``ids``;
    ``frame`` None takes the first image's size."""
    decoded = self.reader.read_images(ids, self.want_mask)
    prepared = [self._prepared(image, mask, int(position))
                for (image, mask), position in zip(decoded, positions)]
    if frame is None:
      if not prepared:
        raise ValueError(f"Images of {sources.describe(self.reader.source)} have no fixed "
                         "size; pass image_size to batches().")
      frame = prepared[0][0].shape[:2]
    images = np.empty((len(ids), *frame, 3), np.uint8)
    masks = np.empty((len(ids), *frame), bool) if self.want_mask else None
    for row, (image, mask) in enumerate(prepared):
      if image.shape[:2] != frame:
        raise ValueError(f"Images of different sizes ({image.shape[:2]} and {frame}) in one "
                         f"batch of {sources.describe(self.reader.source)}; pass image_size "
                         "to batches() to resize them.")
      images[row] = image
      if masks is not None:
        masks[row] = mask
    return images, masks

  def __call__(self, k: int) -> dict[str, Any]:
    ids = self.layout["index"][k]
    real = ids != PAD_INDEX
    rows = np.flatnonzero(real)
    positions = self.layout["position"][k][rows]
    if self.cache is not None:  # Resized, never cropped, no masks: see image_cache.
      frame = (self.image_size, self.image_size)
      read, masks_read = self.cache.get(
          ids[rows], lambda missing: self._read(missing, np.zeros_like(missing), frame)[0]), None
    else:
      read, masks_read = self._read(ids[rows], positions, self._frame_shape())
      frame = read.shape[1:3]
    # Padding rows stay zero.
    images = np.zeros((len(ids), *frame, 3), np.uint8)
    images[rows] = read
    flip = rows[self.layout["flip"][k][rows]]
    images[flip] = images[flip, :, ::-1]
    masks = None
    if masks_read is not None:
      masks = np.zeros((len(ids), *frame), bool)
      masks[rows] = masks_read
      masks[flip] = masks[flip, :, ::-1]
    safe_ids = np.where(real, ids, 0)
    batch = {
        "image": imaging.normalize_images(images, self.normalize),
        "label": np.where(real, self.columns[self.label_key][safe_ids], 0).astype(np.int32),
        "index": ids.astype(np.int64),
        "mask": real,
        "attributes": {key: _padded(self.columns[key], safe_ids, real)
                       for key in self.attribute_keys},
    }
    if masks is not None:
      batch["face_mask"] = masks
    return batch


def _padded(column: np.ndarray, ids: np.ndarray, real: np.ndarray) -> np.ndarray:
  """``column[ids]`` with the "unknown" value of its kind on padding rows."""
  unknown = {"f": np.nan, "U": ""}.get(column.dtype.kind, -1)
  return np.where(real, column[ids], unknown).astype(column.dtype)


def batch_layout(indices: np.ndarray, *, batch_size: int, train: bool, seed: int, epoch: int,
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
          "flip": flip_rows.reshape(nb, batch_size)[:, cols],
          "position": np.arange(total, dtype=np.int64).reshape(nb, batch_size)[:, cols]}


def batches(source: Sequence[Any], indices: Sequence[int] | np.ndarray, *, batch_size: int,
            image_size: int | None = None, train: bool, seed: int = 0, epoch: int = 0,
            start_batch: int = 0, normalize: str = "unit", flip: bool | None = None,
            random_crop: tuple[tuple[float, float], tuple[float, float]] | None = None,
            label_key: str = "label", process_index: int | None = None,
            process_count: int | None = None, num_threads: int = DEFAULT_NUM_THREADS,
            face_masks: bool = True, cache_mb: float = 0) -> Iterator[dict[str, Any]]:
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
    random_crop: ``(scale, ratio)`` of a random resized crop before the flip (the CelebA
      protocols: ``((0.7, 1.0), (1.0, 4 / 3))``), drawn per (seed, epoch, position);
      train batches only. None (default) keeps the whole image.
    label_key: integer record feature used as ``label`` (e.g. ``"Male"``).
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).
    num_threads: grain reader threads (0 reads in the consuming thread).
    face_masks: decode, crop and flip the records' face masks (``face_mask``) when they
      have one; training and evaluation never read them, the CAM metrics do.
    cache_mb: keep the split's decoded images, resized to ``image_size``, in memory for
      later epochs when they fit in this many MiB (``data.image_cache``; not with random
      crops or face masks, which need the stored image). 0 reads every epoch.

  Returns:
    A (grain) iterator of dicts: ``image`` float32 [b,H,W,3], ``label`` int32 [b],
    ``index`` int64 [b] (-1 on padding), ``mask`` bool [b] (True = real row),
    ``attributes`` {name: int32 [b]} (-1 on padding) and, when the records have
    a face mask and ``face_masks``, ``face_mask`` bool [b,H,W];
    ``b = batch_size // process_count``.
  """
  if process_index is None or process_count is None:
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
  reader = sources.Reader(source)
  table = sources.all_columns(source)
  if label_key not in table or table[label_key].dtype != np.int32:
    raise ValueError(f"label_key={label_key!r} is not an integer feature of "
                     f"{sources.describe(source)}; available: {sources.integer_columns(source)}.")
  layout = batch_layout(indices, batch_size=batch_size, train=train, seed=seed, epoch=epoch,
                    flip=train if flip is None else flip, process_index=process_index,
                    process_count=process_count)
  if random_crop is not None:
    _check_crop(random_crop)
  loader = _BatchLoader(reader, layout, table, label_key, image_size, normalize,
                        crop=random_crop if train else None, seed=seed, epoch=epoch,
                        face_masks=face_masks)
  if cache_mb and image_size and loader.crop is None and not loader.want_mask:
    loader.cache = image_cache.cache_for(sources.source_key(source), len(source), image_size,
                                         cache_mb)
  dataset = grain.MapDataset.range(start_batch, nb).map(loader)
  options = grain.ReadOptions(num_threads=num_threads,
                              prefetch_buffer_size=max(2, 2 * num_threads))
  return iter(dataset.to_iter_dataset(options))


def _check_crop(random_crop) -> None:
  try:
    (s0, s1), (r0, r1) = random_crop
  except (TypeError, ValueError):
    raise ValueError(f"random_crop must be ((scale_min, scale_max), (ratio_min, ratio_max)), "
                     f"got {random_crop!r}") from None
  if not (0.0 < s0 <= s1 <= 1.0 and 0.0 < r0 <= r1):
    raise ValueError(f"random_crop={random_crop!r}: need 0 < scale_min <= scale_max <= 1 and "
                     "0 < ratio_min <= ratio_max (e.g. ((0.7, 1.0), (1.0, 1.333)))")


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
  if normalize not in imaging.NORMALIZATIONS:
    raise ValueError(f"normalize={normalize!r} is not one of {imaging.NORMALIZATIONS}.")
  if seed < 0 or epoch < 0:
    raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}.")
  if num_threads < 0:
    raise ValueError(f"num_threads must be >= 0, got {num_threads}.")
  if len(indices) and (indices.min() < 0 or indices.max() >= len(source)):
    raise ValueError(f"indices must be in [0, {len(source)}) for {sources.describe(source)}; got "
                     f"min {indices.min()}, max {indices.max()}.")
