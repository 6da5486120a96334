r"""Where does a trained model look, per demographic group? CAM export defaults.

``facebias_jax.eval.cam_export.export_cam`` takes this ConfigDict. Fields left ``None``
come from the run's own config (``config.data.*``, ``config.eval.groups``)::

  python -m experiments.export_cam --run=workdirs/resnet18_sex --workdir=workdirs/cam
  python -m experiments.export_cam --flagfile=experiments/flags/export_cam_synthetic.flags
  python -m experiments.export_cam --run=workdirs/resnet18_celeba \
      --config.dataset=facebias_celeba/crop_64 --config.manual_dir=~/data/celeba \
      --config.groups=Male,Pale_Skin --config.method=gradcam --workdir=workdirs/cam_celeba

Fields: ``run`` (``--run``/``--checkpoint``), ``step``; the data (``dataset``, ``label_key``,
``split``, ``data_dir``, ``manual_dir``, ``groups``; ``group`` exports one group only);
``method`` (``auto`` = ``cam`` for GAP + linear heads, else ``gradcam``; or any of
``facebias_jax.cam.METHODS``), ``target`` (class explained; default the prediction);
``max_images`` (balanced over groups, 0 = all), ``grid_size``, ``batch_size``,
``image_format`` (``png``/``jpg``), ``aligned`` (group-mean maps; default for CelebA
and the synthetic set), ``seed`` (image selection).
"""

import ml_collections

from experiments.configs.common import add_run_fields, optional


def get_config() -> ml_collections.ConfigDict:
  """The CAM export defaults (see the module docstring)."""
  config = add_run_fields(ml_collections.ConfigDict())
  config.group = optional(str)
  config.method = "auto"
  config.target = optional(int)
  config.max_images = 256
  config.grid_size = 36
  config.batch_size = 64
  config.image_format = "png"
  config.aligned = optional(bool)
  config.seed = 0
  return config
