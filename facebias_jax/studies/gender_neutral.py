"""The gender-neutral study: a sex classifier on faces whose sex cues are ambiguous.

How does a sex classifier behave, and where does it look, on faces that carry no
clear cue? On the embedded benchmark the answer can be measured against a known
truth: ``synthetic.generate(..., sex_ambiguity=level)`` blurs every planted sex cue
(``synthetic.blur_sex_cues``: 0 = the training distribution, 1 = nothing in the
pixels tells the sex), on faces balanced over skin group x sex.

``run_study(config, workdir)`` (``experiments/configs/gender_neutral.py``) draws
``per_group`` faces per skin x sex cell at each level, runs the classifier with its
CAM, and writes:

* ``gender_neutral.json`` / ``.md``: per level and skin group, the P(Male) mean,
  standard deviation and quartiles, the share called male and the accuracy; per level,
  the share of positive CAM energy on the face skin and on the scalp hair (the masks
  the generator drew);
* ``p_male_vs_ambiguity.png``: P(Male) against the level, one line per skin group
  and sex (mean +- sem), next to the face / hair CAM energy against the level;
* ``most_ambiguous.png``: the faces of the highest level whose P(Male) is closest to
  0.5, with their CAMs.

On a user's own folder of faces there are no levels: ``experiments/gender_neutral.py
--images=FOLDER`` hands the folder to ``facebias_jax.eval.predict`` (the P(Male)
distribution, overlays and a grid).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np
from tqdm import tqdm

from facebias_jax import cam, runs
from facebias_jax.cam import faithfulness
from facebias_jax.cam import predictor as cam_predictor
from facebias_jax.data import groups as groups_lib
from facebias_jax.data import synthetic
from facebias_jax.eval import report
from facebias_jax.eval.formatting import fmt, md_table

SKIN_GROUPS = ("lighter", "darker")
SEXES = ("female", "male")


def parse_levels(text: str) -> list[float]:
  """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]``: sorted, distinct, each in [0, 1]."""
  try:
    levels = sorted({float(v) for v in str(text).split(",") if v.strip()})
  except ValueError as e:
    raise ValueError(f"--config.levels={text!r}: give comma-separated numbers in [0, 1], "
                     "e.g. 0,0.25,0.5,0.75,1") from e
  if not levels or levels[0] < 0.0 or levels[-1] > 1.0:
    raise ValueError(f"--config.levels={text!r}: every level must be in [0, 1] (0 = the "
                     "training faces, 1 = no sex cue)")
  return levels


def check_sex_classifier(config: Any, workdir: str) -> None:
  """Raises a ValueError unless the run of ``config`` classifies sex (female, male)."""
  names = runs.class_names(config)
  if tuple(names) != SEXES:
    raise ValueError(f"{workdir} is not a sex classifier (its classes are "
                     f"{', '.join(names)}); train one with experiments/configs/"
                     "resnet18_sex.py (label Male)")


def ambiguous_faces(level: float, *, per_group: int, image_size: int, seed: int
                    ) -> dict[str, Any]:
  """``per_group`` faces per skin x sex cell at one ambiguity level (``generate`` output)."""
  return synthetic.generate(4 * per_group, seed=seed, image_size=image_size, task="sex",
                            balanced=True, sex_ambiguity=level)


def _summary(p_male: np.ndarray, male: np.ndarray) -> dict[str, Any]:
  called = p_male >= 0.5
  return {"n": int(len(p_male)), "p_male_mean": float(p_male.mean()),
          "p_male_std": float(p_male.std()),
          "p_male_sem": float(p_male.std() / np.sqrt(max(len(p_male), 1))),
          "p_male_quartiles": np.percentile(p_male, [25, 50, 75]).tolist(),
          "share_called_male": float(called.mean()),
          "accuracy": float((called == male).mean())}


def level_result(p_male: np.ndarray, male: np.ndarray, skin: np.ndarray,
                 face_energy: np.ndarray, hair_energy: np.ndarray) -> dict[str, Any]:
  """Summaries of one level: overall, per skin group, per skin x sex, and CAM energies."""
  out = {"all": _summary(p_male, male), "skin": {}, "skin_sex": {}}
  for s in SKIN_GROUPS:
    members = skin == s
    out["skin"][s] = _summary(p_male[members], male[members])
    for k, sex in enumerate(SEXES):
      cell = members & (male == k)
      out["skin_sex"][f"{s}_{sex}"] = _summary(p_male[cell], male[cell])
  out["face_energy"] = float(np.nanmean(face_energy))
  out["hair_energy"] = float(np.nanmean(hair_energy))
  return out


def plot_study(levels: Sequence[float], results: Mapping[str, Mapping[str, Any]], path: str, *,
               title: str) -> str:
  """P(Male) against ambiguity per skin x sex, and face / hair CAM energy per level."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(10.5, 4.0), tight_layout=True)
  ax, ax_e = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  keys = [f"{level:g}" for level in levels]
  colours = {"lighter": "tab:orange", "darker": "tab:brown"}
  for s in SKIN_GROUPS:
    for sex, style in zip(SEXES, ("--", "-")):
      rows = [results[k]["skin_sex"][f"{s}_{sex}"] for k in keys]
      mean = np.array([r["p_male_mean"] for r in rows])
      sem = np.array([r["p_male_sem"] for r in rows])
      ax.plot(levels, mean, style, marker="o", color=colours[s], label=f"{s} {sex}")
      ax.fill_between(levels, mean - sem, mean + sem, color=colours[s], alpha=0.15)
  ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
  ax.set_xlabel("sex_ambiguity (0 = training faces, 1 = no sex cue)")
  ax.set_ylabel("mean P(Male)")
  ax.set_ylim(0, 1)
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=10)
  for key, label, colour in (("face_energy", "face skin", "tab:blue"),
                             ("hair_energy", "scalp hair", "tab:green")):
    ax_e.plot(levels, [results[k][key] for k in keys], marker="o", color=colour, label=label)
  ax_e.set_xlabel("sex_ambiguity")
  ax_e.set_ylabel("share of positive CAM energy")
  ax_e.set_ylim(0, 1)
  ax_e.legend(fontsize=8)
  ax_e.set_title("where the map lies", fontsize=10)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  return path


def study_markdown(levels: Sequence[float], results: Mapping[str, Mapping[str, Any]], *,
                   run: str, step: int, method: str) -> str:
  """The ``gender_neutral.md`` tables."""
  rows, energy_rows = [], []
  for level in levels:
    r = results[f"{level:g}"]
    for group, block in [("all", r["all"]), *r["skin"].items()]:
      q = block["p_male_quartiles"]
      rows.append([f"{level:g}", group, block["n"], fmt(block["p_male_mean"]),
                   fmt(block["p_male_std"]), f"{fmt(q[0])} / {fmt(q[1])} / {fmt(q[2])}",
                   fmt(block["share_called_male"]), fmt(block["accuracy"])])
    energy_rows.append([f"{level:g}", fmt(r["face_energy"]), fmt(r["hair_energy"])])
  return "\n".join([
      "# The gender-neutral study", "",
      f"- **Model:** `{run}` (step {step}), maps: {method}",
      "- **Faces:** synthetic, balanced over skin group x sex at each level; "
      "`sex_ambiguity` 0 = the training distribution, 1 = no pixel tells the sex "
      "(accuracy 0.5 is then the best possible).", "",
      "## P(Male)", "",
      md_table(["Level", "Group", "n", "Mean", "Std", "Quartiles", "Called male",
                "Accuracy"], rows), "",
      "## Where the CAM lies", "",
      "Share of the positive map mass on the face skin and on the scalp hair (the rest "
      "is on the neck, shoulders, ears, facial hair and background).", "",
      md_table(["Level", "Face skin", "Scalp hair"], energy_rows), ""])


def run_study(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True
              ) -> dict[str, Any]:
  """Runs the study (see the module docstring); returns the ``gender_neutral.json`` dict."""
  if int(config.per_group) <= 0 or int(config.batch_size) <= 0:
    raise ValueError(f"--config.per_group and --config.batch_size must be positive, got "
                     f"{config.per_group} and {config.batch_size}")
  levels = parse_levels(config.levels)
  run = runs.load_run(config.run, step=config.step)
  check_sex_classifier(run.config, run.workdir)
  image_size = int(runs.config_value(run.config, "data.image_size"))
  normalize = str(runs.config_value(run.config, "data.normalize", "unit"))
  predict = cam_predictor.make_predictor(run.model, config.method, target=1)
  results, last = {}, None
  for level in tqdm(levels, desc="ambiguity levels", disable=not progress):
    data = ambiguous_faces(level, per_group=int(config.per_group), image_size=image_size,
                           seed=int(config.seed))
    # target=1: the probability and the map of class male for every face.
    _, p_male, maps, _ = cam_predictor.predict_in_batches(
        predict, data["image"], batch_size=int(config.batch_size), normalize=normalize)
    skin = groups_lib.assign_groups(data["attributes"], "skin").astype(str)
    results[f"{level:g}"] = level_result(
        p_male, data["label"], skin, faithfulness.energy_in_mask(maps, data["mask"]),
        faithfulness.energy_in_mask(maps, data["hair_mask"]))
    last = (data, p_male, maps)
  os.makedirs(workdir, exist_ok=True)
  title = f"{os.path.basename(os.path.normpath(config.run))}: P(Male) as sex cues fade"
  paths = {"figure": plot_study(levels, results, os.path.join(workdir, "p_male_vs_ambiguity.png"),
                                title=title)}
  data, p_male, maps = last
  order = np.argsort(np.abs(p_male - 0.5))[:int(config.num_ambiguous)]
  if len(order):
    captions = [f"{SEXES[data['label'][i]][0].upper()} {p_male[i]:.2f}" for i in order]
    paths["most_ambiguous"] = cam.save_grid(
        os.path.join(workdir, f"most_ambiguous.{config.image_format}"), data["image"][order],
        maps[order], captions, scale=max(1, -(-96 // image_size)))
  summary = {"mode": "levels", "run": config.run, "step": run.step, "method": predict.method,
             "levels": levels, "per_group": int(config.per_group), "seed": int(config.seed),
             "results": results, "paths": paths}
  report.write_json(os.path.join(workdir, "gender_neutral.json"), summary)
  with open(os.path.join(workdir, "gender_neutral.md"), "w") as f:
    f.write(study_markdown(levels, results, run=config.run, step=run.step,
                           method=predict.method))
  return summary
