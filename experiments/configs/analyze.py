r"""Dataset analysis defaults: group counts, imbalance tables, sample grids, share plot.

``facebias_jax.data.analysis.run_analysis`` takes this ConfigDict::

  python -m experiments.analyze_dataset --flagfile=experiments/flags/analyze_synthetic.flags
  python -m experiments.analyze_dataset --config.dataset=facebias_celeba/crop_64 \
      --config.split=train --config.groups="Male,Pale_Skin;Male,Young" \
      --config.manual_dir=~/data/celeba --workdir=workdirs/celeba_analysis

Fields: ``dataset`` (TFDS name with config), ``split``, ``groups`` (group specs
separated by ``;``, each a comma-separated list of attributes), ``data_dir``,
``manual_dir``, ``prepare`` (prepare a missing dataset), ``samples_per_group``
(images per group grid, 0 = none), ``seed`` (sample pick), ``label_key``.
"""

import ml_collections

from experiments.configs.common import optional


def get_config() -> ml_collections.ConfigDict:
  """The analysis defaults (see the module docstring)."""
  config = ml_collections.ConfigDict()
  config.dataset = "facebias_synthetic_faces/faces_vs_nonfaces_64"
  config.split = "train"
  config.groups = "skin,Male"
  config.data_dir = optional(str)
  config.manual_dir = optional(str)
  config.prepare = True
  config.samples_per_group = 16
  config.seed = 0
  config.label_key = "label"
  return config
