r"""The gender-neutral study: a sex classifier on faces with fading sex cues.

``facebias_jax.studies.gender_neutral.run_study`` takes this ConfigDict::

  python -m experiments.gender_neutral --run=workdirs/resnet18_sex --workdir=workdirs/gn
  python -m experiments.gender_neutral --run=workdirs/resnet18_sex --images=~/faces \
      --workdir=workdirs/gn_faces

Fields: ``run`` (``--run``), ``step``; ``levels`` (comma-separated ``sex_ambiguity``
levels in [0, 1]), ``per_group`` (faces per skin x sex cell and level), ``seed`` (of
the generated faces; the training split's faces come from other seeds), ``method``
(CAM; ``auto`` = ``cam`` for GAP + linear heads), ``num_ambiguous`` (faces shown in
``most_ambiguous.png``), ``batch_size``, ``image_format``; ``images`` (a folder of
your own faces instead of levels: predictions, P(Male) histogram, overlays) and
``detect_faces`` (crop the faces found in those images first).
"""

import ml_collections

from experiments.configs.common import add_run_fields, optional


def get_config() -> ml_collections.ConfigDict:
  """The study defaults (see the module docstring)."""
  config = add_run_fields(ml_collections.ConfigDict(), data=False)
  config.levels = "0,0.25,0.5,0.75,1"
  config.per_group = 100
  config.seed = 20261202
  config.method = "auto"
  config.num_ambiguous = 24
  config.batch_size = 64
  config.image_format = "png"
  config.images = optional(str)
  config.detect_faces = False
  return config
