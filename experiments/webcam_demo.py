r"""Live face classification with class activation maps: webcam, video file or image.

Faces are found with OpenCV's Haar cascade, classified by a trained checkpoint (all
faces of a frame in one jit-compiled batch) and each face's CAM is drawn inside its
box with the predicted label and probability; the frame rate is shown in the corner.
``q`` quits.

Webcam (window)::

  python -m experiments.webcam_demo --checkpoint=workdirs/resnet18_sex --camera=0

Video file to an annotated video, no window (same fps and frame count as the input)::

  python -m experiments.webcam_demo --checkpoint=workdirs/resnet18_sex \
      --video=in.mp4 --output=out.mp4 --headless

One image::

  python -m experiments.webcam_demo --checkpoint=workdirs/resnet18_sex \
      --image=group_photo.jpg --output=annotated.png --headless --method=gradcam
"""

from __future__ import annotations

import sys

from absl import app, flags

from facebias_jax.demo import face_detect, live
from experiments import common

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Training workdir (config.json + "
                                  "checkpoints/) of the classifier to run.")
_CAMERA = flags.DEFINE_integer("camera", None, "Camera index to read (0 = default webcam).")
_VIDEO = flags.DEFINE_string("video", None, "Video file to read instead of a camera.")
_IMAGE = flags.DEFINE_string("image", None, "Image file to read instead of a camera.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the annotated video (.mp4 or .avi; same fps "
                              "and frame count as the input) or image (.png/.jpg).")
_HEADLESS = flags.DEFINE_bool("headless", False, "Show no window (servers, tests).")
_METHOD = flags.DEFINE_string("method", "auto", "CAM method: auto (cam for GAP + linear heads, "
                              "else gradcam), cam, gradcam, gradcam++, hirescam, xgradcam, "
                              "layercam, scorecam, eigencam.")
_MARGIN = flags.DEFINE_float("margin", 0.25, "Enlarge each face box by this fraction per side "
                             "before cropping.", lower_bound=0.0, upper_bound=2.0)
_MAX_FACES = flags.DEFINE_integer("max_faces", 4, "Largest faces classified per frame.",
                                  lower_bound=1)
_ALPHA = flags.DEFINE_float("alpha", 0.45, "Heatmap weight of the overlay.", lower_bound=0.0,
                            upper_bound=1.0)
_LABELS = flags.DEFINE_list("labels", None, "Class names, index = class id (default: from "
                            "the checkpoint's config, e.g. female,male).")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 0, "Stop after this many frames (0: until the "
                                   "input ends or q).", lower_bound=0)
_SCALE_FACTOR = flags.DEFINE_float("scale_factor", face_detect.DEFAULT_SCALE_FACTOR,
                                   "Haar cascade pyramid step (> 1).", lower_bound=1.001)
_MIN_NEIGHBORS = flags.DEFINE_integer("min_neighbors", face_detect.DEFAULT_MIN_NEIGHBORS,
                                      "Haar cascade neighbours needed to keep a face.",
                                      lower_bound=0)
_MIN_FACE = flags.DEFINE_integer("min_face_size", face_detect.DEFAULT_MIN_SIZE[0],
                                 "Smallest face side in pixels.", lower_bound=8)
_DETECT_MAX_SIDE = flags.DEFINE_integer("detect_max_side", 0, "Run face detection on the frame "
                                       "shrunk to this longer side (0: full size); faster, "
                                       "misses small faces.", lower_bound=0)
_WARMUP = flags.DEFINE_bool("warmup", True, "Compile every batch size before the first frame.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  options = live.DemoOptions(
      checkpoint=_CHECKPOINT.value, camera=_CAMERA.value, video=_VIDEO.value,
      image=_IMAGE.value, output=_OUTPUT.value, headless=_HEADLESS.value, method=_METHOD.value,
      margin=_MARGIN.value, max_faces=_MAX_FACES.value, alpha=_ALPHA.value,
      class_names=_LABELS.value, max_frames=_MAX_FRAMES.value,
      scale_factor=_SCALE_FACTOR.value, min_neighbors=_MIN_NEIGHBORS.value,
      min_face_size=_MIN_FACE.value, detect_max_side=_DETECT_MAX_SIDE.value,
      warmup=_WARMUP.value)
  try:
    summary = live.run(options)
  except (live.DemoInputError, FileNotFoundError, ValueError, OSError) as e:
    # Input and checkpoint problems are the user's to fix: the message, not a traceback.
    sys.exit(f"webcam_demo: error: {e}")
  stages = ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in summary["seconds_per_stage"].items())
  print(f"{summary['frames']} frames, {summary['faces']} faces, {summary['fps']:.1f} fps "
        f"({summary['method']}; per frame: {stages})"
        + (f"; wrote {summary['output']}" if summary["output"] else ""))


if __name__ == "__main__":
  common.run(main)
