r"""Predictions and class activation maps of a trained run on any images.

A folder of photographs (recursive, with or without a labels CSV), a video, or a
prepared dataset split: one row per image (or detected face) in predictions.csv and
predictions.json, an overlay per image named after its file, a grid, and a histogram
of the probability per group. Unreadable files are skipped and listed::

  python -m experiments.predict --run=workdirs/resnet18_sex --images=~/photos \
      --workdir=workdirs/predict_photos
  python -m experiments.predict --run=workdirs/resnet18_sex --video=clip.mp4 \
      --detect_faces --workdir=workdirs/predict_clip

Every option is a field of experiments/configs/predict.py.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments import common
from facebias_jax.eval import predict

ALIASES = {
    "run": ("run", str, "Training workdir whose model predicts."),
    "images": ("images", str, "Folder of .jpg/.png images (read recursively)."),
    "video": ("video", str, "Video file (every frame, or --config.every_nth_frame)."),
    "labels": ("labels", str, "CSV with columns file[,label][,group] for --images."),
}
_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/predict.py", "Prediction config (get_config()).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder for the predictions.",
                               required=True)
_ALIASES = common.define_aliases(ALIASES)
_DETECT = flags.DEFINE_bool("detect_faces", None, "Predict every detected face instead of "
                            "the whole image (alias of --config.detect_faces).")


def main(argv: list[str]) -> None:
  config = common.apply_aliases(_CONFIG.value, _ALIASES, ALIASES)
  if _DETECT.present:
    config.detect_faces = _DETECT.value
  summary = predict.run_prediction(config, _WORKDIR.value)
  overall = summary["groups"]["all"]
  print(f"{summary['num_predictions']} predictions on {summary['num_images']} images "
        f"({summary['method']}, step {summary['step']}); mean {summary['histogram_of']} "
        f"{overall['mean']:.3f}"
        + (f", accuracy {overall['accuracy']:.4f} on {overall['n_labelled']} labelled"
           if overall["accuracy"] is not None else "")
        + f" -> {_WORKDIR.value}")
  if summary["no_face"]:
    print(f"no face found in {len(summary['no_face'])} image(s): "
          f"{', '.join(summary['no_face'][:5])}{', ...' if len(summary['no_face']) > 5 else ''}")
  for skipped in summary["skipped"]:
    print(f"skipped {skipped['file']}: {skipped['reason']}")
  unmatched = summary["input"].get("labels_without_image") or []
  if unmatched:
    print(f"{len(unmatched)} row(s) of {summary['input']['labels']} name no image under "
          f"{summary['input']['path']}: {', '.join(unmatched[:5])}"
          f"{', ...' if len(unmatched) > 5 else ''} (paths are relative to the folder)")


if __name__ == "__main__":
  common.run(main)
