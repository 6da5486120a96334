r"""Exports class activation maps of a trained checkpoint per demographic group.

Where does the classifier look, and does it look differently for different groups?
Writes into --workdir: one overlay per image (prediction and probability on it), a
grid per group, the mean CAM per group (aligned datasets: CelebA, synthetic) and the
share of CAM energy inside the face region per group (synthetic face masks, CelebA
landmark ellipses) as face_energy.md/.json/.png.

  python -m experiments.export_cam --flagfile=experiments/flags/export_cam_synthetic.flags

  python -m experiments.export_cam --checkpoint=workdirs/resnet18_celeba \
      --dataset=facebias_celeba/crop_64 --split=test --manual_dir=~/data/celeba \
      --groups=Male,Pale_Skin --method=gradcam --max_images=400 --workdir=workdirs/cam_celeba

Dataset, split and groups default to the checkpoint's config (config.data.name,
config.data.eval_split, config.eval.groups).
"""

from __future__ import annotations

import sys

from absl import app, flags

from facebias_jax.cam import methods as cam_methods
from facebias_jax.eval import cam_export
from experiments import common

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Training workdir (config.json + "
                                  "checkpoints/) whose model is explained.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder for overlays, grids and tables.")
_DATASET = flags.DEFINE_string("dataset", None, "TFDS name/config (default: the checkpoint's "
                               "config.data.name).")
_SPLIT = flags.DEFINE_string("split", None, "Split (default: config.data.eval_split); TFDS "
                             "slicing such as test[:10%] works.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: config.data.data_dir).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Raw files of manual datasets (default: "
                                  "config.data.manual_dir).")
_GROUPS = flags.DEFINE_string("groups", None, "Group spec, e.g. skin,Male (default: "
                              "config.eval.groups).")
_GROUP = flags.DEFINE_string("group", None, "Export only this group, e.g. darker_female.")
_METHOD = flags.DEFINE_enum("method", "auto", ["auto", *cam_methods.METHODS],
                            "CAM method; auto = cam for GAP + linear heads, else gradcam.")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 256, "Most images, balanced over groups "
                                   "(0: all).", lower_bound=0)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per compiled call.", lower_bound=1)
_GRID_SIZE = flags.DEFINE_integer("grid_size", 36, "Most images per group grid.", lower_bound=1)
_TARGET = flags.DEFINE_integer("target", None, "Class explained by the maps (default: the "
                               "predicted class).", lower_bound=0)
_FORMAT = flags.DEFINE_enum("format", "png", list(cam_export.IMAGE_FORMATS), "Image format.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the image selection.")

flags.mark_flags_as_required(["checkpoint", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    summary = cam_export.export_cam(
        _CHECKPOINT.value, _WORKDIR.value, dataset=_DATASET.value, split=_SPLIT.value,
        data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value, group_spec=_GROUPS.value,
        group=_GROUP.value, method=_METHOD.value, max_images=_MAX_IMAGES.value,
        batch_size=_BATCH_SIZE.value, image_format=_FORMAT.value, grid_size=_GRID_SIZE.value,
        target=_TARGET.value, seed=_SEED.value)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"export_cam: error: {e}")
  print(f"{summary['num_images']} images, {summary['method']} maps -> {_WORKDIR.value}")
  for group, row in (summary["face_energy"] or {}).items():
    print(f"  {group:>16s}: face energy {row['mean']:.3f} +- {row['sem']:.3f} (n={row['n']})")


if __name__ == "__main__":
  common.run(main)
