"""Input pipeline throughput: prepared ArrayRecord -> grain -> decoded, flipped batches.

Measures images/s of :func:`facebias_jax.data.pipeline.batches` (train mode:
decode, random flip, normalisation, face masks) at batch 32 and 256 on 64 px
synthetic faces, for several reader-thread counts, against a plain numpy loop
over the same ``tfds.data_source`` (``source[i]`` per example, ``np.stack``,
flip, ``/ 255``) in the same run. Also records what chose the defaults: the
time to prepare the default 64 px config (``--prepare_default``), the decode
cost of raw vs PNG image storage, and reading every label/attribute without
decoding images (cold vs cached).

    python -m benchmarks.bench_pipeline [--quick] [--prepare_default]

``measure_pipeline(...)`` is importable (the train-step comparison builds on it).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from benchmarks import common
from facebias_jax.data import pipeline, sources
from facebias_jax.data.builders.synthetic_faces import SyntheticFacesConfig
from facebias_jax.data.builders.synthetic_faces import synthetic_faces

BENCH_CONFIG = "bench_faces64"


def _images_per_second(make_iter: Callable[[], Iterator[dict]], num_batches: int,
                       batch_size: int, repeats: int) -> float:
  """Median images/s over ``repeats`` epochs, each after one untimed batch."""
  rates = []
  for _ in range(repeats):
    it = make_iter()
    next(it)  # Thread start-up and first read are not steady-state throughput.
    start = time.perf_counter()
    for _ in range(num_batches):
      next(it)
    rates.append(num_batches * batch_size / (time.perf_counter() - start))
  return statistics.median(rates)


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


def measure_decoding(num: int = 500) -> list[dict[str, Any]]:
  """Microseconds to decode one 64 px synthetic image per storage format."""
  from facebias_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  images = synthetic.generate(num, seed=0, image_size=64)["image"]
  formats = {
      "raw": ([im.tobytes() for im in images],
              lambda b: np.frombuffer(b, np.uint8).reshape(64, 64, 3)),
      "png": ([synthetic_faces.encode_png(im) for im in images],
              lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)),
  }
  rows = []
  for name, (blobs, decode) in formats.items():
    seconds = common.time_call(lambda: [decode(b) for b in blobs], warmup=1, repeats=3,
                               min_seconds=0.3)
    rows.append({"format": name, "decode_us": 1e6 * seconds / num,
                 "bytes": float(np.mean([len(b) for b in blobs]))})
  return rows


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


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
  parser.add_argument("--prepare_default", action="store_true",
                      help="also time preparing the default faces_vs_nonfaces_64 config")
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data_dir for the bench data (default: a temporary dir)")
  args = parser.parse_args(argv)
  data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_pipeline_")
  load_before = os.getloadavg()[0]  # Other jobs on a 2-core box skew absolute rates.
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
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
