"""How good, and how even, are the face detectors? Recall per skin x sex and false alarms.

A face the detector misses is never classified (the live demo) or is cropped at the
image centre instead (the PPB ``cropped`` configs), so the detector's bias enters
every measurement made on detected faces. ``compare_detectors`` measures each of
``facebias_jax.faces.DETECTORS`` on:

* synthetic portraits (``synthetic.generate``, balanced over skin group x sex, at
  ``image_size``): recall per group with a Wilson 95% interval, where a face counts as
  found when a detection's centre lies on the face (inside the box of its skin mask,
  grown by 10% of the image side);
* synthetic non-faces (textures, clutter, skin-coloured blobs, blank heads): the share
  of images with any detection (false alarms);
* real photographs shipped with scikit-image (test dependency): the astronaut portrait
  (one face, box drawn by hand) and photographs without a human face (coffee, a cat, a
  rocket, galaxies, a tissue sample, a retina): hits and false detections.

Results go to ``detectors.json``, ``detectors.md`` and ``detectors.png``
(``experiments/compare_detectors.py``); ``docs/face_detection.md`` holds the table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from facebias_jax import faces
from facebias_jax.data import groups as groups_lib
from facebias_jax.data import synthetic
from facebias_jax.eval import metrics, report
from facebias_jax.eval.formatting import fmt, fmt_ci, md_table

# The astronaut's face in skimage.data.astronaut() (512 x 512), (x0, y0, x1, y1), drawn
# by hand around brows-to-chin and ear-to-ear.
ASTRONAUT_FACE = (165, 65, 275, 180)
# scikit-image photographs without a human face.
NONFACE_PHOTOS = ("coffee", "chelsea", "rocket", "hubble_deep_field",
                  "immunohistochemistry", "retina")


def photographs() -> list[tuple[str, np.ndarray, list[tuple[int, int, int, int]]]]:
  """``(name, RGB uint8 image, face boxes)`` of the scikit-image test photographs.

  Raises:
    ImportError: scikit-image is missing (it is a test dependency).
  """
  from skimage import data  # pylint: disable=g-import-not-at-top  (test extra only)
  out = [("astronaut", data.astronaut(), [ASTRONAUT_FACE])]
  for name in NONFACE_PHOTOS:
    image = np.asarray(getattr(data, name)())
    out.append((name, np.ascontiguousarray(image[..., :3]), []))
  return out


def is_hit(box: Sequence[int], truth: Sequence[int], slack: float = 0.0) -> bool:
  """Whether detection ``(x, y, w, h)``'s centre lies in ``truth`` ``(x0, y0, x1, y1)``
  grown by ``slack`` pixels per side."""
  cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
  x0, y0, x1, y1 = truth
  return x0 - slack <= cx <= x1 + slack and y0 - slack <= cy <= y1 + slack


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
  """Bounding box ``(x0, y0, x1, y1)`` of a boolean mask."""
  ys, xs = np.nonzero(mask)
  return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _detect(detector: str, image_rgb: np.ndarray) -> tuple[list, float]:
  start = time.perf_counter()
  boxes = faces.detect_faces(np.ascontiguousarray(image_rgb[..., ::-1]), detector=detector,
                             min_size=(20, 20))
  return boxes, time.perf_counter() - start


def portrait_recall(detector: str, data: Mapping[str, Any], group_names: np.ndarray
                    ) -> dict[str, Any]:
  """Recall per group (and overall) of ``detector`` on generated faces."""
  size = data["image"].shape[1]
  found, seconds = [], 0.0
  for image, mask in zip(data["image"], data["mask"]):
    boxes, sec = _detect(detector, image)
    seconds += sec
    truth = mask_box(mask)
    found.append(any(is_hit(b, truth, slack=0.1 * size) for b in boxes))
  found = np.asarray(found)
  rows = {}
  for group in ["all", *sorted(set(group_names))]:
    members = np.ones(len(found), bool) if group == "all" else group_names == group
    k, n = int(found[members].sum()), int(members.sum())
    rows[group] = {"n": n, "found": k, "recall": k / n, "ci": list(metrics.wilson_interval(k, n))}
  return {"groups": rows, "ms_per_image": 1e3 * seconds / max(len(found), 1)}


def false_alarms(detector: str, images: np.ndarray) -> dict[str, Any]:
  """Share of non-face images with at least one detection."""
  hits = sum(bool(_detect(detector, image)[0]) for image in images)
  return {"n": int(len(images)), "with_detection": int(hits),
          "rate": hits / max(len(images), 1),
          "ci": list(metrics.wilson_interval(hits, len(images)))}


def photo_results(detector: str, photos: Sequence[tuple[str, np.ndarray, list]]
                  ) -> dict[str, dict[str, int]]:
  """Per photograph: annotated faces, faces found, and detections on no face."""
  out = {}
  for name, image, truths in photos:
    boxes, _ = _detect(detector, image)
    hit = [any(is_hit(b, t) for b in boxes) for t in truths]
    false = [b for b in boxes if not any(is_hit(b, t) for t in truths)]
    out[name] = {"faces": len(truths), "found": int(sum(hit)), "false_detections": len(false)}
  return out


def compare_detectors(*, detectors: Sequence[str] = faces.DETECTORS, per_group: int = 100,
                      image_size: int = 256, num_nonfaces: int = 200, seed: int = 0,
                      with_photos: bool = True) -> dict[str, Any]:
  """Measures every detector (see the module docstring); returns the results dict."""
  for d in detectors:
    faces.check_detector(d)
  portraits = synthetic.generate(4 * per_group, seed=seed, image_size=image_size, task="sex",
                                 balanced=True)
  group_names = groups_lib.assign_groups(portraits["attributes"], "skin,Male").astype(str)
  nonfaces = synthetic.generate(num_nonfaces, seed=seed + 1, image_size=image_size,
                                face_fraction=0.0)["image"] if num_nonfaces else None
  photos = photographs() if with_photos else []
  results = {}
  for d in detectors:
    results[d] = {"portraits": portrait_recall(d, portraits, group_names)}
    if nonfaces is not None:
      results[d]["nonfaces"] = false_alarms(d, nonfaces)
    if photos:
      results[d]["photos"] = photo_results(d, photos)
  return {"settings": {"per_group": per_group, "image_size": image_size, "seed": seed,
                       "num_nonfaces": num_nonfaces, "default": faces.DEFAULT_DETECTOR},
          "detectors": results}


def comparison_markdown(result: Mapping[str, Any]) -> str:
  """Tables of :func:`compare_detectors`: recall per group, false alarms, photographs."""
  dets = result["detectors"]
  s = result["settings"]
  groups = list(next(iter(dets.values()))["portraits"]["groups"])
  rows = [[d] + [fmt_ci(r["portraits"]["groups"][g]["recall"], r["portraits"]["groups"][g]["ci"],
                        2) for g in groups]
          + [fmt(r["portraits"]["ms_per_image"], 1)] for d, r in dets.items()]
  parts = ["# Face detectors: recall per group", "",
           f"Synthetic portraits, {s['per_group']} per skin x sex group, {s['image_size']} px "
           f"(seed {s['seed']}); recall [Wilson 95% CI]; time per image on this machine.", "",
           md_table(["Detector", *groups, "ms / image"], rows), ""]
  if all("nonfaces" in r for r in dets.values()):
    parts += [f"False alarms: share of {s['num_nonfaces']} synthetic non-face images with any "
              "detection.", "",
              md_table(["Detector", "False-alarm rate [95% CI]"],
                       [[d, fmt_ci(r["nonfaces"]["rate"], r["nonfaces"]["ci"], 3)]
                        for d, r in dets.items()]), ""]
  if all("photos" in r for r in dets.values()):
    names = list(next(iter(dets.values()))["photos"])
    cell = lambda p: (f"{p['found']}/{p['faces']} found, {p['false_detections']} false"
                      if p["faces"] else f"{p['false_detections']} false")
    prow = [[d] + [cell(r["photos"][n]) for n in names] for d, r in dets.items()]
    parts += ["Photographs shipped with scikit-image: faces found / annotated, and false "
              "detections (only the astronaut shows a human face).", "",
              md_table(["Detector", *names], prow), ""]
  return "\n".join(parts)


def plot_recall(result: Mapping[str, Any], path: str) -> str:
  """Grouped bars: recall per skin x sex group for each detector, with 95% intervals."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  dets = result["detectors"]
  groups = [g for g in next(iter(dets.values()))["portraits"]["groups"] if g != "all"]
  fig = Figure(figsize=(7.5, 3.6), tight_layout=True)
  ax = fig.add_subplot()
  width = 0.8 / len(dets)
  for i, (d, r) in enumerate(dets.items()):
    rows = [r["portraits"]["groups"][g] for g in groups]
    recall = np.array([row["recall"] for row in rows])
    err = np.array([[row["recall"] - row["ci"][0], row["ci"][1] - row["recall"]] for row in rows]).T
    ax.bar(np.arange(len(groups)) + (i - (len(dets) - 1) / 2) * width, recall, width, yerr=err,
           capsize=3, label=d)
  ax.set_xticks(np.arange(len(groups)), groups, fontsize=9)
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("recall")
  ax.set_title("Face detectors on synthetic portraits, per group", fontsize=10)
  ax.legend(fontsize=8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  return path


def write_comparison(result: Mapping[str, Any], workdir: str) -> dict[str, str]:
  """Writes ``detectors.json``, ``detectors.md`` and ``detectors.png``; returns the paths."""
  os.makedirs(workdir, exist_ok=True)
  paths = {"json": report.write_json(os.path.join(workdir, "detectors.json"), result),
           "markdown": os.path.join(workdir, "detectors.md"),
           "figure": plot_recall(result, os.path.join(workdir, "detectors.png"))}
  with open(paths["markdown"], "w") as f:
    f.write(comparison_markdown(result))
  return paths
