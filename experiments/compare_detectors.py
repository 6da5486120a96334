r"""Measures the face detectors: recall per skin x sex group, false alarms, photographs.

Each of facebias_jax.faces.DETECTORS (cnn, hog, haar) runs on synthetic portraits
balanced over skin group x sex, on synthetic non-faces and on the photographs that
scikit-image ships; writes detectors.md/.json/.png (the table of
docs/face_detection.md)::

  python -m experiments.compare_detectors --workdir=workdirs/detectors
  python -m experiments.compare_detectors --per_group=20 --detectors=haar,cnn \
      --workdir=/tmp/detectors
"""

from __future__ import annotations

from absl import flags

from experiments import common
from facebias_jax import faces
from facebias_jax.studies import face_detectors

_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
_DETECTORS = flags.DEFINE_list("detectors", list(faces.DETECTORS),
                               f"Detectors to compare, from {', '.join(faces.DETECTORS)}.")
_PER_GROUP = flags.DEFINE_integer("per_group", 100, "Synthetic portraits per skin x sex group.",
                                  lower_bound=1)
_SIZE = flags.DEFINE_integer("image_size", 256, "Side of the synthetic portraits in pixels.",
                             lower_bound=64)
_NONFACES = flags.DEFINE_integer("num_nonfaces", 200, "Synthetic non-face images (0: none).",
                                 lower_bound=0)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic images.", lower_bound=0)
_PHOTOS = flags.DEFINE_bool("photos", True, "Also run on scikit-image's photographs.")


def main(argv: list[str]) -> None:
  result = face_detectors.compare_detectors(
      detectors=_DETECTORS.value, per_group=_PER_GROUP.value, image_size=_SIZE.value,
      num_nonfaces=_NONFACES.value, seed=_SEED.value, with_photos=_PHOTOS.value)
  paths = face_detectors.write_comparison(result, _WORKDIR.value)
  for name, r in result["detectors"].items():
    groups = r["portraits"]["groups"]
    print(f"{name}: recall {groups['all']['recall']:.3f} ("
          + ", ".join(f"{g} {v['recall']:.2f}" for g, v in groups.items() if g != "all")
          + f"), {r['portraits']['ms_per_image']:.1f} ms/image")
  print(f"-> {paths['markdown']}")


if __name__ == "__main__":
  common.run(main)
