r"""Default DB-VAE config (Amini et al., AIES 2019) on the synthetic faces task.

The classifier config with the DB-VAE model (standard-CNN encoder, 100-d latent)
and debiased sampling: every epoch, the latent means of all training faces set
their sampling probabilities (``debias.bins``/``smoothing``/``combine``); each
batch is half faces (drawn by those probabilities) and half non-faces, as in the
MIT 6.S191 lab::

  python -m experiments.train_dbvae \
      --config=experiments/configs/dbvae.py --workdir=workdirs/dbvae
"""

import ml_collections

from experiments.configs import classifier


def get_config() -> ml_collections.ConfigDict:
  """The default DB-VAE config (see the module docstring)."""
  config = classifier.get_config()
  config.model = classifier.model_section("dbvae", latent_dim=100, filters=12,
                                          hidden_dim=512, encoder="standard_cnn")
  config.train.method = "dbvae"
  config.train.face_nonface_batches = True
  return config
