"""Evaluation reports as files: JSON, Markdown and CSV tables (plots: ``eval.plots``).

* ``write_report``: one model on one dataset -> ``report.json`` (the contract of
  DESIGN.md: ``group_metrics`` under ``"metrics"`` plus ``"dataset"``, ``"model"``,
  ``"config"``), ``report.md``, ``report.csv``, ``report_groups.png``.
* ``compare_runs``: several reports side by side (standard vs balanced vs DB-VAE).
* (results over seeds -- the alpha sweep, the methods comparison -- are ``eval.seeds``.)
* ``to_jsonable`` / ``write_json``: strict JSON of numpy values and ConfigDicts, the
  one writer of every JSON file the evaluation and CAM export produce.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from facebias_jax import runs
from facebias_jax.eval import plots
from facebias_jax.eval.formatting import as_float, csv_value, describe, fmt, fmt_ci, md_table

# Fairness summary rows: (key, readable name).
_FAIRNESS_ROWS = (
    ("worst_group_accuracy", "Worst-group accuracy"),
    ("mean_group_accuracy", "Mean accuracy over groups E[A]"),
    ("accuracy_gap", "Accuracy gap (max - min)"),
    ("accuracy_variance", "Accuracy variance across groups Var[A]"),
    ("demographic_parity_difference", "Demographic parity difference"),
    ("equalized_odds_difference", "Equalized odds difference"),
    ("tpr_difference", "TPR difference"),
    ("fpr_difference", "FPR difference"),
)


# ----------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
  """Converts numpy values, ConfigDicts and tuples to JSON types; NaN/inf -> None."""
  if hasattr(obj, "to_dict") and callable(obj.to_dict):  # ml_collections.ConfigDict
    obj = obj.to_dict()
  if isinstance(obj, Mapping):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return to_jsonable(obj.tolist())
  if isinstance(obj, (bool, np.bool_)):
    return bool(obj)
  if isinstance(obj, (int, np.integer)):
    return int(obj)
  if isinstance(obj, (float, np.floating)):
    return float(obj) if math.isfinite(obj) else None
  if obj is None or isinstance(obj, str):
    return obj
  return str(obj)  # e.g. a dtype or a path object: keep something readable.


def write_json(path: str, obj: Any) -> str:
  """Writes ``obj`` as strict, indented JSON (NaN/inf -> null); creates the folder."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    # allow_nan=False guarantees strict JSON (to_jsonable already removed NaN).
    json.dump(to_jsonable(obj), f, indent=2, allow_nan=False)
    f.write("\n")
  return path


def load_report(path: str) -> dict:
  """Reads a ``report.json`` (a file, or a workdir holding one)."""
  if os.path.isdir(path):
    path = os.path.join(path, runs.REPORT_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"No report at {path}: run `python -m experiments.evaluate "
                            f"--checkpoint=WORKDIR` (or train with evaluation) first")
  with open(path) as f:
    return json.load(f)


def metrics_markdown(metrics: Mapping[str, Any], *, title: str = "Evaluation report",
                     dataset: Any = None, model: Any = None) -> str:
  """The Markdown body of ``report.md``: per-group table and fairness summary."""
  parts = [f"# {title}", ""]
  if model is not None:
    parts.append(f"- **Model:** {describe(model)}")
  if dataset is not None:
    parts.append(f"- **Dataset:** {describe(dataset)}")
  o = metrics["overall"]
  parts += [f"- **Overall:** n={o['n']}, accuracy {fmt_ci(o['accuracy'], o.get('accuracy_ci'))}, "
            f"TPR {fmt(o['tpr'])}, FPR {fmt(o['fpr'])}, selection rate {fmt(o['selection_rate'])}",
            "", "## Per group", ""]
  s = metrics.get("settings", {})
  if s.get("constant_prediction") is not None:
    parts[-3:-3] = [f"- **Warning:** the model predicts class {s['constant_prediction']} for "
                    "every example: it has collapsed (often a too large learning rate), and "
                    "its group metrics only restate the class balance."]
  attributes = s.get("group_attributes") or {}
  if attributes:
    parts[-3:-3] = ["- **Groups** " + f"`{s.get('group_spec', '')}`: " + "; ".join(
        f"`{name}` = {text}" for name, text in attributes.items())]
  too_small = set(s.get("too_small_for_fairness") or ())
  rows = []
  for name, g in metrics["groups"].items():
    flags = []
    if g.get("small_sample"):
      flags.append("small sample")
    if name in too_small:
      flags.append(f"n < {s.get('min_group_size')}: not in fairness summary")
    elif g.get("in_fairness") is False:
      flags.append("not in fairness summary")
    rows.append([name, g["n"], fmt_ci(g["accuracy"], g.get("accuracy_ci")), fmt(g["tpr"]),
                 fmt(g["fpr"]), fmt(g["selection_rate"]), "; ".join(flags)])
  parts += [md_table(["Group", "n", "Accuracy [95% CI]", "TPR", "FPR", "Selection rate", "Note"],
                      rows), "", "## Fairness", ""]
  f = metrics["fairness"]
  frows = [["Worst group", f.get("worst_group") or "n/a"]]
  frows += [[label, fmt_ci(f.get(key), f.get(f"{key}_ci"), 4)] for key, label in _FAIRNESS_ROWS]
  parts += [md_table(["Metric", "Value [95% CI]"], frows), ""]
  if too_small:
    parts += [f"Groups with fewer than {s.get('min_group_size')} examples "
              f"({', '.join(sorted(too_small))}) are reported above but left out of the "
              "fairness summary.", ""]
  if metrics.get("face_detection"):
    parts += face_detection_markdown(metrics["face_detection"])
  if s:
    parts.append(f"CIs: {int(s.get('ci_level', 0.95) * 100)}% percentile bootstrap within groups "
                 f"({s.get('n_boot')} resamples, seed {s.get('seed')}); groups with n < "
                 f"{s.get('small_sample_size')} use a Wilson interval. Undefined rates (no "
                 f"positives/negatives) are n/a and {'ignored' if s.get('undefined_rates') == 'ignore' else 'counted as 0'} "
                 f"in the differences. Threshold {s.get('threshold')}.")
    parts.append("")
  return "\n".join(parts)


def face_detection_markdown(detection: Mapping[str, Any]) -> list[str]:
  """The "Face detection" section of a report (``evaluate.face_detection_summary``)."""
  o = detection["overall"]
  rows = [[name, r["n"], r["found"],
           fmt_ci(r["rate"], r["rate_ci"]), fmt(r["accuracy_all"]), fmt(r["accuracy_found"])]
          for name, r in [("all", o), *detection["groups"].items()]]
  if o["excluded"] == 0:
    text = (f"Every image has `face_found` = 1 ({o['n']}): each face was detected, or the "
            "dataset holds whole images that no detector cropped.")
  else:
    text = (f"The face detector of the dataset found {o['found']} of {o['n']} faces; the "
            f"other {o['excluded']} images were cropped at the centre instead, and the "
            "metrics above include them. The detector's misses are part of the measurement: "
            "compare the detection rate per group, and the accuracy on detected faces only.")
  return ["## Face detection", "", text, "",
          md_table(["Group", "n", "Face found", "Detection rate [95% CI]", "Accuracy (all)",
                    "Accuracy (face found)"], rows), ""]


def metrics_csv_rows(metrics: Mapping[str, Any]) -> list[list[Any]]:
  """Rows (header first) of ``report.csv``: one per group plus ``overall``."""
  header = ["group", "n", "accuracy", "accuracy_ci_lo", "accuracy_ci_hi", "tpr", "fpr",
            "selection_rate", "tp", "fp", "tn", "fn", "small_sample"]
  rows = [header]
  blocks = list(metrics["groups"].items()) + [("overall", metrics["overall"])]
  for name, g in blocks:
    ci = g.get("accuracy_ci") or [None, None]
    rows.append([name, g["n"], g["accuracy"], ci[0], ci[1], g["tpr"], g["fpr"], g["selection_rate"],
                 g["tp"], g["fp"], g["tn"], g["fn"], g.get("small_sample", False)])
  return [[csv_value(c) for c in row] for row in rows]


def write_csv(path: str, rows: Sequence[Sequence[Any]]) -> None:
  with open(path, "w", newline="") as f:
    csv.writer(f).writerows(rows)


# ----------------------------------------------------------------------------- single report


def write_report(workdir: str, *, metrics: Mapping[str, Any], dataset: Any, model: Any,
                 config: Any, extra: Mapping[str, Any] | None = None,
                 title: str | None = None) -> dict:
  """Writes ``report.json``, ``report.md``, ``report.csv`` and ``report_groups.png``.

  Args:
    workdir: output folder (created if needed).
    metrics: the ``metrics.group_metrics`` dict.
    dataset: description of the evaluation data (dict such as ``{"name", "split",
      "num_examples", "groups"}``, or a string).
    model: description of the model (dict such as ``{"name", "workdir", "step"}``, or a string).
    config: the run's config (``ConfigDict`` or dict).
    extra: more JSON-able entries stored at the top level of ``report.json``.
    title: heading of ``report.md`` and the plot.

  Returns:
    The report dict as written to ``report.json`` (NaN -> None), with ``"files"``
    listing the written paths.
  """
  os.makedirs(workdir, exist_ok=True)
  report = {"metrics": metrics, "dataset": dataset, "model": model, "config": config}
  for k, v in (extra or {}).items():
    if k in report:
      raise ValueError(f"extra key {k!r} would overwrite the report's {k!r} entry")
    report[k] = v
  name = model.get("name") if isinstance(model, Mapping) else model
  title = title or f"Evaluation report: {name}"
  files = {k: os.path.join(workdir, f) for k, f in (
      ("json", "report.json"), ("md", "report.md"), ("csv", "report.csv"),
      ("png", "report_groups.png"))}
  report = to_jsonable(report)
  report["files"] = files
  write_json(files["json"], report)
  with open(files["md"], "w") as f:
    f.write(metrics_markdown(report["metrics"], title=title, dataset=dataset, model=model))
  write_csv(files["csv"], metrics_csv_rows(report["metrics"]))
  plots.plot_group_metrics(report["metrics"], files["png"], title=title)
  return report


# ----------------------------------------------------------------------------- comparison


_PAIRED_ROWS = (("accuracy", "Accuracy"),) + tuple(
    (k, n) for k, n in _FAIRNESS_ROWS if k in ("worst_group_accuracy", "mean_group_accuracy",
                                                "accuracy_gap", "accuracy_variance",
                                                "demographic_parity_difference",
                                                "equalized_odds_difference"))


def _paired_entries(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
  """(row name, entry) of one paired comparison: overall, fairness, then per group."""
  rows = [(name, result["overall"][k] if k == "accuracy" else result["fairness"].get(k))
          for k, name in _PAIRED_ROWS]
  rows += [(f"Accuracy of {g}", e) for g, e in result["groups"].items()]
  return [(name, e) for name, e in rows if e is not None]


def _paired_section(paired: Mapping[str, Any]) -> list[str]:
  """Markdown: every run's differences from the reference with paired 95% intervals."""
  ref = paired["reference"]
  lines = [f"## Paired differences from {ref} (same test images)", "",
           "Difference = run - reference; 95% paired-bootstrap interval (the images "
           "resampled once, both models scored on each resample, stratified by group). "
           "**yes** = the interval excludes 0.", ""]
  digits = lambda name: 5 if "variance" in name.lower() else 3
  for label, result in paired["runs"].items():
    rows = [[name, fmt(e["a"], digits(name)), fmt(e["b"], digits(name)),
             fmt_ci(e["difference"], e["ci"], digits(name)),
             "**yes**" if e["excludes_zero"] else "no"] for name, e in _paired_entries(result)]
    lines += [f"### {label} vs {ref}", "",
              md_table(["Metric", ref, label, "Difference [95% CI]", "Excludes 0"], rows), ""]
  for label, why in paired.get("skipped", {}).items():
    lines.append(f"- {label}: no paired comparison ({why}).")
  return lines


def compare_runs(reports: Mapping[str, Mapping[str, Any]], out_dir: str, *,
                 paired: Mapping[str, Any] | None = None) -> dict:
  """Side-by-side comparison of several reports (e.g. standard, balanced, DB-VAE).

  Args:
    reports: label -> report dict (as returned by ``write_report``/``load_report``).
    out_dir: folder for ``comparison.{json,md,csv,png}``.
    paired: ``{"reference": label, "runs": {label: paired.paired_differences result},
      "skipped": {label: why}}``: differences from the reference, written as a section
      of ``comparison.md`` and drawn in ``comparison_paired.png``.

  Returns:
    ``{"labels", "groups", "accuracy": {label: {group: acc}}, "accuracy_ci",
    "fairness": {label: {...}}, "overall": {label: acc}, "paired", "files"}``.
  """
  if not reports:
    raise ValueError("compare_runs needs at least one report")
  labels = list(reports)
  groups: list[str] = []
  for r in reports.values():
    groups += [g for g in r["metrics"]["groups"] if g not in groups]
  groups = sorted(groups)
  acc = {l: {g: (reports[l]["metrics"]["groups"].get(g) or {}).get("accuracy") for g in groups}
         for l in labels}
  acc_ci = {l: {g: (reports[l]["metrics"]["groups"].get(g) or {}).get("accuracy_ci") for g in groups}
            for l in labels}
  fair_keys = ["worst_group"] + [k for k, _ in _FAIRNESS_ROWS]
  fairness = {l: {k: reports[l]["metrics"]["fairness"].get(k) for k in fair_keys} for l in labels}
  overall = {l: reports[l]["metrics"]["overall"]["accuracy"] for l in labels}
  os.makedirs(out_dir, exist_ok=True)
  files = {k: os.path.join(out_dir, f"comparison.{k}") for k in ("json", "md", "csv", "png")}
  summary = to_jsonable({"labels": labels, "groups": groups, "accuracy": acc, "accuracy_ci": acc_ci,
                         "overall": overall, "fairness": fairness,
                         "models": {l: reports[l].get("model") for l in labels},
                         "paired": paired})
  if paired and paired.get("runs"):
    files["paired_png"] = os.path.join(out_dir, "comparison_paired.png")
  summary["files"] = files
  write_json(files["json"], summary)

  header = ["Group"] + labels
  rows = [[g] + [fmt_ci(acc[l][g], acc_ci[l][g]) for l in labels] for g in groups]
  rows.append(["**overall**"] + [fmt(overall[l]) for l in labels])
  frows = [["Worst group"] + [fairness[l]["worst_group"] or "n/a" for l in labels]]
  frows += [[name] + [fmt(fairness[l][k], 4) for l in labels] for k, name in _FAIRNESS_ROWS]
  md = ["# Comparison", "", "## Accuracy per group [95% CI]", "", md_table(header, rows), "",
        "## Fairness", "", md_table(["Metric"] + labels, frows), ""]
  if paired:
    md += _paired_section(paired)
  with open(files["md"], "w") as f:
    f.write("\n".join(md))
  csv_rows = [["group"] + labels]
  csv_rows += [[g] + [csv_value(as_float(acc[l][g])) for l in labels] for g in groups]
  csv_rows.append(["overall"] + [csv_value(as_float(overall[l])) for l in labels])
  csv_rows += [[k] + [csv_value(as_float(fairness[l][k])) for l in labels] for k, _ in _FAIRNESS_ROWS]
  write_csv(files["csv"], csv_rows)

  plots.plot_comparison(summary, files["png"])
  if "paired_png" in files:
    plots.plot_paired(paired, files["paired_png"])
  return summary
