r"""The worst-group protocol on the synthetic benchmark: Blond_Hair with sex as a shortcut.

The analogue of CelebA's Blond_Hair x Male benchmark (``celeba_blond.py``) that runs in
minutes on a CPU: ``facebias_synthetic_faces/blond_64`` (blond men under 1% of the
train split, blond a subtle tone), the standard CNN at 32 px, the checkpoint selected by
worst-group validation accuracy, groups Blond_Hair x Male::

  python -m experiments.train_classifier --config=experiments/configs/synthetic_blond.py \
      --workdir=workdirs/synthetic_blond/erm
"""

import ml_collections

from experiments.configs import classifier


def get_config() -> ml_collections.ConfigDict:
  """ERM on the synthetic Blond_Hair benchmark (see the module docstring)."""
  config = classifier.get_config()
  config.data.name = "facebias_synthetic_faces/blond_64"
  config.data.image_size = 32
  config.train.batch_size = 64
  config.train.num_epochs = 4
  config.train.learning_rate = 1e-3
  config.train.checkpoint_every_steps = 1000
  config.train.select_by = "worst_group_accuracy"
  config.eval.groups = "Blond_Hair,Male"
  return config
