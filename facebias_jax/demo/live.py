"""Live demo: detect faces in camera / video / image frames, classify them, draw their CAM.

Per frame: face boxes (:mod:`facebias_jax.faces`) -> each box enlarged by a margin,
cropped and resized to the model's input size -> one compiled call classifies *all*
faces of the frame together and computes their class activation maps
(:func:`facebias_jax.cam.predictor.make_predictor`) -> each map is blended into its box
(:func:`facebias_jax.cam.overlay`) with the predicted label and probability, and the
frame rate is written in the corner. Frames come from and go to ``demo.frames``.

The number of faces varies from frame to frame; batches are padded to a power of two
(up to ``max_faces``) so the model compiles once per bucket, not once per face count.

Library images are RGB; frames stay BGR (OpenCV's order) in the demo only, and are
converted at the boundary with the model and with :func:`facebias_jax.cam.overlay`.

Typical use (what ``experiments/webcam_demo.py`` runs; the defaults are
``experiments/configs/demo.py``)::

  config = demo_config.get_config()
  config.run, config.video, config.output, config.headless = "workdirs/r18", "in.mp4", "out.mp4", True
  summary = run(config)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from typing import Any, Callable, Sequence

import cv2
import ml_collections
import numpy as np

from facebias_jax import faces, imaging, runs
from facebias_jax.cam import methods as cam_methods
from facebias_jax.cam import predictor as cam_predictor
from facebias_jax.cam import render
from facebias_jax.demo import frames as frames_lib

# Weight of the newest frame in the displayed (exponentially smoothed) frame rate.
FPS_SMOOTHING = 0.1
STAGES = ("detect", "preprocess", "model", "draw")
LIVE_DETECTOR = "haar"
_BOX_COLOR_BGR = (0, 255, 0)
_TEXT_BG_BGR = (0, 0, 0)
_TEXT_FG_BGR = (255, 255, 255)


# ---------------------------------------------------------------------------- options


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the flag when the demo config is inconsistent."""
  given = [name for name in ("camera", "video", "image") if config.get(name) is not None]
  if len(given) != 1:
    raise ValueError("give exactly one input: --camera=N, --video=PATH or --image=PATH "
                     f"(got {', '.join('--' + g for g in given) or 'none'})")
  if config.camera is not None and config.camera < 0:
    raise ValueError(f"--camera must be a camera index >= 0, got {config.camera}")
  if not config.run:
    raise ValueError("--run=WORKDIR is required (a training workdir, e.g. made by "
                     "`python -m experiments.train_classifier --workdir=...`)")
  folder = config.image is not None and os.path.isdir(config.image)
  if config.output and folder:
    if os.path.splitext(config.output)[1] or os.path.isfile(config.output):
      raise ValueError(f"--output={config.output}: for a folder of images give an output "
                       "folder (one annotated image per input file is written there)")
  elif config.output:
    ext = os.path.splitext(config.output)[1].lower()
    allowed = (frames_lib.IMAGE_EXTENSIONS if config.image is not None
               else tuple(frames_lib.VIDEO_FOURCC))
    if ext not in allowed:
      kind = "an image input" if config.image is not None else "a video/camera input"
      raise ValueError(f"--output={config.output}: for {kind} use one of "
                       f"{', '.join(allowed)}")
  if not 0.0 <= config.margin <= 2.0:
    raise ValueError(f"--config.margin must be in [0, 2] (fraction of the box), got "
                     f"{config.margin}")
  if config.max_faces < 1:
    raise ValueError(f"--config.max_faces must be >= 1, got {config.max_faces}")
  if not 0.0 <= config.alpha <= 1.0:
    raise ValueError(f"--config.alpha must be in [0, 1], got {config.alpha}")
  if config.max_frames < 0:
    raise ValueError(f"--config.max_frames must be >= 0, got {config.max_frames}")
  if config.method != "auto":
    cam_methods.check_method(config.method)
  d = config.detector
  faces.check_detector(d.name, flag="--config.detector.name")
  if d.max_side and d.max_side < 24:
    raise ValueError(f"--config.detector.max_side must be 0 (off) or >= 24, got {d.max_side}")
  if d.scale_factor <= 1.0:
    raise ValueError(f"--config.detector.scale_factor must be > 1, got {d.scale_factor}")


# ------------------------------------------------------------------------------ faces


def margin_box(box: Sequence[int], margin: float, frame_hw: tuple[int, int]) -> tuple[int, ...]:
  """A detection box enlarged by ``margin`` per side and clipped to the frame.

  Args:
    box: ``(x, y, w, h)``.
    margin: fraction of ``w``/``h`` added on every side.
    frame_hw: ``(height, width)`` of the frame.

  Returns:
    ``(x0, y0, x1, y1)`` pixel bounds (exclusive end), at least one pixel each way.
  """
  x, y, w, h = (int(v) for v in box)
  dx, dy = int(round(w * margin)), int(round(h * margin))
  height, width = frame_hw
  x0, y0 = max(0, x - dx), max(0, y - dy)
  x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
  if x1 <= x0 or y1 <= y0:
    raise ValueError(f"box {box} lies outside the {width}x{height} frame")
  return x0, y0, x1, y1


def crop_faces(frame_bgr: np.ndarray, regions: Sequence[Sequence[int]], size: int) -> np.ndarray:
  """Crops regions of a BGR frame as RGB model-size squares.

  Args:
    frame_bgr: ``[H, W, 3]`` uint8 BGR frame.
    regions: ``(x0, y0, x1, y1)`` bounds (:func:`margin_box`).
    size: output side in pixels.

  Returns:
    ``[N, size, size, 3]`` uint8 RGB.
  """
  crops = np.empty((len(regions), size, size, 3), np.uint8)
  for i, (x0, y0, x1, y1) in enumerate(regions):
    # INTER_AREA: faces are usually larger than the model input, so this downsamples.
    crop = cv2.resize(frame_bgr[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
    crops[i] = crop[..., ::-1]
  return crops


def bucket_size(n: int, max_faces: int) -> int:
  """Smallest power of two >= ``n`` (capped at ``max_faces``): the padded batch size."""
  size = 1
  while size < n:
    size *= 2
  return max(1, min(size, max_faces))


# ------------------------------------------------------------------------- classifier


class FaceClassifier:
  """Classifies face crops and computes their CAMs in one compiled call per bucket.

  Args:
    model: a trained facebias_jax model (run as an eval-mode copy).
    image_size: the model's input side (``config.data.image_size``).
    normalize: input normalisation of training (``"unit"`` or ``"imagenet"``).
    method: CAM method or ``"auto"`` (see ``cam.predictor.resolve_method``).
    max_faces: largest batch (faces per frame).
  """

  def __init__(self, model: Any, *, image_size: int, normalize: str = "unit",
               method: str = "auto", max_faces: int = 4):
    self._predict = cam_predictor.make_predictor(model, method)
    self.method = self._predict.method
    self.image_size = int(image_size)
    self.max_faces = int(max_faces)
    self._normalize = functools.partial(imaging.normalize_images, normalize=normalize)

  def warmup(self) -> None:
    """Compiles every bucket size now, so the first frames are not slow."""
    size = 1
    while True:
      self(np.zeros((size, self.image_size, self.image_size, 3), np.uint8))
      if size >= self.max_faces:
        break
      size = bucket_size(size + 1, self.max_faces)

  def __call__(self, crops_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes, probabilities and maps of ``[N, S, S, 3]`` uint8 RGB crops.

    Returns:
      ``(predicted int32 [N], probability of the predicted class float32 [N],
      maps float32 [N, S, S])``.
    """
    n = len(crops_rgb)
    if n == 0:
      s = self.image_size
      return np.zeros((0,), np.int32), np.zeros((0,), np.float32), np.zeros((0, s, s), np.float32)
    if n > self.max_faces:
      raise ValueError(f"FaceClassifier got {n} faces, more than max_faces={self.max_faces}")
    padded = np.zeros((bucket_size(n, self.max_faces), *crops_rgb.shape[1:]), np.uint8)
    padded[:n] = crops_rgb
    predicted, prob, maps, _ = self._predict(self._normalize(padded))
    return predicted[:n], prob[:n], maps[:n]


# ---------------------------------------------------------------------------- drawing


def draw_label(frame_bgr: np.ndarray, text: str, origin: tuple[int, int], *,
               font_scale: float = 0.5) -> None:
  """White text on a black strip with its bottom-left corner at ``origin`` (in place)."""
  (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
  x, y = origin
  y = max(y, th + baseline + 1)
  cv2.rectangle(frame_bgr, (x, y - th - baseline - 2), (x + tw + 4, y), _TEXT_BG_BGR, -1)
  cv2.putText(frame_bgr, text, (x + 2, y - baseline), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
              _TEXT_FG_BGR, 1, cv2.LINE_AA)


def draw_faces(frame_bgr: np.ndarray, regions: Sequence[Sequence[int]], maps: np.ndarray,
               labels: Sequence[str], *, alpha: float) -> None:
  """Blends each map into its region, frames it and writes its label (in place).

  Args:
    frame_bgr: ``[H, W, 3]`` uint8 BGR frame, modified.
    regions: ``(x0, y0, x1, y1)`` per face.
    maps: ``[N, h, w]`` maps (resized to each region; per-map min-max for display).
    labels: caption per face.
    alpha: heatmap weight.
  """
  for (x0, y0, x1, y1), cam_map, label in zip(regions, maps, labels):
    region_rgb = frame_bgr[y0:y1, x0:x1, ::-1]
    frame_bgr[y0:y1, x0:x1] = render.overlay(region_rgb, cam_map, alpha=alpha)[..., ::-1]
    cv2.rectangle(frame_bgr, (x0, y0), (x1 - 1, y1 - 1), _BOX_COLOR_BGR, 2)
    draw_label(frame_bgr, label, (x0, y0 - 1))


# ------------------------------------------------------------------------- processing


@dataclasses.dataclass
class FrameResult:
  """What :meth:`FrameProcessor.process` found and how long each stage took."""
  boxes: list[tuple[int, int, int, int]]
  regions: list[tuple[int, ...]]
  predicted: np.ndarray
  probability: np.ndarray
  seconds: dict[str, float]


class FrameProcessor:
  """Detection + classification + CAM + drawing of single frames.

  Args:
    classifier: the :class:`FaceClassifier`.
    class_names: one name per class.
    margin: box enlargement before cropping.
    alpha: overlay heatmap weight.
    whole_image: classify the whole frame (its centre square) instead of detected faces.
    detect_kwargs: options of :func:`facebias_jax.faces.detect_faces`.
  """

  def __init__(self, classifier: FaceClassifier, class_names: Sequence[str], *,
               margin: float = 0.25, alpha: float = 0.45, whole_image: bool = False,
               **detect_kwargs: Any):
    self.classifier = classifier
    self.class_names = tuple(class_names)
    self.margin = float(margin)
    self.alpha = float(alpha)
    self.whole_image = bool(whole_image)
    self.detect_kwargs = dict(detect_kwargs)
    self.detect_kwargs.setdefault("max_faces", classifier.max_faces)
    # The cascade keeps a live frame rate; dlib's CNN is ~20x slower per frame.
    self.detect_kwargs.setdefault("detector", LIVE_DETECTOR)

  def process(self, frame_bgr: np.ndarray) -> FrameResult:
    """Annotates ``frame_bgr`` in place; returns the detections and stage timings."""
    t0 = time.perf_counter()
    if self.whole_image:
      x0, y0, x1, y1 = imaging.center_square_box(*frame_bgr.shape[:2])
      boxes, regions = [(x0, y0, x1 - x0, y1 - y0)], [(x0, y0, x1, y1)]
    else:
      boxes = faces.detect_faces(frame_bgr, **self.detect_kwargs)
      regions = [margin_box(b, self.margin, frame_bgr.shape[:2]) for b in boxes]
    t1 = time.perf_counter()
    crops = crop_faces(frame_bgr, regions, self.classifier.image_size)
    t2 = time.perf_counter()
    predicted, probability, maps = self.classifier(crops)
    t3 = time.perf_counter()
    labels = [cam_predictor.prediction_label(self.class_names, int(c), float(p))
              for c, p in zip(predicted, probability)]
    draw_faces(frame_bgr, regions, maps, labels, alpha=self.alpha)
    t4 = time.perf_counter()
    seconds = dict(zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)))
    return FrameResult(boxes, regions, predicted, probability, seconds)


# ------------------------------------------------------------------------------- loop


def _check_display(headless: bool) -> None:
  if headless:
    return
  if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                               or os.environ.get("WAYLAND_DISPLAY")):
    raise frames_lib.DemoInputError("no display to show the window (DISPLAY is not set): run "
                                    "with --config.headless=True (and --output=PATH to save "
                                    "the result)")


def build_processor(config: ml_collections.ConfigDict) -> FrameProcessor:
  """Loads the run (read-only) and builds the classifier and frame processor.

  Raises:
    FileNotFoundError: missing workdir / config.json / checkpoint (from ``runs``).
  """
  run = runs.load_run(config.run, step=config.step)
  classifier = FaceClassifier(run.model, image_size=int(run.config.data.image_size),
                              normalize=str(runs.config_value(run.config, "data.normalize",
                                                              "unit")),
                              method=config.method, max_faces=config.max_faces)
  if config.warmup:
    classifier.warmup()
  names = ([n.strip() for n in config.class_names.split(",")] if config.class_names
           else runs.class_names(run.config))
  d = config.detector
  return FrameProcessor(classifier, names, margin=config.margin, alpha=config.alpha,
                        whole_image=config.whole_image, detector=d.name,
                        scale_factor=d.scale_factor, min_neighbors=d.min_neighbors,
                        min_size=(d.min_face_size, d.min_face_size),
                        max_side=d.max_side or None)


@dataclasses.dataclass
class _Totals:
  frames: int = 0
  faces: int = 0
  busy: float = 0.0
  smoothed_fps: float = 0.0
  seconds: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

  def add(self, result: FrameResult, elapsed: float) -> None:
    rate = 1.0 / max(elapsed, 1e-9)
    # Exponentially smoothed: a readable number rather than a flickering one.
    self.smoothed_fps = (rate if self.frames == 0 else
                         (1 - FPS_SMOOTHING) * self.smoothed_fps + FPS_SMOOTHING * rate)
    self.frames += 1
    self.faces += len(result.boxes)
    self.busy += elapsed
    for stage, sec in result.seconds.items():
      self.seconds[stage] += sec


def run(config: ml_collections.ConfigDict, *, processor: FrameProcessor | None = None,
        on_frame: Callable[[np.ndarray, FrameResult], None] | None = None) -> dict[str, Any]:
  """Runs the demo until the input ends, ``max_frames`` is reached or ``q`` is pressed.

  Args:
    config: ``experiments/configs/demo.py``'s ConfigDict, filled in.
    processor: a ready :class:`FrameProcessor` (default: built from the run).
    on_frame: called with each annotated frame and its result (tests, notebooks).

  Returns:
    Summary: ``frames``, ``faces`` (total detections), ``fps`` (mean processing rate),
    ``seconds_per_stage`` (means), ``method``, ``output``, ``skipped`` (folder files that
    could not be decoded: ``(name, reason)``).

  Raises:
    ValueError: an inconsistent config.
    FileNotFoundError: missing input file or run.
    frames.DemoInputError: camera / file cannot be opened or read, or no display.
  """
  validate_config(config)
  _check_display(config.headless)
  source = frames_lib.FrameSource(camera=config.camera, video=config.video, image=config.image)
  sink = None
  window = "facebias_jax demo (q quits)"
  totals = _Totals()
  try:
    processor = processor or build_processor(config)
    sink = (frames_lib.FrameSink(config.output, source.fps, folder=source.kind == "folder")
            if config.output else None)
    for frame in source.frames():
      start = time.perf_counter()
      result = processor.process(frame)
      totals.add(result, time.perf_counter() - start)
      draw_label(frame, f"{totals.smoothed_fps:5.1f} fps  {processor.classifier.method}",
                 (4, 20))
      if sink is not None:
        sink.write(frame, name=source.current)
      if on_frame is not None:
        on_frame(frame, result)
      if not config.headless:
        cv2.imshow(window, frame)
        if (cv2.waitKey(0 if source.kind in ("image", "folder") else 1) & 0xFF) == ord("q"):
          break
      if config.max_frames and totals.frames >= config.max_frames:
        break
  finally:
    source.close()
    if sink is not None:
      sink.close()
    if not config.headless:
      cv2.destroyAllWindows()
  return {"frames": totals.frames, "faces": totals.faces,
          "fps": totals.frames / totals.busy if totals.busy > 0 else 0.0,
          "seconds_per_stage": {k: v / max(totals.frames, 1) for k, v in totals.seconds.items()},
          "method": processor.classifier.method, "output": config.output,
          "skipped": source.skipped}
