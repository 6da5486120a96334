r"""Training methods side by side over seeds: ERM, subsampling, oversampling, reweighting,
Group DRO, JTT, DFR and the DB-VAE, on one run config.

``run`` is the run every method starts from (default: the synthetic Blond_Hair
benchmark of ``synthetic_blond.py``, where ERM leans on sex); each method changes only
``run.train.method`` and the seed, and the DB-VAE gets ``dbvae_model`` (the DB-VAE with
the run's encoder). Method settings are fields of ``run``: ``run.group_dro.eta``,
``run.jtt.upweight``, ``run.dfr.c_grid``... ::

  python -m experiments.compare_methods --flagfile=experiments/flags/compare_methods_synthetic.flags
  python -m experiments.compare_methods --config=experiments/configs/compare_methods.py \
      --config.methods=erm,group_dro --config.seeds=0 --workdir=workdirs/methods_quick

Outputs in ``--workdir``: one run directory per method and seed (``<method>/seed_<s>``,
resumed or skipped when rerun) and ``methods.{md,csv,json,png}``.
"""

import ml_collections

from experiments.configs import classifier, synthetic_blond


def get_config() -> ml_collections.ConfigDict:
  """The comparison (see the module docstring)."""
  config = ml_collections.ConfigDict()
  config.run = synthetic_blond.get_config()
  config.methods = "erm,subsample,oversample,reweight,group_dro,jtt,dfr,dbvae"
  config.seeds = "0,1,2"
  # Every method trains the optimizer steps of run.train.num_epochs ERM epochs and
  # validates every ERM epoch (their own epochs differ: SUBG's are tiny, JTT's long).
  config.equal_steps = True
  m = config.run.model
  config.dbvae_model = classifier.model_section(
      "dbvae", latent_dim=32, filters=m.filters, hidden_dim=m.hidden_dim,
      encoder="standard_cnn")
  config.dbvae_model.init_from = ""
  config.dbvae_model.init_head = False
  return config
