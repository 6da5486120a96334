r"""Exports class activation maps of a trained run per demographic group.

Where does the classifier look, and does it look differently for different groups?
Writes into --workdir: one overlay per image, a grid per group, the mean CAM per group
(aligned datasets) and the share of CAM energy inside the face region per group::

  python -m experiments.export_cam --flagfile=experiments/flags/export_cam_synthetic.flags
  python -m experiments.export_cam --run=workdirs/resnet18_sex --config.group=darker_female \
      --config.method=gradcam --workdir=workdirs/cam_darker_female

Every option is a field of experiments/configs/export_cam.py; dataset, split and groups
default to the run's own config.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments import common
from facebias_jax.eval import cam_export

ALIASES = {
    "run": ("run", str, "Training workdir whose model is explained."),
    "checkpoint": ("run", str, "Training workdir (old name of --run)."),
}
_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/export_cam.py", "CAM export config (get_config()).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder for overlays, grids and tables.",
                               required=True)
_ALIASES = common.define_aliases(ALIASES)


def main(argv: list[str]) -> None:
  config = common.apply_aliases(_CONFIG.value, _ALIASES, ALIASES)
  summary = cam_export.export_cam(config, _WORKDIR.value)
  print(f"{summary['num_images']} images, {summary['method']} maps (step {summary['step']}) "
        f"-> {_WORKDIR.value}")


if __name__ == "__main__":
  common.run(main)
