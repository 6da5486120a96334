r"""ResNet-18 (GAP + linear head, CAM-ready) classifying sex (``Male``).

On the synthetic ``sex_64`` set by default; CelebA via the flagfiles::

  python -m experiments.train_classifier \
      --config=experiments/configs/resnet18_sex.py --workdir=workdirs/resnet18_sex
  python -m experiments.train_classifier \
      --flagfile=experiments/flags/resnet18_celeba_male.flags \
      --config.data.manual_dir=/data/celeba --workdir=workdirs/resnet18_celeba

``train.method="oversample"`` (``train.groups="skin,Male"``) gives the
balanced-training comparison.
"""

import ml_collections

from experiments.configs import classifier


def get_config() -> ml_collections.ConfigDict:
  """ResNet-18 for sex classification on the synthetic faces."""
  config = classifier.get_config()
  # small_inputs: 3x3 stem, no max-pool: keeps 64 px maps 8x8. width scales the
  # channels (0.25: the quick gender-neutral study model, ~16x fewer FLOPs).
  config.model = classifier.model_section("resnet18", small_inputs=True, width=1.0)
  config.data.name = "facebias_synthetic_faces/sex_64"
  config.debias.face_key = "is_face"
  return config
