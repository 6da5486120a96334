r"""The methods comparison on CelebA's Blond_Hair x Male benchmark (``celeba_blond.py``).

ERM, SUBG, oversampling, reweighting, Group DRO, JTT and DFR from a torchvision
ResNet-50, 3 seeds (the DB-VAE is left out: it is a face model of its own, not a
fine-tuned ResNet)::

  python -m experiments.compare_methods --config=experiments/configs/compare_methods_celeba.py \
      --config.run.data.manual_dir=~/data/celeba \
      --config.run.model.init_from=~/weights/resnet50.pth --workdir=workdirs/celeba_methods

Each method then runs with the protocol's SGD settings; the papers tuned their own
(docs/methods.md), which ``--config.run.*`` overrides set for one method at a time.
"""

import ml_collections

from experiments.configs import celeba_blond, compare_methods


def get_config() -> ml_collections.ConfigDict:
  """The CelebA comparison (see the module docstring)."""
  config = compare_methods.get_config()
  config.run = celeba_blond.get_config()
  config.methods = "erm,subsample,oversample,reweight,group_dro,jtt,dfr"
  return config
