r"""Evaluates trained runs per demographic group and writes the reports.

  python -m experiments.evaluate --run=workdirs/cnn
  python -m experiments.evaluate --compare=workdirs/cnn,workdirs/dbvae --labels=cnn,dbvae \
      --workdir=workdirs/compare
  python -m experiments.evaluate --flagfile=experiments/flags/evaluate_synthetic.flags

Every option is a field of experiments/configs/evaluate.py (``--config.<field>=...``);
dataset, split, label and groups default to each run's own config.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments import common
from facebias_jax.eval import evaluate

ALIASES = {
    "run": ("run", str, "Training workdir to evaluate."),
    "checkpoint": ("run", str, "Training workdir to evaluate (old name of --run)."),
    "compare": ("compare", str, "Several training workdirs, comma-separated, compared side "
                "by side."),
    "labels": ("labels", str, "Names of the --compare runs, comma-separated."),
}
_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/evaluate.py", "Evaluation config (get_config()).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where the reports go (required with --compare; one run: its workdir, or "
    "a subfolder when the dataset differs from its config's).")
_ALIASES = common.define_aliases(ALIASES)


def main(argv: list[str]) -> None:
  config = common.apply_aliases(_CONFIG.value, _ALIASES, ALIASES)
  result = evaluate.run_evaluation(config, _WORKDIR.value)
  for label, rep in result["reports"].items():
    f = rep["metrics"]["fairness"]
    print(f"{label}: accuracy {rep['metrics']['overall']['accuracy']:.4f}, worst group "
          f"{f['worst_group']} ({f['worst_group_accuracy']}), report {rep['files']['md']}")
  if result["comparison"]:
    print(f"comparison: {result['comparison']['files']['md']}")


if __name__ == "__main__":
  common.run(main)
