r"""Analyse a dataset split: group counts, imbalance table, sample grids, share plot.

Writes ``analysis.json``, ``analysis.md``, ``group_shares.png`` and
``samples/<spec>/<group>.png`` into ``--workdir``::

  python -m experiments.analyze_dataset \
      --flagfile=experiments/flags/analyze_synthetic.flags
  python -m experiments.analyze_dataset --dataset=facebias_synthetic_faces/sex_64 \
      --split=test --groups=skin,Male --groups=Male,Young --workdir=/tmp/analysis
"""

from __future__ import annotations

from absl import app
from absl import flags

from facebias_jax.data import analysis
from experiments import common

_DATASET = flags.DEFINE_string(
    "dataset", "facebias_synthetic_faces/faces_vs_nonfaces_64",
    "TFDS name with config, e.g. facebias_synthetic_faces/sex_64.")
_SPLIT = flags.DEFINE_string("split", "train", "Split to analyse (train, validation, test...).")
_GROUPS = flags.DEFINE_multi_string(
    "groups", ["skin,Male"],
    "Group spec: comma-separated attributes, e.g. skin,Male or Male,Pale_Skin,Young. "
    "Repeat the flag for several groupings.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "TFDS data directory (default ~/tensorflow_datasets).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None,
                                  "Raw files of manual-download datasets (CelebA, PPB...).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_SAMPLES = flags.DEFINE_integer("samples_per_group", 16,
                                "Images per group in the sample grids (0: no grids).",
                                lower_bound=0)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sample pick.", lower_bound=0)
_LABEL_KEY = flags.DEFINE_string("label_key", "label", "Integer feature reported as the label.")
_PREPARE = flags.DEFINE_boolean("prepare", True, "Prepare the dataset when it is missing.")


@flags.validator("groups", message="--groups needs non-empty specs like skin,Male")
def _check_groups(specs):
  return bool(specs) and all(part.strip() for spec in specs for part in spec.split(","))


@flags.validator("dataset", message="--dataset must be a TFDS name like builder/config")
def _check_dataset(name):
  return bool(name) and " " not in name


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  result = analysis.run_analysis(
      _DATASET.value, split=_SPLIT.value, group_specs=_GROUPS.value, workdir=_WORKDIR.value,
      data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value, prepare=_PREPARE.value,
      samples_per_group=_SAMPLES.value, seed=_SEED.value, label_key=_LABEL_KEY.value)
  print(f"{result['num_examples']} examples analysed; wrote {result['files']['markdown']}")


if __name__ == "__main__":
  common.run(main)
