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
the statistics (``n_boot``, ``seed``, ``threshold``, ``undefined_rates``).
"""

import ml_collections

_STR = dict(field_type=str)
_INT = dict(field_type=int)


def get_config() -> ml_collections.ConfigDict:
  """The evaluation defaults (see the module docstring)."""
  config = ml_collections.ConfigDict()
  config.run = ml_collections.FieldReference(None, **_STR)
  config.compare = ml_collections.FieldReference(None, **_STR)
  config.labels = ml_collections.FieldReference(None, **_STR)
  config.step = ml_collections.FieldReference(None, **_INT)
  config.dataset = ml_collections.FieldReference(None, **_STR)
  config.split = ml_collections.FieldReference(None, **_STR)
  config.data_dir = ml_collections.FieldReference(None, **_STR)
  config.manual_dir = ml_collections.FieldReference(None, **_STR)
  config.label_key = ml_collections.FieldReference(None, **_STR)
  config.groups = ml_collections.FieldReference(None, **_STR)
  config.batch_size = ml_collections.FieldReference(None, **_INT)
  config.protocol = "classification"  # or "detection"
  config.n_boot = 1000                # bootstrap resamples of the 95% CIs (0: none)
  config.seed = 0
  config.threshold = 0.5              # on the positive-class probability
  config.undefined_rates = "ignore"   # or "zero" (fairlearn's convention)

  config.detection = ml_collections.ConfigDict()
  config.detection.scales = (1.0, 0.75, 0.5)  # window sides / shorter image side
  config.detection.stride_frac = 0.25         # stride / window side
  config.detection.logit_threshold = 0.0      # a face when the best window's logit is above
  config.detection.image_size = ml_collections.FieldReference(None, **_INT)  # as stored
  config.detection.windows_per_call = 256
  return config
