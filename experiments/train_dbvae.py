r"""Trains a DB-VAE (debiased sampling from its latent space) and evaluates it per group.

  python -m experiments.train_dbvae \
      --flagfile=experiments/flags/dbvae_synthetic.flags --workdir=workdirs/dbvae

Any config field can be overridden after the flagfile, e.g.
``--config.debias.smoothing=0.01 --config.debias.combine=product``. Running
again with the same ``--workdir`` resumes from its latest checkpoint.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/dbvae.py",
    "DB-VAE config file (get_config()); fields are overridable as --config.a.b=value.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder: checkpoints, metrics.jsonl, TensorBoard events, report "
    "(with latent histograms and extreme samples). An existing one is resumed.")
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
  config = _CONFIG.value
  if config.model.name != "dbvae":
    raise app.UsageError(f"--config.model.name={config.model.name!r}: this script trains the "
                         "DB-VAE; use experiments/train_classifier.py for classifiers")
  common.train(config, _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
