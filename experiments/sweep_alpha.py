r"""DB-VAE smoothing sweep: E[A] and Var[A] per alpha, mean and std over seeds.

Trains one DB-VAE per (alpha, seed) into ``WORKDIR/alpha_<a>/seed_<s>`` and writes
the paper-style table and plot (``sweep.json``, ``sweep.md``, ``sweep.png``)::

  python -m experiments.sweep_alpha --flagfile=experiments/flags/sweep_alpha_synthetic.flags

Any config field can be overridden after the flagfile, e.g.
``--config.train.max_steps=500 --alphas=0.001,0.1 --seeds=0``. Finished runs are
reused, so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments import common
from facebias_jax.studies import alpha_sweep

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/dbvae_synthetic.py", "DB-VAE config file (get_config()).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep folder (runs and the sweep table go here).")
_ALPHAS = flags.DEFINE_list("alphas", ["0.001", "0.01", "0.1"], "Histogram smoothing values alpha (> 0).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds per alpha (the spread across seeds is reported).")
_REUSE = flags.DEFINE_bool("reuse_existing", True, "Skip runs whose report.json already holds the same "
                           "alpha and seed.")
flags.mark_flag_as_required("workdir")


def _floats_ok(values: list[str]) -> bool:
  try:
    return bool(values) and all(float(v) > 0 for v in values)
  except ValueError:
    return False


def _ints_ok(values: list[str]) -> bool:
  try:
    return bool(values) and all(int(v) >= 0 for v in values)
  except ValueError:
    return False


flags.register_validator("alphas", _floats_ok, message="--alphas must be numbers > 0, e.g. 0.001,0.01,0.1")
flags.register_validator("seeds", _ints_ok, message="--seeds must be integers >= 0, e.g. 0,1,2")


def main(argv: list[str]) -> None:
  summary = alpha_sweep.run_alpha_sweep(_CONFIG.value, _WORKDIR.value,
                                        alphas=[float(a) for a in _ALPHAS.value],
                                        seeds=[int(s) for s in _SEEDS.value],
                                        reuse_existing=_REUSE.value)
  with open(summary["files"]["md"]) as f:
    print(f.read())


if __name__ == "__main__":
  common.run(main)
