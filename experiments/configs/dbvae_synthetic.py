r"""DB-VAE on the synthetic faces-vs-non-faces benchmark (the smoothing sweep's base).

Same as ``dbvae.py``; a separate name so sweeps and flagfiles can pin it::

  python -m experiments.train_dbvae \
      --config=experiments/configs/dbvae_synthetic.py --workdir=workdirs/dbvae
  python -m experiments.sweep_alpha --flagfile=experiments/flags/sweep_alpha_synthetic.flags
"""

import ml_collections

from experiments.configs import dbvae


def get_config() -> ml_collections.ConfigDict:
  """DB-VAE on ``facebias_synthetic_faces/faces_vs_nonfaces_64``."""
  return dbvae.get_config()
