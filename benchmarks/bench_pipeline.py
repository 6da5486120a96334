"""Input pipeline throughput: prepared ArrayRecord -> grain -> decoded, flipped batches.

Measures images/s of :func:`facebias_jax.data.pipeline.batches` (train mode:
decode, random flip, normalisation, face masks) at batch 32 and 256 on 64 px
synthetic faces, for several reader-thread counts, against a plain numpy loop
over the same ``tfds.data_source`` (``source[i]`` per example, ``np.stack``,
flip, ``/ 255``) in the same run. Also records what chose the defaults: the
time to prepare the default 64 px config (``--prepare_default``), the decode
cost of raw vs PNG image storage, and reading every label/attribute without
decoding images (cold vs cached).

At the studies' sizes (``--sizes``, default 224 and 128 px; written to
``results/pipeline_full_size.json``): per stored format (JPEG q95 as the face
builders store CelebA, PNG, raw bytes, and JPEG decoded at half size), the cost of
decoding alone and of the library's whole train-mode loader (decode, the studies'
random resized crop, resize, flip, ImageNet normalisation) on ONE core, as images
per second and per CPU second; the pipeline end to end over a prepared JPEG
ArrayRecord split with 0-2 reader threads; and the cores those per-core rates
imply to feed a ResNet-50 train step at NVIDIA's published per-GPU throughputs
(``RESNET50_TRAIN_RATES``). A GPU step is not measured here.

    python -m benchmarks.bench_pipeline [--quick] [--prepare_default] [--sizes 224,128]

Takes under a minute with ``--quick`` (~45 s on a busy 2-core CPU, two thirds of it the
full-size part) and a few minutes without (about 4x the images). Absolute rates move with
the machine's load (recorded); per-CPU-second rates move much less.
``measure_pipeline(...)`` is importable (the train-step comparison builds on it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
import tensorflow_datasets as tfds

from benchmarks import common
from facebias_jax import imaging
from facebias_jax.data import pipeline, sources, synthetic
from facebias_jax.data.builders import common as builder_common
from facebias_jax.data.builders import image_io
from facebias_jax.data.builders.synthetic_faces import SyntheticFacesConfig
from facebias_jax.data.builders.synthetic_faces import synthetic_faces

BENCH_CONFIG = "bench_faces64"
FULL_SIZE_RESULTS = "pipeline_full_size"
DEFAULT_SIZES = "224,128"
# The studies' train augmentation (experiments/configs/classifier.py: crop_scale,
# crop_ratio; celeba_*.py turn it on at 224 px with ImageNet normalisation).
STUDY_CROP = ((0.7, 1.0), (1.0, 4.0 / 3.0))
STUDY_NORMALIZE = "imagenet"
CELEBA_TRAIN_IMAGES = 162_770
RESNET50_IMAGE_SIZE = 224

# What one ResNet-50 v1.5 train step consumes at 224 px, images/s on one accelerator, as
# NVIDIA publishes it (ImageNet, the READMEs' training-performance tables, 1 GPU). These
# are tuned NVIDIA recipes; a study's own step is at most about this fast, so the cores
# derived from them are what the fastest consumer would need.
_DLE_PYTORCH = ("https://github.com/NVIDIA/DeepLearningExamples/blob/master/PyTorch/"
                "Classification/ConvNets/resnet50v1.5/README.md#training-performance-results"
                " (pytorch-21.03 NGC container)")
_DLE_PADDLE = ("https://github.com/NVIDIA/DeepLearningExamples/blob/master/PaddlePaddle/"
               "Classification/RN50v1.5/README.md#training-performance-results")
_MLPERF_3_0 = ("https://developer.nvidia.com/deep-learning-performance-training-inference/"
               "training (MLPerf Training v3.0, closed, 3.0-2053: 8x H100-SXM5-80GB, MXNet, "
               "ResNet-50 v1.5 in 13.466 min)")
_IMAGENET_TRAIN_IMAGES = 1_281_167


def _mlperf_images_per_s(minutes: float, accelerators: int, epochs: float) -> float:
  """Per-accelerator images/s implied by an MLPerf time to train.

  DeepLearningExamples gives no H100 ResNet-50 training throughput; this estimate
  assumes ``epochs`` passes over ImageNet in the published time (an assumption, not read
  from the submission; the time also includes evaluation, so the step alone is faster).
  """
  return _IMAGENET_TRAIN_IMAGES * epochs / (minutes * 60.0) / accelerators


RESNET50_TRAIN_RATES = (
    {"accelerator": "V100-SXM2-16GB", "precision": "fp32", "images_per_s": 367.0,
     "source": _DLE_PYTORCH},
    {"accelerator": "V100-SXM2-16GB", "precision": "amp", "images_per_s": 1200.0,
     "source": _DLE_PYTORCH},
    {"accelerator": "A100-SXM4-80GB", "precision": "tf32", "images_per_s": 938.0,
     "source": _DLE_PYTORCH},
    {"accelerator": "A100-SXM4-80GB", "precision": "amp", "images_per_s": 2470.0,
     "source": _DLE_PYTORCH},
    {"accelerator": "A100-SXM4-80GB", "precision": "amp (PaddlePaddle)",
     "images_per_s": 2711.0, "source": _DLE_PADDLE},
    {"accelerator": "H100-SXM5-80GB", "precision": "amp (estimate)",
     "images_per_s": _mlperf_images_per_s(13.466, 8, epochs=35), "source": _MLPERF_3_0},
)


def _rates(make_iter: Callable[[], Iterator[dict]], num_batches: int, batch_size: int,
           repeats: int) -> dict[str, float]:
  """Median images/s and images per CPU second over ``repeats`` epochs, each after one
  untimed batch.

  CPU seconds are this process's, all threads together: on a shared machine the wall
  rate also counts time spent waiting for a core, the CPU rate does not, and with
  reader threads it says what each core delivers.
  """
  walls, cpus = [], []
  for _ in range(repeats):
    it = make_iter()
    next(it)  # Thread start-up and first read are not steady-state throughput.
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
      next(it)
    images = num_batches * batch_size
    walls.append(images / (time.perf_counter() - start))
    cpus.append(images / max(time.process_time() - cpu_start, 1e-9))
  return {"images_per_s": statistics.median(walls),
          "images_per_cpu_s": statistics.median(cpus)}


def _images_per_second(make_iter: Callable[[], Iterator[dict]], num_batches: int,
                       batch_size: int, repeats: int) -> float:
  """Median images/s over ``repeats`` epochs, each after one untimed batch."""
  return _rates(make_iter, num_batches, batch_size, repeats)["images_per_s"]


def numpy_reference(source, indices: np.ndarray, batch_size: int,
                    seed: int = 0) -> Iterator[dict]:
  """The plain loop: decoded records, stacked, flipped and scaled in numpy."""
  flips = pipeline.flip_decisions(len(indices), seed=seed, epoch=0)
  for start in range(0, len(indices) - batch_size + 1, batch_size):
    records = [source[int(i)] for i in indices[start:start + batch_size]]
    images = np.stack([r["image"] for r in records])
    rows = flips[start:start + batch_size]
    images[rows] = images[rows, :, ::-1]
    yield {"image": images.astype(np.float32) / 255.0,
           "label": np.array([r["label"] for r in records], np.int32),
           "face_mask": np.stack([r["mask"] for r in records])}


def prepare_bench_source(data_dir: str, train_size: int):
  """The 64 px faces set, ``train_size`` training examples (prepared once)."""
  config = SyntheticFacesConfig(name=f"{BENCH_CONFIG}_{train_size}", image_size=64,
                                sizes={"train": train_size, "validation": 0, "test": 0})
  return sources.load_source("facebias_synthetic_faces", split="train", data_dir=data_dir,
                              builder_kwargs={"config": config})


def measure_pipeline(data_dir: str, *, batch_sizes: Sequence[int] = (32, 256),
                     num_threads: Sequence[int] = (0, 1, 2, 4), images: int = 4096,
                     repeats: int = 3, train_size: int = 8192) -> dict[str, Any]:
  """Images/s of the grain pipeline and of the numpy reference, per batch size.

  Args:
    data_dir: TFDS data directory (the bench dataset is prepared there once).
    batch_sizes: batch sizes to measure.
    num_threads: grain reader-thread counts to measure.
    images: images per timed epoch.
    repeats: timed epochs per setting (median reported).
    train_size: examples in the prepared bench split.

  Returns:
    ``{"rows": [...], "best": {batch_size: {...}}}``; each row has
    ``batch_size``, ``num_threads``, ``images_per_s``, ``reference_images_per_s``
    and ``speedup`` (grain / reference).
  """
  source = prepare_bench_source(data_dir, train_size)
  order = np.random.default_rng(0).permutation(len(source))
  rows, best = [], {}
  for batch_size in batch_sizes:
    num_batches = max(2, images // batch_size)
    indices = order[:(num_batches + 1) * batch_size]
    reference = _images_per_second(lambda: numpy_reference(source, indices, batch_size),
                                   num_batches, batch_size, repeats)
    for threads in num_threads:
      rate = _images_per_second(
          lambda: pipeline.batches(source, indices, batch_size=batch_size, train=True,
                                   num_threads=threads, process_index=0, process_count=1),
          num_batches, batch_size, repeats)
      row = {"batch_size": batch_size, "num_threads": threads, "images_per_s": rate,
             "reference_images_per_s": reference, "speedup": rate / reference}
      rows.append(row)
      if rate > best.get(batch_size, {}).get("images_per_s", 0):
        best[batch_size] = row
  return {"rows": rows, "best": best}


def _decode_jpeg_half(data: bytes) -> np.ndarray:
  """RGB at half the stored size, scaled by libjpeg inside the decode (it skips most of
  the inverse DCT): the fix to offer when the model input is at most half the stored
  size. Not in the library."""
  bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_formats(size: int) -> dict[str, tuple[Callable, Callable]]:
  """Stored formats of ``size``² RGB images: name -> (encode to bytes, decode to RGB).

  Decoding goes through the TFDS feature the pipeline's ``sources.Reader`` decodes
  records with: JPEG q95 is how every face builder stores images (CelebA's
  ``crop_<size>`` configs included, ``builders.common.base_features``); raw and PNG are
  the synthetic builder's options; ``jpeg_half`` is that JPEG decoded at half size.
  """
  jpeg = builder_common.base_features(size)["image"]
  png = synthetic_faces._image_feature(size, "png")  # pylint: disable=protected-access
  raw = synthetic_faces._image_feature(size, "raw")  # pylint: disable=protected-access
  return {"raw": (np.ndarray.tobytes, raw.decode_example_np),
          "png": (synthetic_faces.encode_png, png.decode_example_np),
          "jpeg": (image_io.encode_jpeg, jpeg.decode_example_np),
          "jpeg_half": (image_io.encode_jpeg, _decode_jpeg_half)}


@contextlib.contextmanager
def _one_cv2_thread() -> Iterator[None]:
  """OpenCV on one thread, so a rate is what one core (one reader) delivers: decoding is
  single-threaded anyway, OpenCV's resizes and colour conversions are not."""
  threads = cv2.getNumThreads()
  cv2.setNumThreads(1)
  try:
    yield
  finally:
    cv2.setNumThreads(threads)


def _us_per_item(fn: Callable[[], object], items: int, repeats: int) -> tuple[float, float]:
  """Wall (median of ``common.time_call``) and CPU (one more call) microseconds per item
  of ``fn``, which handles ``items`` items per call."""
  seconds = common.time_call(fn, warmup=1, repeats=repeats, min_seconds=0.3)
  cpu_start = time.process_time()
  fn()
  return 1e6 * seconds / items, 1e6 * (time.process_time() - cpu_start) / items


def _decode_row(name: str, blobs: Sequence[bytes], decode: Callable,
                repeats: int) -> dict[str, Any]:
  """Wall and CPU microseconds to decode one of ``blobs``, and their mean size."""
  wall, cpu = _us_per_item(lambda: [decode(b) for b in blobs], len(blobs), repeats)
  return {"format": name, "decode_us": wall, "decode_cpu_us": cpu,
          "bytes": float(np.mean([len(b) for b in blobs]))}


def measure_decoding(num: int = 500) -> list[dict[str, Any]]:
  """Microseconds to decode one 64 px synthetic image per storage format."""
  images = synthetic.generate(num, seed=0, image_size=64)["image"]
  formats = image_formats(64)
  rows = []
  with _one_cv2_thread():
    for name in ("raw", "png"):
      encode, decode = formats[name]
      rows.append(_decode_row(name, [encode(im) for im in images], decode, repeats=3))
  return rows


class _EncodedImages:
  """A source of records whose image is decoded on access by ``decode``.

  ``pipeline.batches`` over it runs the library's own train-mode loader on one stored
  format, without the ArrayRecord read and proto parse that
  :func:`measure_full_size_pipeline` adds.
  """

  def __init__(self, blobs: Sequence[bytes], decode: Callable[[bytes], np.ndarray]):
    self.blobs = blobs
    self.decode = decode

  def __len__(self) -> int:
    return len(self.blobs)

  def __getitem__(self, i: int) -> dict[str, Any]:
    return {"image": self.decode(self.blobs[i]), "label": i % 2}


def measure_decode_augment(images: np.ndarray, *, batch_size: int = 32,
                           repeats: int = 3) -> list[dict[str, Any]]:
  """Per-core cost of each stored format at one size, decoding alone and with the augment.

  The augment is the library's train-mode loader: :func:`pipeline.batches` with no
  reader thread (decode, the studies' random resized crop, resize to the model input,
  flip, ImageNet normalisation), OpenCV on one thread. The model input is the stored
  size, and half of it for JPEG decoded whole and decoded at half size (where the
  reduced decode applies; its crops then hold the detail of the half-size image).

  Args:
    images: uint8 ``[N, S, S, 3]`` rendered at the stored size ``S``.
    batch_size: batch size of the loader.
    repeats: timed repeats (median reported).

  Returns:
    Rows with ``image_size`` (stored), ``format``, ``output_size``, ``bytes``,
    ``decode_us`` / ``decode_cpu_us`` (per image), ``images_per_s`` /
    ``images_per_cpu_s`` (decode + augment), ``augment_cpu_us`` (per image, the
    rest) and ``core_s_per_celeba_epoch``.
  """
  size = len(images[0])
  num_batches = len(images) // batch_size - 1
  if num_batches < 1:
    raise ValueError(f"Need at least {2 * batch_size} images, got {len(images)}.")
  indices = np.arange((num_batches + 1) * batch_size)
  formats = image_formats(size)
  plan = [("raw", size), ("png", size), ("jpeg", size), ("jpeg", size // 2),
          ("jpeg_half", size // 2)]
  blobs_by_encoder, decode_rows, rows = {}, {}, []
  with _one_cv2_thread():
    for name, output_size in plan:
      encode, decode = formats[name]
      if encode not in blobs_by_encoder:
        blobs_by_encoder[encode] = [encode(im) for im in images]
      blobs = blobs_by_encoder[encode]
      if name not in decode_rows:
        decode_rows[name] = _decode_row(name, blobs, decode, repeats)
      source = _EncodedImages(blobs, decode)
      rates = _rates(
          lambda: pipeline.batches(source, indices, batch_size=batch_size,
                                   image_size=output_size, train=True, random_crop=STUDY_CROP,
                                   normalize=STUDY_NORMALIZE, num_threads=0, process_index=0,
                                   process_count=1),
          num_batches, batch_size, repeats)
      total_us = 1e6 / rates["images_per_cpu_s"]
      rows.append({"image_size": size, **decode_rows[name], "output_size": output_size,
                   **rates, "augment_cpu_us": total_us - decode_rows[name]["decode_cpu_us"],
                   "core_s_per_celeba_epoch": CELEBA_TRAIN_IMAGES * total_us / 1e6})
  return rows


def decode_augment_rate(size: int, *, images: int = 256, batch_size: int = 32) -> float:
  """Images per CPU second of one reader at ``size`` px: JPEG q95 decode (as the face
  builders store images), the studies' crop, flip and normalisation (what
  ``benchmarks/bench_accelerator.py`` sets next to each step's consumption)."""
  rendered = synthetic.generate(images, seed=0, image_size=size, task="sex")["image"]
  encode, decode = image_formats(size)["jpeg"]
  source = _EncodedImages([encode(im) for im in rendered], decode)
  num_batches = max(1, images // batch_size - 1)
  indices = np.arange((num_batches + 1) * batch_size) % images
  with _one_cv2_thread():
    return _rates(
        lambda: pipeline.batches(source, indices, batch_size=batch_size, image_size=size,
                                 train=True, random_crop=STUDY_CROP, normalize=STUDY_NORMALIZE,
                                 num_threads=0, process_index=0, process_count=1),
        num_batches, batch_size, repeats=2)["images_per_cpu_s"]


def measure_normalize(size: int, *, batch_size: int = 32) -> list[dict[str, Any]]:
  """Microseconds (wall and CPU) per ``size``² image of ``imaging.normalize_images``, the
  last step of every batch, per normalisation (a share of the augment cost above)."""
  batch = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), np.uint8)
  rows = []
  for normalize in imaging.NORMALIZATIONS:
    wall, cpu = _us_per_item(lambda: imaging.normalize_images(batch, normalize), batch_size,
                             repeats=3)
    rows.append({"image_size": size, "normalize": normalize, "us_per_image": wall,
                 "cpu_us_per_image": cpu})
  return rows


def prepare_jpeg_source(data_dir: str, images: np.ndarray):
  """``images`` as a prepared TFDS ArrayRecord split stored like CelebA's.

  JPEG q95 (``builders.common.base_features``) and a label, no face mask: the synthetic
  builder stores raw or PNG only, and with masks, which CelebA has not.
  """
  size = len(images[0])
  features = tfds.features.FeaturesDict({
      "image": builder_common.base_features(size)["image"],
      "label": tfds.features.ClassLabel(num_classes=2)})
  examples = [(i, {"image": image_io.encode_jpeg(image), "label": i % 2})
              for i, image in enumerate(images)]
  builder = tfds.dataset_builders.store_as_tfds_dataset(
      name="bench_jpeg_faces", version="1.0.0", features=features,
      split_datasets={"train": examples}, config=f"jpeg{size}_{len(images)}",
      data_dir=data_dir, file_format="array_record", disable_shuffling=True)
  return builder.as_data_source(split="train")


def measure_full_size_pipeline(data_dir: str, images: np.ndarray, *, batch_size: int,
                               num_threads: Sequence[int], repeats: int
                               ) -> list[dict[str, Any]]:
  """Images/s of :func:`pipeline.batches` end to end over a prepared JPEG split.

  ArrayRecord read, proto parse, decode, the studies' crop, flip and normalisation, with
  the model input at the stored size, per reader-thread count (OpenCV's own threads as
  in training).

  Returns:
    Rows with ``image_size``, ``format``, ``output_size``, ``batch_size``,
    ``num_threads``, ``images_per_s``, ``images_per_cpu_s`` and ``celeba_epoch_s``
    (one pass over CelebA's training split at that wall rate).
  """
  size = len(images[0])
  source = prepare_jpeg_source(data_dir, images)
  num_batches = len(source) // batch_size - 1
  if num_batches < 1:
    raise ValueError(f"Need at least {2 * batch_size} images, got {len(source)}.")
  indices = np.random.default_rng(0).permutation(len(source))[:(num_batches + 1) * batch_size]
  rows = []
  for threads in num_threads:
    rates = _rates(
        lambda: pipeline.batches(source, indices, batch_size=batch_size, image_size=size,
                                 train=True, random_crop=STUDY_CROP, normalize=STUDY_NORMALIZE,
                                 num_threads=threads, process_index=0, process_count=1),
        num_batches, batch_size, repeats)
    rows.append({"image_size": size, "format": "jpeg", "output_size": size,
                 "batch_size": batch_size, "num_threads": threads, **rates,
                 "celeba_epoch_s": CELEBA_TRAIN_IMAGES / rates["images_per_s"]})
  return rows


def consumption_table(per_core: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Cores each per-core rate needs to feed a ResNet-50 train step, per accelerator.

  The published rates are at 224 px; for a smaller model input the step is taken to
  consume ``(224 / size)²`` times as many images (its FLOPs scale with the pixels; an
  upper bound, since small inputs keep a GPU less busy), marked ``pixel_scaled``.

  Args:
    per_core: rows with ``stage``, ``image_size``, ``format``, ``output_size`` and
      ``images_per_cpu_s`` (images one core delivers per second).
  """
  rows = []
  for rate in RESNET50_TRAIN_RATES:
    for feed in per_core:
      scale = (RESNET50_IMAGE_SIZE / feed["output_size"]) ** 2
      consumed = rate["images_per_s"] * scale
      rows.append({"accelerator": rate["accelerator"], "precision": rate["precision"],
                   **{k: feed[k] for k in ("stage", "image_size", "format", "output_size")},
                   "pixel_scaled": scale != 1.0, "consumed_images_per_s": consumed,
                   "per_core_images_per_s": feed["images_per_cpu_s"],
                   "cores": consumed / feed["images_per_cpu_s"]})
  return rows


def _cores_pivot(table: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
  """The consumption table as one row per feed, one ``cores`` column per accelerator."""
  keys = ("stage", "image_size", "format", "output_size")
  rows: dict[tuple, dict[str, Any]] = {}
  columns = []
  for row in table:
    column = f"{row['accelerator']} {row['precision']}"
    if column not in columns:
      columns.append(column)
    pivot = rows.setdefault(tuple(row[k] for k in keys),
                            {**{k: row[k] for k in keys},
                             "per_core_images_per_s": row["per_core_images_per_s"]})
    pivot[column] = row["cores"]
  return list(rows.values()), [*keys, "per_core_images_per_s", *columns]


def measure_full_size(data_dir: str, sizes: Sequence[int], *, quick: bool) -> dict[str, Any]:
  """Decode + augment per core, the JPEG pipeline end to end, and the cores a ResNet-50
  step needs, at each of ``sizes`` (synthetic faces rendered at that size: an upsampled
  64 px face would be smoother than a photograph, so smaller as JPEG and faster to
  decode).

  Returns:
    ``{"rows": decode + augment rows, "pipeline": end-to-end rows, "normalize": rows of
    :func:`measure_normalize`, "consumption": {"published": RESNET50_TRAIN_RATES,
    "cores": consumption_table}}``.
  """
  # The end-to-end epochs hold 16+ batches: reader threads start a batch or two ahead of
  # the timed window, which would inflate a rate over few batches.
  if quick:
    decode_images, images, batch_size, num_threads, repeats = 288, 544, 32, (0, 2), 2
  else:
    decode_images, images, batch_size, num_threads, repeats = 1056, 2176, 128, (0, 1, 2), 3
  rows, pipeline_rows, normalize_rows = [], [], []
  for size in sizes:
    rendered = synthetic.generate(images, seed=0, image_size=size, task="sex")["image"]
    rows += measure_decode_augment(rendered[:decode_images], repeats=repeats)
    normalize_rows += measure_normalize(size)
    pipeline_rows += measure_full_size_pipeline(os.path.join(data_dir, f"jpeg{size}"), rendered,
                                                batch_size=batch_size, num_threads=num_threads,
                                                repeats=repeats)
  per_core = ([{"stage": "decode_augment", **r} for r in rows]
              + [{"stage": "pipeline", **r} for r in pipeline_rows if r["num_threads"] == 0])
  return {"rows": rows, "pipeline": pipeline_rows, "normalize": normalize_rows,
          "consumption": {"published": list(RESNET50_TRAIN_RATES),
                          "cores": consumption_table(per_core)}}


def measure_columns(source) -> dict[str, float]:
  """Seconds to read every label and attribute: cold (parse records) vs cached."""
  key, path = sources._cache_file(source)  # pylint: disable=protected-access
  sources._columns_cache.pop(key, None)  # pylint: disable=protected-access
  if path and os.path.exists(path):
    os.remove(path)
  start = time.perf_counter()
  sources.read_attributes(source)
  cold = time.perf_counter() - start
  sources._columns_cache.pop(key, None)  # pylint: disable=protected-access
  start = time.perf_counter()
  sources.read_attributes(source)
  npz = time.perf_counter() - start
  return {"records": len(source), "cold_s": cold, "npz_cached_s": npz}


def _cpu_seconds() -> float:
  own = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure_prepare_default(data_dir: str) -> dict[str, Any]:
  """Seconds to prepare ``faces_vs_nonfaces_64`` (all splits) from scratch.

  Wall time depends on how busy the machine is; CPU seconds (this process plus
  its rendering workers) do not, and bound the wall time on an idle machine.
  """
  start, cpu_start = time.perf_counter(), _cpu_seconds()
  source = sources.load_source("facebias_synthetic_faces/faces_vs_nonfaces_64",
                                split="train", data_dir=data_dir)
  seconds = time.perf_counter() - start
  return {"config": "faces_vs_nonfaces_64", "seconds": seconds,
          "cpu_seconds": _cpu_seconds() - cpu_start,
          "examples": sum(synthetic_faces.DEFAULT_SIZES.values()),
          "train_examples": len(source)}


def parse_sizes(text: str) -> tuple[int, ...]:
  """``--sizes``: ``"224,128"`` -> ``(224, 128)``; empty skips the full-size measurements."""
  sizes = []
  for part in filter(None, (p.strip() for p in text.split(","))):
    try:
      size = int(part)
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"{part!r} is not a whole number of pixels (e.g. --sizes 224,128)") from None
    # synthetic.generate renders 16 px and up; past 512 px the ~2,000 rendered faces (and
    # their masks) of a full run take gigabytes, and no study reads such images.
    if not 16 <= size <= 512:
      raise argparse.ArgumentTypeError(f"{size} px is outside 16-512 (e.g. --sizes 224,128)")
    if size in sizes:
      raise argparse.ArgumentTypeError(f"{size} px is given twice")
    sizes.append(size)
  return tuple(sizes)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
  parser.add_argument("--prepare_default", action="store_true",
                      help="also time preparing the default faces_vs_nonfaces_64 config")
  parser.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES,
                      help="stored image sizes (px) of the full-size decode/augment and "
                           f"pipeline measurements, comma-separated (default {DEFAULT_SIZES}; "
                           "empty skips them)")
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data_dir for the bench data (default: a temporary dir)")
  args = parser.parse_args(argv)
  data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_pipeline_")
  load_before = os.getloadavg()[0]  # Other jobs on a 2-core box skew absolute rates.
  full = None
  try:
    quick = dict(images=1024, repeats=2, train_size=2048, num_threads=(0, 2))
    result = measure_pipeline(data_dir, **(quick if args.quick else {}))
    source = prepare_bench_source(data_dir, 2048 if args.quick else 8192)
    extra = {"decoding": measure_decoding(200 if args.quick else 500),
             "columns": measure_columns(source),
             "best": {str(k): v for k, v in result["best"].items()},
             "quick": args.quick,
             "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}}
    if args.prepare_default:
      extra["prepare_default"] = measure_prepare_default(os.path.join(data_dir, "default"))
    if args.sizes:
      full_load = os.getloadavg()[0]
      full = measure_full_size(os.path.join(data_dir, "full_size"), args.sizes,
                               quick=args.quick)
      full.update(sizes=list(args.sizes), study_crop=STUDY_CROP,
                  study_normalize=STUDY_NORMALIZE, quick=args.quick,
                  load_average_1min={"before": full_load, "after": os.getloadavg()[0]})
  finally:
    if not args.data_dir:
      shutil.rmtree(data_dir, ignore_errors=True)
  path = common.write_results("pipeline", result["rows"], extra=extra)
  common.print_table(result["rows"], ["batch_size", "num_threads", "images_per_s",
                                      "reference_images_per_s", "speedup"])
  common.print_table(extra["decoding"], ["format", "decode_us", "bytes"])
  print(f"columns: {extra['columns']}")
  if "prepare_default" in extra:
    print(f"prepare default config: {extra['prepare_default']}")
  print(f"wrote {path}")
  if full is not None:
    rows = full.pop("rows")
    path = common.write_results(FULL_SIZE_RESULTS, rows, extra=full)
    print("\nOne core, decode + the studies' crop/flip/normalisation (per CPU second):")
    common.print_table(rows, ["image_size", "format", "bytes", "decode_cpu_us", "output_size",
                              "augment_cpu_us", "images_per_s", "images_per_cpu_s",
                              "core_s_per_celeba_epoch"])
    common.print_table(full["normalize"], ["image_size", "normalize", "cpu_us_per_image"])
    print("\nPipeline end to end over a prepared JPEG split:")
    common.print_table(full["pipeline"], ["image_size", "batch_size", "num_threads",
                                          "images_per_s", "images_per_cpu_s",
                                          "celeba_epoch_s"])
    print("\nCores to feed a ResNet-50 train step (published 224 px rates; smaller inputs "
          "pixel-scaled):")
    common.print_table(*_cores_pivot(full["consumption"]["cores"]))
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
