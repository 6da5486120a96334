"""Frames per second of the live demo at 640x480, ResNet-18 at 128 px, on this CPU.

Per frame: Haar-cascade detection + cropping + classification and CAM of all faces
(one jit-compiled batched call, ``demo.live.FaceClassifier``) + drawing, with one and
with three synthetic faces in the frame. Reference in the same run: the naive loop
of many demos, one jitted forward per face (batch 1) followed by the CAM computed in
numpy from the returned feature map and the head weights, then resized with OpenCV.
Detection, cropping and drawing are the same code in both, so the ratio isolates the
model + CAM part; the stage split shows where a frame's time goes.

    python -m benchmarks.bench_live [--quick]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import cv2
import jax
import numpy as np
from flax import nnx

from benchmarks import common
from facebias_jax.cam import predictor as cam_predictor
from facebias_jax.data import synthetic
from facebias_jax import faces
from facebias_jax.demo import live
from facebias_jax.models import get_model

FRAME_HW = (480, 640)
FACE_PX = 150
IMAGE_SIZE = 128
# Paste positions (x, y) of up to three faces in a 640x480 frame.
POSITIONS = ((40, 60), (245, 200), (450, 80))


def _random_resnet18() -> nnx.Module:
  """ResNet-18 with He-scaled random weights, built without the eager initialisers.

  ``nnx.eval_shape`` avoids compiling one XLA program per parameter shape (tens of
  seconds on 2 cores). Weights are scaled by fan-in and BatchNorm is the identity, so
  activations stay in a normal range (exploding values would time denormal/inf paths).
  """
  abstract = nnx.eval_shape(lambda: get_model("resnet18", 1))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(0)

  def fill(path, x):
    name = str(path[-2] if str(path[-1]).endswith("value") else path[-1])
    if "kernel" in name:
      fan_in = int(np.prod(x.shape[:-1]))
      return (rng.standard_normal(x.shape) * np.sqrt(2.0 / fan_in)).astype(x.dtype)
    if "scale" in name or "var" in name:
      return np.ones(x.shape, x.dtype)
    return np.zeros(x.shape, x.dtype)

  state = jax.tree_util.tree_map_with_path(fill, state)
  model = nnx.merge(graphdef, state)
  model.eval()
  return model


def _frames() -> dict[int, np.ndarray]:
  """BGR 640x480 frames with 1 and 3 synthetic faces the cascade finds."""
  faces = synthetic.generate(16, seed=0, task="sex", image_size=128)["image"]
  background = np.full((*FRAME_HW, 3), (150, 120, 90), np.uint8)
  chosen = []
  for face in faces:
    frame = background.copy()
    x, y = POSITIONS[0]
    frame[y:y + FACE_PX, x:x + FACE_PX] = cv2.resize(face, (FACE_PX, FACE_PX))[..., ::-1]
    if len(faces.detect_faces(frame, detector="haar")) == 1:
      chosen.append(face)
    if len(chosen) == len(POSITIONS):
      break
  frames = {}
  for count in (1, 3):
    frame = background.copy()
    for face, (x, y) in zip(chosen[:count], POSITIONS):
      frame[y:y + FACE_PX, x:x + FACE_PX] = cv2.resize(face, (FACE_PX, FACE_PX))[..., ::-1]
    found = len(faces.detect_faces(frame, detector="haar"))
    if found != count:
      raise RuntimeError(f"the cascade found {found} faces in the {count}-face frame")
    frames[count] = frame
  return frames


class NaiveProcessor:
  """The reference: per-face jitted forward (batch 1) + numpy CAM, same detection/drawing."""

  def __init__(self, model: nnx.Module, processor: live.FrameProcessor):
    self.processor = processor
    graphdef, state = nnx.split(model)
    w, b = model.linear_head()
    self.w, self.b = np.asarray(w), np.asarray(b)

    @jax.jit
    def forward(state, images):
      logits, aux = nnx.merge(graphdef, state)(images)
      return logits, aux["feature_map"]

    self.forward = lambda images: forward(state, images)

  def process(self, frame_bgr: np.ndarray) -> None:
    p = self.processor
    boxes = faces.detect_faces(frame_bgr, **p.detect_kwargs)
    regions = [live.margin_box(box, p.margin, frame_bgr.shape[:2]) for box in boxes]
    crops = live.crop_faces(frame_bgr, regions, IMAGE_SIZE)
    maps, labels = [], []
    for crop in crops:
      logits, fmap = jax.device_get(self.forward(crop[None].astype(np.float32) / 255.0))
      logit = float(logits[0, 0])
      sign = 1.0 if logit > 0 else -1.0  # map of the predicted class
      cam = sign * (fmap[0] @ self.w[:, 0])
      maps.append(cv2.resize(cam, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR))
      prob = 1.0 / (1.0 + np.exp(-abs(logit)))
      labels.append(cam_predictor.prediction_label(p.class_names, int(logit > 0), prob))
    live.draw_faces(frame_bgr, regions, np.asarray(maps), labels, alpha=p.alpha)


def _forward_only(model: nnx.Module, n: int) -> Callable[[], object]:
  """Jitted plain forward ``model(images)`` of a padded batch of ``n`` crops (no CAM)."""
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
  images = np.zeros((live.bucket_size(n, 4), IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
  return lambda: jax.block_until_ready(forward(state, images))


def _interleaved_median(fns: dict[str, Callable[[], object]], *, repeats: int,
                        calls: int) -> dict[str, float]:
  """Median seconds per call of each function over rounds timed in turns.

  Other processes share this machine's two cores; timing the variants in turns (round
  robin) spreads their interference evenly over the variants, so ratios stay fair.
  """
  samples = {name: [] for name in fns}
  for fn in fns.values():  # warm-up (and compilation) outside the timings
    fn()
    fn()
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      for _ in range(calls):
        fn()
      samples[name].append((time.perf_counter() - start) / calls)
  return {name: float(np.median(values)) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer rounds")
  args = parser.parse_args(argv)
  repeats = 4 if args.quick else 10
  calls = 3 if args.quick else 5

  model = _random_resnet18()
  classifier = live.FaceClassifier(model, image_size=IMAGE_SIZE, method="cam", max_faces=4)
  classifier.warmup()
  processor = live.FrameProcessor(classifier, ("female", "male"))
  naive = NaiveProcessor(model, processor)
  frames = _frames()
  dummy = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)

  rows = []
  for count, frame in frames.items():
    crops = np.stack([dummy] * count)
    stage_samples = {k: [] for k in live.STAGES}

    def ours():
      result = processor.process(frame.copy())
      for k, v in result.seconds.items():
        stage_samples[k].append(v)

    timed = _interleaved_median({
        "ours": ours,
        "naive": lambda: naive.process(frame.copy()),
        "model": lambda: classifier(crops),
        "classify_only": _forward_only(model, count),
        "detect_320": lambda: faces.detect_faces(frame, max_side=320,
                                                       **processor.detect_kwargs),
    }, repeats=repeats, calls=calls)
    # Stage split from inside the timed frames (medians): the stages sum to the frame.
    stages = {k: 1e3 * float(np.median(v)) for k, v in stage_samples.items()}
    row = {"faces": count, "frame": f"{FRAME_HW[1]}x{FRAME_HW[0]}",
           "fps": 1.0 / timed["ours"], "fps_naive_per_face": 1.0 / timed["naive"],
           "speedup_vs_naive": timed["naive"] / timed["ours"],
           "ms_per_frame": 1e3 * timed["ours"], "ms_naive": 1e3 * timed["naive"],
           **{f"ms_{k}": v for k, v in stages.items()},
           "ms_model_alone": 1e3 * timed["model"],
           "ms_classify_only": 1e3 * timed["classify_only"],
           "cam_share_of_model": 1.0 - timed["classify_only"] / timed["model"],
           "ms_detect_max_side_320": 1e3 * timed["detect_320"]}
    rows.append(row)

  columns = ["faces", "fps", "fps_naive_per_face", "speedup_vs_naive", "ms_per_frame",
             "ms_detect", "ms_preprocess", "ms_model", "ms_draw", "cam_share_of_model",
             "ms_detect_max_side_320"]
  common.print_table(rows, columns)
  path = common.write_results("live", rows, extra={
      "model": "resnet18 (random weights), 128 px input, method cam",
      "reference": "per-face jitted forward (batch 1) + numpy CAM + cv2.resize",
      "timing": f"median of {repeats} interleaved rounds of {calls} calls per variant; "
                "stage times (ms_detect/preprocess/model/draw) are medians inside the "
                "timed frames",
      "note": "ms_model = batched classification + CAM (one jit call); cam_share_of_model "
              "= 1 - plain forward / (forward + CAM), both timed alone",
      "quick": bool(args.quick)})
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
