r"""Live face classification with class activation maps: webcam, video file or image.

Faces are found with OpenCV's Haar cascade (``--config.detector.name=cnn`` for dlib's
CNN: better recall, slower), classified by a trained run (all faces of a frame in one
compiled batch) and each face's CAM is drawn inside its box with the predicted label
and probability; the frame rate is shown in the corner. ``--image`` also takes a
folder (one annotated image per file under the ``--output`` folder; unreadable files
are skipped and listed), and ``--whole_image`` classifies each whole frame without
detection (inputs that are face crops already). ``q`` quits::

  python -m experiments.webcam_demo --run=workdirs/resnet18_sex --camera=0
  python -m experiments.webcam_demo --run=workdirs/resnet18_sex --video=in.mp4 \
      --output=out.mp4 --config.headless=True
  python -m experiments.webcam_demo --run=workdirs/resnet18_sex --image=photo.jpg \
      --output=annotated.png --config.headless=True --config.method=gradcam
  python -m experiments.webcam_demo --run=workdirs/resnet18_sex --image=faces/ \
      --output=annotated/ --whole_image --config.headless=True

Every option is a field of experiments/configs/demo.py.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments import common
from facebias_jax.demo import frames, live

ALIASES = {
    "run": ("run", str, "Training workdir of the classifier to run."),
    "checkpoint": ("run", str, "Training workdir (old name of --run)."),
    "camera": ("camera", int, "Camera index to read (0 = default webcam)."),
    "video": ("video", str, "Video file to read."),
    "image": ("image", str, "Image file, or a folder of images (read recursively)."),
    "output": ("output", str, "Annotated video (.mp4/.avi) or image (.png/.jpg) to write."),
}
_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/demo.py", "Demo config (get_config()).")
_ALIASES = common.define_aliases(ALIASES)
_WHOLE_IMAGE = flags.DEFINE_bool(
    "whole_image", None, "Classify each whole frame (its centre square) without face "
    "detection (alias of --config.whole_image).")


def main(argv: list[str]) -> None:
  config = common.apply_aliases(_CONFIG.value, _ALIASES, ALIASES)
  if _WHOLE_IMAGE.present:
    config.whole_image = _WHOLE_IMAGE.value
  summary = live.run(config)
  stages = ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in summary["seconds_per_stage"].items())
  print(f"{summary['frames']} frames, {summary['faces']} faces, {summary['fps']:.1f} fps "
        f"({summary['method']}; per frame: {stages})"
        + (f"; wrote {summary['output']}" if summary["output"] else ""))
  for name, reason in summary["skipped"]:
    print(f"skipped {name}: {reason}")


if __name__ == "__main__":
  common.run(main, user_errors=common.USER_ERRORS + (frames.DemoInputError,))
