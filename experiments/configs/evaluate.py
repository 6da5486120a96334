r"""Per-group evaluation of trained runs: one run, or several compared side by side.

The evaluation's defaults live here once; ``facebias_jax.eval.evaluate.run_evaluation``
takes this ConfigDict. Every field left ``None`` (or empty) comes from each run's own
config (``config.data.*``, ``config.eval.groups``)::

  python -m experiments.evaluate --run=workdirs/cnn
  python -m experiments.evaluate --compare=workdirs/cnn,workdirs/dbvae \
      --labels=standard,dbvae --workdir=workdirs/compare
  python -m experiments.evaluate --flagfile=experiments/flags/evaluate_synthetic.flags
  python -m experiments.evaluate --run=workdirs/dbvae \
      --config.dataset=facebias_ppb/full_256 --config.manual_dir=~/data/ppb \
      --config.groups=skin,Male --config.protocol=detection

Fields: ``run`` (a training workdir; ``--run``/``--checkpoint``) or ``compare``
(comma-separated workdirs; ``--compare``) with ``labels``; ``step`` (default the
newest checkpoint); the data (``dataset``, ``split``, ``data_dir``, ``manual_dir``,
``label_key``, ``groups``); ``protocol`` (``classification``, or ``detection``: the
DB-VAE paper's PPB protocol, sliding windows over full images, see ``detection``);
the statistics (``n_boot``, ``seed``, ``threshold``, ``undefined_rates``,
``min_group_size``).
"""

import ml_collections

from experiments.configs.common import add_run_fields, optional


def get_config() -> ml_collections.ConfigDict:
  """The evaluation defaults (see the module docstring)."""
  config = add_run_fields(ml_collections.ConfigDict())
  config.compare = optional(str)
  config.labels = optional(str)
  config.batch_size = optional(int)
  config.protocol = "classification"  # or "detection"
  config.n_boot = 1000                # bootstrap resamples of the 95% CIs (0: none)
  config.seed = 0
  config.threshold = 0.5              # on the positive-class probability
  config.undefined_rates = "ignore"   # or "zero" (fairlearn's convention)
  # Groups with fewer examples are reported but left out of the fairness summary
  # (default: the run's eval.min_group_size, else 20).
  config.min_group_size = optional(int)

  config.detection = ml_collections.ConfigDict()
  config.detection.scales = (1.0, 0.75, 0.5)  # window sides / shorter image side
  config.detection.stride_frac = 0.25         # stride / window side
  config.detection.logit_threshold = 0.0      # a face when the best window's logit is above
  config.detection.image_size = optional(int)  # full images as stored
  config.detection.windows_per_call = 256
  return config
