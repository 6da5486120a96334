r"""Compares training methods over seeds: worst-group and average accuracy per method.

Trains every method of ``--config.methods`` for every seed of ``--config.seeds`` into
``WORKDIR/<method>/seed_<s>`` and writes ``methods.{md,csv,json,png}``::

  python -m experiments.compare_methods --flagfile=experiments/flags/compare_methods_synthetic.flags

Any field can be overridden after the flagfile, e.g. ``--config.seeds=0
--config.run.train.num_epochs=2 --config.run.group_dro.eta=0.1``. Finished runs are
skipped and unfinished ones resumed, so an interrupted comparison continues where it
stopped.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments import common
from facebias_jax.studies import compare_methods

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/compare_methods.py",
    "Comparison config file (get_config()); fields are overridable as --config.a.b=value.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Comparison folder: the runs and the table.")
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
  summary = compare_methods.compare_methods(_CONFIG.value, _WORKDIR.value)
  with open(summary["files"]["md"]) as f:
    print(f.read())
  print(f"compare_methods: {summary['files']['md']} ({summary['total_time_s'] / 60:.1f} min)")


if __name__ == "__main__":
  common.run(main)
