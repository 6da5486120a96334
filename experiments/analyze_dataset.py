r"""Analyse a dataset split: group counts, imbalance table, sample grids, share plot.

Writes ``analysis.json``, ``analysis.md``, ``group_shares.png`` and
``samples/<spec>/<group>.png`` into ``--workdir``::

  python -m experiments.analyze_dataset --flagfile=experiments/flags/analyze_synthetic.flags
  python -m experiments.analyze_dataset --config.dataset=facebias_synthetic_faces/sex_64 \
      --config.split=test --config.groups="skin,Male;Male,Young" --workdir=/tmp/analysis

Every option is a field of experiments/configs/analyze.py.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments import common
from facebias_jax.data import analysis

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/analyze.py", "Analysis config (get_config()).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)


def main(argv: list[str]) -> None:
  result = analysis.run_analysis(_CONFIG.value, _WORKDIR.value)
  print(f"{result['num_examples']} examples analysed; wrote {result['files']['markdown']}")


if __name__ == "__main__":
  common.run(main)
