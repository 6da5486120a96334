"""How well the estimated skin tone (ITA) agrees with labelled skin types.

``skin_ita`` is stored at preparation for every dataset (``imaging.ita_degrees`` on the
synthetic face mask, CelebA's cheeks, a central face box otherwise); groups
``ita_band`` / ``ita_tone`` read it. This script checks it where the truth is known:

* the synthetic benchmark's Fitzpatrick types (its face masks, its camera: exposure,
  gamma, directional light and noise vary per image);
* PPB's labels on the PPB format: synthetic portraits written as PPB's files
  (``imgs/`` + ``PPB-2017-metadata.csv`` with Fitzpatrick types), prepared by the real
  ``facebias_ppb/cropped_64`` builder (Haar face crop, central box).

For each: the ITA band of every Fitzpatrick type (counts), the two-way agreement of
``ita_tone`` (ITA > 28) with lighter (types 1-3) / darker (4-6), and Spearman's rank
correlation of ITA with the type. Writes ``benchmarks/results/ita_agreement.json``;
docs/skin_tone.md carries the tables.

    python -m benchmarks.bench_ita [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import cv2
import numpy as np
import tensorflow_datasets as tfds

from benchmarks import common
from facebias_jax import imaging
from facebias_jax.data import groups, sources, synthetic

BAND_NAMES = [name for _, name in groups.ITA_BANDS]


def agreement(ita: np.ndarray, skin_type: np.ndarray) -> dict:
  """Band counts per Fitzpatrick type, two-way agreement and rank correlation."""
  known = np.isfinite(ita) & (skin_type >= 1)
  ita, skin_type = ita[known], skin_type[known]
  bands = groups.ita_band(ita)
  table = {int(t): {b: int(np.sum((skin_type == t) & (bands == b))) for b in BAND_NAMES}
           for t in range(1, 7)}
  tone_lighter = ita > groups.ITA_TONE_CUT
  label_lighter = skin_type <= 3
  ranks = lambda x: np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)
  spearman = float(np.corrcoef(ranks(ita), ranks(-skin_type.astype(np.float64)))[0, 1])
  return {
      "n": int(known.sum()), "unknown": int((~known).sum()),
      "bands_per_type": table,
      "two_way_agreement": float(np.mean(tone_lighter == label_lighter)),
      "lighter_recall": float(np.mean(tone_lighter[label_lighter])) if label_lighter.any() else None,
      "darker_recall": float(np.mean(~tone_lighter[~label_lighter])) if (~label_lighter).any() else None,
      "spearman_ita_vs_lightness": spearman,
      "median_ita_per_type": {int(t): float(np.median(ita[skin_type == t]))
                              for t in range(1, 7) if np.any(skin_type == t)},
  }


def synthetic_agreement(num: int, *, seed: int = 7, image_size: int = 64) -> dict:
  """ITA of synthetic faces (balanced over lighter/darker x sex) vs their types."""
  data = synthetic.generate(num, seed=seed, image_size=image_size, task="sex", balanced=True)
  ita = np.array([imaging.ita_degrees(image, mask)
                  for image, mask in zip(data["image"], data["mask"])])
  return agreement(ita, data["attributes"]["skin_type"])


def write_ppb_portraits(root: str, num: int, *, seed: int = 11) -> list[int]:
  """Synthetic faces as PPB's files (portraits 200x160 on a plain wall); their types."""
  data = synthetic.generate(num, seed=seed, image_size=128, task="sex", balanced=True)
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(root, "imgs"), exist_ok=True)
  lines = ["id,file,gender,numeric,skin color,country"]
  for i, face in enumerate(data["image"]):
    wall = np.clip(rng.normal(rng.uniform(80, 200), 8, (200, 160, 3)), 0, 255)
    wall[36:164, 16:144] = face
    name = f"{i:04d}.jpg"
    cv2.imwrite(os.path.join(root, "imgs", name), wall.astype(np.uint8)[..., ::-1])
    skin_type = int(data["attributes"]["skin_type"][i])
    lines.append(f"{i + 1},{name},{'male' if data['attributes']['Male'][i] else 'female'},"
                 f"{skin_type},{'lighter' if skin_type <= 3 else 'darker'},Synthetica")
  with open(os.path.join(root, "PPB-2017-metadata.csv"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return data["attributes"]["skin_type"].tolist()


def ppb_agreement(num: int, workdir: str) -> dict:
  """ITA stored by the PPB builder (face crop) vs the metadata's Fitzpatrick types."""
  manual = os.path.join(workdir, "ppb_manual")
  write_ppb_portraits(manual, num)
  builder = tfds.builder("facebias_ppb/cropped_64", data_dir=os.path.join(workdir, "tfds"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
  source = sources.load_source("facebias_ppb/cropped_64", split="test",
                               data_dir=os.path.join(workdir, "tfds"), prepare=False)
  attributes = sources.read_attributes(source)
  result = agreement(attributes["skin_ita"].astype(np.float64), attributes["skin_type"])
  result["face_found_rate"] = float(np.mean(attributes["face_found"]))
  return result


def markdown(result: dict, title: str) -> str:
  """The band-per-type table and the summary line."""
  lines = [f"### {title}", "", "| Fitzpatrick type | " + " | ".join(BAND_NAMES) + " | median ITA |",
           "|---|" + "---:|" * (len(BAND_NAMES) + 1)]
  for t, counts in result["bands_per_type"].items():
    median = result["median_ita_per_type"].get(t)
    lines.append(f"| {t} | " + " | ".join(str(counts[b]) for b in BAND_NAMES)
                 + f" | {'' if median is None else f'{median:.1f}'} |")
  lines += ["", f"n = {result['n']} ({result['unknown']} unknown). ita_tone vs lighter "
            f"(1-3) / darker (4-6): agreement {result['two_way_agreement']:.3f} (lighter "
            f"recall {result['lighter_recall']:.3f}, darker recall "
            f"{result['darker_recall']:.3f}); Spearman {result['spearman_ita_vs_lightness']:.3f}."]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer faces")
  args = parser.parse_args(argv)
  num = 240 if args.quick else 2400
  results = {"synthetic": synthetic_agreement(num)}
  with tempfile.TemporaryDirectory() as tmp:
    results["ppb_format"] = ppb_agreement(num // 4, tmp)
  for key, title in (("synthetic", "Synthetic benchmark (face masks)"),
                     ("ppb_format", "PPB format (Haar face crop, central box)")):
    print(markdown(results[key], title), "\n")
  path = common.write_results("ita_agreement", [], extra=results)
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
