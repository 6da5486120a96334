"""Rendering speed of the synthetic biased-faces benchmark, on one core.

Measures faces per second of ``synthetic.generate`` (task "sex": every image is
a face) at 64 and 128 px with OpenCV limited to one thread, and, as a reference
in the same run, the cost of merely resizing and PNG-encoding the same images
(what storing them in a dataset costs anyway). Reports the ratio to that
reference and to the 2,000 faces/s target at 64 px.

    python -m benchmarks.bench_synthetic [--quick]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from benchmarks import common
from facebias_jax.data import synthetic

TARGET_FACES_PER_S_64 = 2000.0


def _encode_reference(images: np.ndarray) -> None:
  """Area-resize to half size and back, then PNG-encode every image."""
  size = images.shape[1]
  for image in images:
    small = cv2.resize(image, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
    cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    cv2.imencode(".png", image)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
  args = parser.parse_args(argv)
  cv2.setNumThreads(1)  # One core: the figure a data-prep worker process gets.
  num = 200 if args.quick else 1000
  repeats = 3 if args.quick else 5
  rows = []
  for size in (64, 128):
    n = num if size == 64 else num // 2
    seconds = common.time_call(lambda: synthetic.generate(n, seed=0, image_size=size, task="sex"),
                               warmup=1, repeats=repeats, min_seconds=0.5)
    # CPU seconds as well as wall seconds: on a shared machine the wall figure also
    # counts time spent waiting for the core.
    cpu_start = time.process_time()
    images = synthetic.generate(n, seed=0, image_size=size, task="sex")["image"]
    cpu_seconds = time.process_time() - cpu_start
    ref = common.time_call(lambda: _encode_reference(images), warmup=1, repeats=repeats,
                           min_seconds=0.5)
    row = {"image_size": size, "images": n, "faces_per_s": n / seconds,
           "faces_per_cpu_s": n / cpu_seconds,
           "ms_per_face": 1e3 * seconds / n, "resize_encode_per_s": n / ref,
           "render_vs_resize_encode": ref / seconds}
    if size == 64:
      row["ratio_to_target_2000"] = row["faces_per_s"] / TARGET_FACES_PER_S_64
      row["cpu_ratio_to_target_2000"] = row["faces_per_cpu_s"] / TARGET_FACES_PER_S_64
    rows.append(row)
  common.print_table(rows, ["image_size", "faces_per_s", "faces_per_cpu_s", "ms_per_face",
                            "resize_encode_per_s", "render_vs_resize_encode",
                            "ratio_to_target_2000", "cpu_ratio_to_target_2000"])
  path = common.write_results("synthetic", rows, extra={
      "target_faces_per_s_64": TARGET_FACES_PER_S_64, "opencv_threads": 1,
      "note": "render_vs_resize_encode = time to resize+PNG-encode / time to render "
              "(1.0 means rendering costs as much as storing the image)."})
  print(f"Wrote {path}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
