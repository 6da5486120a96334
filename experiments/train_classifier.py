r"""Trains a face classifier and evaluates it per demographic group.

  python -m experiments.train_classifier \
      --flagfile=experiments/flags/cnn_synthetic.flags --workdir=workdirs/cnn

Any config field can be overridden after the flagfile, e.g.
``--config.train.num_epochs=5 --config.train.method=oversample``. Running again
with the same ``--workdir`` resumes from its latest checkpoint.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/classifier.py",
    "Training config file (get_config()); fields are overridable as --config.a.b=value.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder: checkpoints, metrics.jsonl, TensorBoard events, report. "
    "An existing one is resumed.")
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
  config = _CONFIG.value
  if config.model.name == "dbvae":
    raise app.UsageError("--config.model.name=dbvae: use experiments/train_dbvae.py "
                         "for the DB-VAE")
  common.train(config, _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
