r"""Where does a trained model look, per demographic group? CAM export defaults.

``facebias_jax.eval.cam_export.export_cam`` takes this ConfigDict. Fields left ``None``
come from the run's own config (``config.data.*``, ``config.eval.groups``)::

  python -m experiments.export_cam --run=workdirs/resnet18_sex --workdir=workdirs/cam
  python -m experiments.export_cam --flagfile=experiments/flags/export_cam_synthetic.flags
  python -m experiments.export_cam --run=workdirs/resnet18_celeba \
      --config.dataset=facebias_celeba/crop_64 --config.manual_dir=~/data/celeba \
      --config.groups=Male,Pale_Skin --config.method=gradcam --workdir=workdirs/cam_celeba

Fields: ``run`` (``--run``/``--checkpoint``), ``step``; the data (``dataset``,
``split``, ``data_dir``, ``manual_dir``, ``groups``; ``group`` exports one group only);
``method`` (``auto`` = ``cam`` for GAP + linear heads, else ``gradcam``; or any of
``facebias_jax.cam.METHODS``), ``target`` (class explained; default the prediction);
``max_images`` (balanced over groups, 0 = all), ``grid_size``, ``batch_size``,
``image_format`` (``png``/``jpg``), ``aligned`` (group-mean maps; default for CelebA
and the synthetic set), ``seed`` (image selection).
"""

import ml_collections

_STR = dict(field_type=str)
_INT = dict(field_type=int)


def get_config() -> ml_collections.ConfigDict:
  """The CAM export defaults (see the module docstring)."""
  config = ml_collections.ConfigDict()
  config.run = ml_collections.FieldReference(None, **_STR)
  config.step = ml_collections.FieldReference(None, **_INT)
  config.dataset = ml_collections.FieldReference(None, **_STR)
  config.split = ml_collections.FieldReference(None, **_STR)
  config.data_dir = ml_collections.FieldReference(None, **_STR)
  config.manual_dir = ml_collections.FieldReference(None, **_STR)
  config.groups = ml_collections.FieldReference(None, **_STR)
  config.group = ml_collections.FieldReference(None, **_STR)
  config.method = "auto"
  config.target = ml_collections.FieldReference(None, **_INT)
  config.max_images = 256
  config.grid_size = 36
  config.batch_size = 64
  config.image_format = "png"
  config.aligned = ml_collections.FieldReference(None, field_type=bool)
  config.seed = 0
  return config
