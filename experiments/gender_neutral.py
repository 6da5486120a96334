r"""The gender-neutral study: how a sex classifier behaves, and where it looks, as the
sex cues of the faces fade (synthetic faces at several ``sex_ambiguity`` levels,
balanced over skin group x sex), or on a folder of your own faces::

  python -m experiments.gender_neutral --run=workdirs/resnet18_sex --workdir=workdirs/gn
  python -m experiments.gender_neutral --run=workdirs/resnet18_sex --images=~/faces \
      --workdir=workdirs/gn_faces

Writes gender_neutral.md/.json (P(Male) per level and skin group, CAM energy on face
and hair), p_male_vs_ambiguity.png and most_ambiguous.png. Every option is a field of
experiments/configs/gender_neutral.py.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments import common
from experiments.configs import predict as predict_config
from facebias_jax import runs
from facebias_jax.eval import predict
from facebias_jax.studies import gender_neutral

ALIASES = {
    "run": ("run", str, "Workdir of a trained sex classifier."),
    "images": ("images", str, "A folder of your own faces instead of the synthetic levels."),
}
_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/gender_neutral.py", "Study config (get_config()).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
_ALIASES = common.define_aliases(ALIASES)


def folder_config(config):
  """The ``predict`` config of the folder mode (P(Male) histogram, overlays, grid)."""
  out = predict_config.get_config()
  for field in ("run", "step", "images", "method", "batch_size", "image_format",
                "detect_faces"):
    out[field] = config[field]
  out.hist_class = 1  # P(Male).
  return out


def main(argv: list[str]) -> None:
  config = common.apply_aliases(_CONFIG.value, _ALIASES, ALIASES)
  if config.images:
    gender_neutral.check_sex_classifier(runs.read_config(config.run), config.run)
    summary = predict.run_prediction(folder_config(config), _WORKDIR.value)
    overall = summary["groups"]["all"]
    print(f"{summary['num_predictions']} faces: mean P(Male) {overall['mean']:.3f}, "
          f"called male {overall['share_predicted']['male']:.3f} -> {_WORKDIR.value}")
    return
  summary = gender_neutral.run_study(config, _WORKDIR.value)
  for level in summary["levels"]:
    r = summary["results"][f"{level:g}"]
    skins = ", ".join(f"{s} {b['p_male_mean']:.3f}" for s, b in r["skin"].items())
    print(f"sex_ambiguity {level:g}: accuracy {r['all']['accuracy']:.3f}, mean P(Male) "
          f"{skins}; CAM energy face {r['face_energy']:.2f}, hair {r['hair_energy']:.2f}")
  print(f"-> {_WORKDIR.value}/gender_neutral.md")


if __name__ == "__main__":
  common.run(main)
