"""Live demo: detect faces in camera / video / image frames, classify them, draw their CAM.

Per frame: Haar-cascade boxes (:mod:`facebias_jax.demo.face_detect`) -> each box
enlarged by a margin, cropped and resized to the model's input size -> one jit-compiled
call classifies *all* faces of the frame together and computes their class activation
maps (:func:`facebias_jax.cam.export.make_predictor`) -> each map is blended into its
box (:func:`facebias_jax.cam.overlay`) with the predicted label and probability, and the
frame rate is written in the corner.

The number of faces varies from frame to frame; batches are padded to a power of two
(up to ``max_faces``) so the model compiles once per bucket, not once per face count.

Library images are RGB; frames stay BGR (OpenCV's order) in this module only, and are
converted at the boundary with the model and with :func:`facebias_jax.cam.overlay`.

Typical use (what ``experiments/webcam_demo.py`` runs)::

  summary = run(DemoOptions(checkpoint="workdirs/resnet18_sex", video="in.mp4",
                            output="out.mp4", headless=True))
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from facebias_jax.cam import export as cam_export
from facebias_jax.cam import methods as cam_methods
from facebias_jax.cam import render
from facebias_jax.demo import face_detect

VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# Cameras often report 0 fps; this is what the output video then uses.
FALLBACK_FPS = 30.0
# Weight of the newest frame in the displayed (exponentially smoothed) frame rate.
FPS_SMOOTHING = 0.1
STAGES = ("detect", "preprocess", "model", "draw")
_BOX_COLOR_BGR = (0, 255, 0)
_TEXT_BG_BGR = (0, 0, 0)
_TEXT_FG_BGR = (255, 255, 255)


class DemoInputError(RuntimeError):
  """A camera, video or image that cannot be opened or read (message names it)."""


# ---------------------------------------------------------------------------- options


@dataclasses.dataclass
class DemoOptions:
  """Everything :func:`run` needs (``experiments/webcam_demo.py`` fills it from flags).

  Attributes:
    checkpoint: training workdir (``config.json`` + ``checkpoints/``).
    camera: camera index (exactly one of camera / video / image).
    video: input video path.
    image: input image path.
    output: annotated video (``.mp4``/``.avi``) or image (``.png``/``.jpg``) to write.
    headless: show no window.
    method: CAM method (``cam``, ``gradcam``, ...) or ``auto`` (``cam`` when the model
      has a GAP + linear head, else ``gradcam``).
    margin: each face box is enlarged by this fraction of its size on every side
      before cropping (the models were trained on whole heads, not tight boxes).
    max_faces: largest faces classified per frame.
    alpha: heatmap weight of the overlay.
    class_names: names of the classes; default derived from the run's config.
    max_frames: stop after this many frames (0 = until the input ends or ``q``).
    scale_factor: cascade pyramid step.
    min_neighbors: cascade neighbours needed to keep a box.
    min_face_size: smallest face side in pixels.
    detect_max_side: run the cascade on a copy of the frame shrunk to this longer side
      (0 = full size); faster, misses small faces (``face_detect.detect_faces``).
    warmup: compile every batch bucket before the first frame (steady frame rate).
  """

  checkpoint: str
  camera: int | None = None
  video: str | None = None
  image: str | None = None
  output: str | None = None
  headless: bool = False
  method: str = "auto"
  margin: float = 0.25
  max_faces: int = 4
  alpha: float = 0.45
  class_names: Sequence[str] | None = None
  max_frames: int = 0
  scale_factor: float = face_detect.DEFAULT_SCALE_FACTOR
  min_neighbors: int = face_detect.DEFAULT_MIN_NEIGHBORS
  min_face_size: int = face_detect.DEFAULT_MIN_SIZE[0]
  detect_max_side: int = 0
  warmup: bool = False


def validate_options(options: DemoOptions) -> None:
  """Raises ValueError naming the flag when options are inconsistent."""
  given = [name for name in ("camera", "video", "image") if getattr(options, name) is not None]
  if len(given) != 1:
    raise ValueError("give exactly one input: --camera=N, --video=PATH or --image=PATH "
                     f"(got {', '.join('--' + g for g in given) or 'none'})")
  if options.camera is not None and options.camera < 0:
    raise ValueError(f"--camera must be a camera index >= 0, got {options.camera}")
  if not options.checkpoint:
    raise ValueError("--checkpoint=WORKDIR is required (a training workdir, e.g. made by "
                     "`python -m experiments.train_classifier --workdir=...`)")
  if options.output:
    ext = os.path.splitext(options.output)[1].lower()
    allowed = IMAGE_EXTENSIONS if options.image is not None else tuple(VIDEO_FOURCC)
    if ext not in allowed:
      kind = "an image input" if options.image is not None else "a video/camera input"
      raise ValueError(f"--output={options.output}: for {kind} use one of "
                       f"{', '.join(allowed)}")
  if not 0.0 <= options.margin <= 2.0:
    raise ValueError(f"--margin must be in [0, 2] (fraction of the box), got {options.margin}")
  if options.max_faces < 1:
    raise ValueError(f"--max_faces must be >= 1, got {options.max_faces}")
  if not 0.0 <= options.alpha <= 1.0:
    raise ValueError(f"--alpha must be in [0, 1], got {options.alpha}")
  if options.max_frames < 0:
    raise ValueError(f"--max_frames must be >= 0, got {options.max_frames}")
  if options.method != "auto":
    cam_methods.check_method(options.method)
  if options.detect_max_side and options.detect_max_side < 24:
    raise ValueError(f"--detect_max_side must be 0 (off) or >= 24, got "
                     f"{options.detect_max_side}")


def class_names_for(config: Any) -> tuple[str, ...]:
  """Readable class names of a training run (see ``cam.export.class_names``)."""
  data = config.get("data", {})
  return cam_export.class_names(data.get("name", ""), data.get("label_key", "label"),
                                int(config.get("model", {}).get("num_classes", 1)))


# ------------------------------------------------------------------------------ faces


def expand_box(box: Sequence[int], margin: float, frame_hw: tuple[int, int]) -> tuple[int, ...]:
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
    regions: ``(x0, y0, x1, y1)`` bounds (:func:`expand_box`).
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
    method: CAM method or ``"auto"`` (see ``cam.export.resolve_method``).
    max_faces: largest batch (faces per frame).
  """

  def __init__(self, model: Any, *, image_size: int, normalize: str = "unit",
               method: str = "auto", max_faces: int = 4):
    from facebias_jax.data.pipeline import normalize_images  # pylint: disable=g-import-not-at-top
    self._predict = cam_export.make_predictor(model, method)
    self.method = self._predict.method
    self.image_size = int(image_size)
    self.max_faces = int(max_faces)
    self._normalize = functools.partial(normalize_images, normalize=normalize)

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
    predicted, prob, maps = self._predict(self._normalize(padded))
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
    detect_kwargs: options of :func:`face_detect.detect_faces`.
  """

  def __init__(self, classifier: FaceClassifier, class_names: Sequence[str], *,
               margin: float = 0.25, alpha: float = 0.45, **detect_kwargs: Any):
    self.classifier = classifier
    self.class_names = tuple(class_names)
    self.margin = float(margin)
    self.alpha = float(alpha)
    self.detect_kwargs = dict(detect_kwargs)
    self.detect_kwargs.setdefault("max_faces", classifier.max_faces)

  def process(self, frame_bgr: np.ndarray) -> FrameResult:
    """Annotates ``frame_bgr`` in place; returns the detections and stage timings."""
    t0 = time.perf_counter()
    boxes = face_detect.detect_faces(frame_bgr, **self.detect_kwargs)
    t1 = time.perf_counter()
    regions = [expand_box(b, self.margin, frame_bgr.shape[:2]) for b in boxes]
    crops = crop_faces(frame_bgr, regions, self.classifier.image_size)
    t2 = time.perf_counter()
    predicted, probability, maps = self.classifier(crops)
    t3 = time.perf_counter()
    labels = [cam_export.prediction_label(self.class_names, int(c), float(p))
              for c, p in zip(predicted, probability)]
    draw_faces(frame_bgr, regions, maps, labels, alpha=self.alpha)
    t4 = time.perf_counter()
    seconds = dict(zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)))
    return FrameResult(boxes, regions, predicted, probability, seconds)


# ------------------------------------------------------------------------------ input


class FrameSource:
  """Frames of a camera, a video file or one image, as BGR uint8 arrays.

  Raises:
    FileNotFoundError: the video/image file does not exist.
    DemoInputError: the camera cannot be opened or the file cannot be decoded.
  """

  def __init__(self, *, camera: int | None = None, video: str | None = None,
               image: str | None = None):
    self.kind = "camera" if camera is not None else "video" if video is not None else "image"
    self.capture = None
    self.still = None
    if camera is not None:
      self.name = f"camera {camera}"
      self.capture = cv2.VideoCapture(int(camera))
      if not self.capture.isOpened():
        raise DemoInputError(
            f"cannot open camera {camera} (--camera={camera}): no such device, no permission "
            "or it is in use by another program. Check the index (0 is usually the built-in "
            "webcam) or use --video=PATH / --image=PATH instead.")
    elif video is not None:
      self.name = video
      if not os.path.isfile(video):
        raise FileNotFoundError(f"--video={video}: no such file")
      self.capture = cv2.VideoCapture(video)
      if not self.capture.isOpened():
        raise DemoInputError(f"--video={video}: OpenCV cannot read this file (not a video, "
                             "corrupt, or a codec FFmpeg in opencv-python lacks)")
    else:
      self.name = image
      if not os.path.isfile(image):
        raise FileNotFoundError(f"--image={image}: no such file")
      self.still = cv2.imread(image, cv2.IMREAD_COLOR)
      if self.still is None:
        raise DemoInputError(f"--image={image}: OpenCV cannot decode this file (not an image "
                             "or an unsupported format)")

  @property
  def fps(self) -> float:
    """Frame rate of the input (``FALLBACK_FPS`` when unknown, e.g. many webcams)."""
    if self.capture is None:
      return FALLBACK_FPS
    fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if np.isfinite(fps) and fps > 0 else FALLBACK_FPS

  def frames(self) -> Iterator[np.ndarray]:
    """Yields frames until the input ends; a video with no decodable frame is an error."""
    if self.still is not None:
      yield self.still.copy()
      return
    count = 0
    while True:
      ok, frame = self.capture.read()
      if not ok:
        break
      count += 1
      yield frame
    if count == 0:
      raise DemoInputError(f"{self.name}: no frame could be read (empty or unreadable input)")

  def close(self) -> None:
    if self.capture is not None:
      self.capture.release()


class FrameSink:
  """Writes annotated frames to a video (same fps as the input) or an image."""

  def __init__(self, path: str, fps: float):
    self.path = path
    self.fps = float(fps)
    self.writer = None
    self.count = 0
    self.ext = os.path.splitext(path)[1].lower()

  def write(self, frame_bgr: np.ndarray) -> None:
    if self.ext in IMAGE_EXTENSIONS:
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
      if not cv2.imwrite(self.path, frame_bgr):
        raise OSError(f"--output={self.path}: OpenCV could not write the image")
    else:
      if self.writer is None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        height, width = frame_bgr.shape[:2]
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[self.ext])
        self.writer = cv2.VideoWriter(self.path, fourcc, self.fps, (width, height))
        if not self.writer.isOpened():
          raise OSError(f"--output={self.path}: OpenCV cannot write {self.ext} video "
                        f"(codec {VIDEO_FOURCC[self.ext]}); try .avi")
      self.writer.write(frame_bgr)
    self.count += 1

  def close(self) -> None:
    if self.writer is not None:
      self.writer.release()


# ------------------------------------------------------------------------------- loop


def _check_display(headless: bool) -> None:
  if headless:
    return
  if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                               or os.environ.get("WAYLAND_DISPLAY")):
    raise DemoInputError("no display to show the window (DISPLAY is not set): run with "
                         "--headless (and --output=PATH to save the result)")


def build_processor(options: DemoOptions) -> FrameProcessor:
  """Loads the checkpoint and builds the classifier and frame processor.

  Raises:
    FileNotFoundError: missing workdir / config.json / checkpoint (from ``load_model``).
  """
  from facebias_jax.train.checkpoint import load_model  # pylint: disable=g-import-not-at-top
  model, config = load_model(options.checkpoint)
  classifier = FaceClassifier(model, image_size=int(config.data.image_size),
                              normalize=str(config.data.get("normalize", "unit")),
                              method=options.method, max_faces=options.max_faces)
  if options.warmup:
    classifier.warmup()
  names = tuple(options.class_names) if options.class_names else class_names_for(config)
  return FrameProcessor(classifier, names, margin=options.margin, alpha=options.alpha,
                        scale_factor=options.scale_factor, min_neighbors=options.min_neighbors,
                        min_size=(options.min_face_size, options.min_face_size),
                        max_side=options.detect_max_side or None)


def run(options: DemoOptions, *, processor: FrameProcessor | None = None,
        on_frame: Callable[[np.ndarray, FrameResult], None] | None = None) -> dict[str, Any]:
  """Runs the demo until the input ends, ``max_frames`` is reached or ``q`` is pressed.

  Args:
    options: see :class:`DemoOptions`.
    processor: a ready :class:`FrameProcessor` (default: built from the checkpoint).
    on_frame: called with each annotated frame and its result (tests, notebooks).

  Returns:
    Summary: ``frames``, ``faces`` (total detections), ``fps`` (mean processing rate),
    ``seconds_per_stage`` (means), ``method``, ``output``.

  Raises:
    ValueError: inconsistent options.
    FileNotFoundError: missing input file or checkpoint.
    DemoInputError: camera / file cannot be opened or read, or no display.
  """
  validate_options(options)
  _check_display(options.headless)
  source = FrameSource(camera=options.camera, video=options.video, image=options.image)
  sink = None
  window = "facebias_jax demo (q quits)"
  try:
    processor = processor or build_processor(options)
    sink = FrameSink(options.output, source.fps) if options.output else None
    frames, faces, smoothed_fps = 0, 0, 0.0
    totals = dict.fromkeys(STAGES, 0.0)
    busy = 0.0
    for frame in source.frames():
      start = time.perf_counter()
      result = processor.process(frame)
      elapsed = time.perf_counter() - start
      busy += elapsed
      rate = 1.0 / max(elapsed, 1e-9)
      # Exponentially smoothed: a readable number rather than a flickering one.
      smoothed_fps = (rate if frames == 0
                      else (1 - FPS_SMOOTHING) * smoothed_fps + FPS_SMOOTHING * rate)
      draw_label(frame, f"{smoothed_fps:5.1f} fps  {processor.classifier.method}", (4, 20))
      frames += 1
      faces += len(result.boxes)
      for stage, sec in result.seconds.items():
        totals[stage] += sec
      if sink is not None:
        sink.write(frame)
      if on_frame is not None:
        on_frame(frame, result)
      if not options.headless:
        cv2.imshow(window, frame)
        if (cv2.waitKey(0 if source.kind == "image" else 1) & 0xFF) == ord("q"):
          break
      if options.max_frames and frames >= options.max_frames:
        break
  finally:
    source.close()
    if sink is not None:
      sink.close()
    if not options.headless:
      cv2.destroyAllWindows()
  return {
      "frames": frames,
      "faces": faces,
      "fps": frames / busy if busy > 0 else 0.0,
      "seconds_per_stage": {k: v / max(frames, 1) for k, v in totals.items()},
      "method": processor.classifier.method,
      "output": options.output,
  }
