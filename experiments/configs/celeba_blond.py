r"""CelebA's worst-group benchmark: Blond_Hair, with sex as the spurious attribute.

The protocol of the group-robustness literature (Group DRO, JTT, DFR, BalancingGroups):
target ``Blond_Hair``, groups Blond_Hair x Male (blond men are under 1% of the training
split), ResNet-50 from torchvision weights, 224 px, RandomResizedCrop + flip, SGD lr
1e-3, momentum 0.9, weight decay 1e-4, batch 128, the checkpoint with the best
worst-group validation accuracy::

  python -m experiments.train_classifier --flagfile=experiments/flags/celeba_blond_erm.flags \
      --config.data.manual_dir=~/data/celeba --config.model.init_from=~/weights/resnet50.pth \
      --workdir=workdirs/celeba_blond/erm

Published ERM figures on this benchmark: worst group 47.2%, average 95.6% (docs/methods.md).
"""

import ml_collections

from experiments.configs import celeba_cam_study


def get_config() -> ml_collections.ConfigDict:
  """ERM, ResNet-50 (torchvision init), CelebA Blond_Hair x Male (see the docstring)."""
  config = celeba_cam_study.get_config()
  config.model.name = "resnet50"
  config.data.label_key = "Blond_Hair"
  config.train.batch_size = 128
  config.train.num_epochs = 20
  config.eval.groups = "Blond_Hair,Male"
  return config
