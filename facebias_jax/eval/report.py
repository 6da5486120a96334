"""Evaluation reports: JSON/Markdown/CSV files and paper-style plots.

* ``write_report``: one model on one dataset -> ``report.json`` (the contract of
  DESIGN.md: ``group_metrics`` under ``"metrics"`` plus ``"dataset"``, ``"model"``,
  ``"config"``), ``report.md``, ``report.csv``, ``report_groups.png``.
* ``compare_runs``: several reports side by side (standard vs balanced vs DB-VAE).
* ``summarize_sweep`` / ``write_sweep``: the DB-VAE paper's table of mean accuracy
  over groups E[A] and variance across groups Var[A] per smoothing value alpha, with
  the spread over seeds.
* ``plot_training_curves``, ``plot_latent_histograms``, ``plot_extreme_samples``:
  training and DB-VAE diagnostics.

Plots use matplotlib's object API on an Agg canvas (no pyplot state), so they work
headless and never change the backend of a notebook that imports this module.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from facebias_jax import imaging

# Per-group columns of the CSV and Markdown tables, in order.
_GROUP_COLUMNS = ("n", "accuracy", "accuracy_ci", "tpr", "fpr", "selection_rate",
                  "tp", "fp", "tn", "fn", "small_sample")
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
_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


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


def _write_json(path: str, obj: Any) -> None:
  with open(path, "w") as f:
    # allow_nan=False guarantees strict JSON (to_jsonable already removed NaN).
    json.dump(to_jsonable(obj), f, indent=2, allow_nan=False)
    f.write("\n")


def load_report(path: str) -> dict:
  """Reads a ``report.json`` (a file, or a workdir holding one)."""
  if os.path.isdir(path):
    path = os.path.join(path, "report.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"No report at {path}: run `python -m experiments.evaluate "
                            f"--checkpoint=WORKDIR` (or train with evaluation) first")
  with open(path) as f:
    return json.load(f)


# ----------------------------------------------------------------------------- formatting


def _num(x: Any) -> float:
  """A value from a metrics dict (float, None for null) as float (NaN for missing)."""
  return math.nan if x is None else float(x)


def _fmt(x: Any, digits: int = 3) -> str:
  x = _num(x)
  return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def _fmt_ci(value: Any, ci: Sequence[Any] | None, digits: int = 3) -> str:
  if ci is None or any(math.isnan(_num(c)) for c in ci):
    return _fmt(value, digits)
  return f"{_fmt(value, digits)} [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def _describe(obj: Any) -> str:
  """One line for a dataset/model description (a dict or a string)."""
  if isinstance(obj, Mapping):
    return ", ".join(f"{k}={v}" for k, v in obj.items() if v not in (None, "", {}))
  return str(obj)


def _csv_value(x: Any) -> Any:
  if isinstance(x, float) and math.isnan(x):
    return ""
  return "" if x is None else x


def metrics_markdown(metrics: Mapping[str, Any], *, title: str = "Evaluation report",
                     dataset: Any = None, model: Any = None) -> str:
  """The Markdown body of ``report.md``: per-group table and fairness summary."""
  parts = [f"# {title}", ""]
  if model is not None:
    parts.append(f"- **Model:** {_describe(model)}")
  if dataset is not None:
    parts.append(f"- **Dataset:** {_describe(dataset)}")
  o = metrics["overall"]
  parts += [f"- **Overall:** n={o['n']}, accuracy {_fmt_ci(o['accuracy'], o.get('accuracy_ci'))}, "
            f"TPR {_fmt(o['tpr'])}, FPR {_fmt(o['fpr'])}, selection rate {_fmt(o['selection_rate'])}",
            "", "## Per group", ""]
  rows = []
  for name, g in metrics["groups"].items():
    flags = []
    if g.get("small_sample"):
      flags.append("small sample")
    if g.get("in_fairness") is False:
      flags.append("not in fairness summary")
    rows.append([name, g["n"], _fmt_ci(g["accuracy"], g.get("accuracy_ci")), _fmt(g["tpr"]),
                 _fmt(g["fpr"]), _fmt(g["selection_rate"]), "; ".join(flags)])
  parts += [_md_table(["Group", "n", "Accuracy [95% CI]", "TPR", "FPR", "Selection rate", "Note"],
                      rows), "", "## Fairness", ""]
  f = metrics["fairness"]
  frows = [["Worst group", f.get("worst_group") or "n/a"]]
  frows += [[label, _fmt_ci(f.get(key), f.get(f"{key}_ci"), 4)] for key, label in _FAIRNESS_ROWS]
  parts += [_md_table(["Metric", "Value [95% CI]"], frows), ""]
  s = metrics.get("settings", {})
  if s:
    parts.append(f"CIs: {int(s.get('ci_level', 0.95) * 100)}% percentile bootstrap within groups "
                 f"({s.get('n_boot')} resamples, seed {s.get('seed')}); groups with n < "
                 f"{s.get('small_sample_size')} use a Wilson interval. Undefined rates (no "
                 f"positives/negatives) are n/a and {'ignored' if s.get('undefined_rates') == 'ignore' else 'counted as 0'} "
                 f"in the differences. Threshold {s.get('threshold')}.")
    parts.append("")
  return "\n".join(parts)


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
  return [[_csv_value(c) for c in row] for row in rows]


def _write_csv(path: str, rows: Sequence[Sequence[Any]]) -> None:
  with open(path, "w", newline="") as f:
    csv.writer(f).writerows(rows)


# ----------------------------------------------------------------------------- plots


def _new_figure(width: float, height: float) -> Figure:
  fig = Figure(figsize=(width, height), dpi=150)
  FigureCanvasAgg(fig)
  return fig


def _save_figure(fig: Figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path)
  return path


def _ci_errors(values: np.ndarray, cis: np.ndarray) -> np.ndarray:
  """[2, G] asymmetric error-bar lengths (0 where the CI is missing)."""
  lo = np.nan_to_num(values - cis[:, 0], nan=0.0)
  hi = np.nan_to_num(cis[:, 1] - values, nan=0.0)
  return np.maximum(np.stack([lo, hi]), 0.0)


def plot_group_metrics(metrics: Mapping[str, Any], out_png: str, *, title: str = "") -> str:
  """Two panels: per-group accuracy with 95% CI whiskers; TPR, FPR, selection rate."""
  names = list(metrics["groups"])
  groups = [metrics["groups"][k] for k in names]
  acc = np.array([_num(g["accuracy"]) for g in groups])
  cis = np.array([[_num(c) for c in (g.get("accuracy_ci") or [None, None])] for g in groups])
  x = np.arange(len(names))
  ticks = [f"{n.replace('_', chr(10))}\nn={g['n']}" for n, g in zip(names, groups)]
  fig = _new_figure(max(8.0, 1.8 * len(names) + 3.0), 4.6)
  ax1, ax2 = fig.subplots(1, 2)
  bars = ax1.bar(x, acc, yerr=_ci_errors(acc, cis), color=_COLORS[0], capsize=4, edgecolor="black",
                 linewidth=0.5, error_kw={"linewidth": 1.0})
  small = [g.get("small_sample", False) for g in groups]
  for bar, is_small in zip(bars, small):
    if is_small:  # hatched: few examples, Wilson interval.
      bar.set_hatch("//")
      bar.set_facecolor("#A9BCD8")
  overall = _num(metrics["overall"]["accuracy"])
  line = ax1.axhline(overall, color="gray", linestyle="--", linewidth=1)
  handles = [Patch(facecolor=_COLORS[0], edgecolor="black", label="bootstrap CI"),
             line]
  labels = ["bootstrap CI", f"overall ({overall:.3f})"]
  if any(small):
    handles.insert(1, Patch(facecolor="#A9BCD8", hatch="//", edgecolor="black"))
    labels.insert(1, "n < %d (Wilson CI)" % metrics.get("settings", {}).get("small_sample_size", 30))
  ax1.set_xticks(x, ticks, fontsize=9)
  ax1.set_ylim(0, 1.2)
  ax1.set_yticks(np.linspace(0, 1, 6))
  ax1.set_ylabel("Accuracy", fontsize=11)
  ax1.set_title("Accuracy per group (95% CI)", fontsize=11)
  ax1.legend(handles, labels, loc="upper center", fontsize=8, ncol=3, framealpha=0.9)
  ax1.grid(axis="y", alpha=0.3)
  width = 0.26
  for j, (key, label) in enumerate((("tpr", "TPR"), ("fpr", "FPR"), ("selection_rate", "Selection rate"))):
    vals = np.array([_num(g[key]) for g in groups])
    ax2.bar(x + (j - 1) * width, np.nan_to_num(vals), width, label=label, color=_COLORS[j + 1],
            edgecolor="black", linewidth=0.5)
  ax2.set_xticks(x, ticks, fontsize=9)
  ax2.set_ylim(0, 1.2)
  ax2.set_yticks(np.linspace(0, 1, 6))
  ax2.set_ylabel("Rate", fontsize=11)
  ax2.set_title("Rates per group (n/a drawn as 0)", fontsize=11)
  ax2.legend(fontsize=8, loc="upper center", ncol=3, framealpha=0.9)
  ax2.grid(axis="y", alpha=0.3)
  f = metrics["fairness"]
  summary = (f"worst group {f.get('worst_group')} ({_fmt(f.get('worst_group_accuracy'))}), "
             f"gap {_fmt(f.get('accuracy_gap'))}, Var[A] {_fmt(f.get('accuracy_variance'), 4)}, "
             f"EOD {_fmt(f.get('equalized_odds_difference'))}")
  fig.suptitle(f"{title}\n{summary}" if title else summary, fontsize=10)
  return _save_figure(fig, out_png)


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
  _write_json(files["json"], report)
  with open(files["md"], "w") as f:
    f.write(metrics_markdown(report["metrics"], title=title, dataset=dataset, model=model))
  _write_csv(files["csv"], metrics_csv_rows(report["metrics"]))
  plot_group_metrics(report["metrics"], files["png"], title=title)
  return report


# ----------------------------------------------------------------------------- comparison


def compare_runs(reports: Mapping[str, Mapping[str, Any]], out_dir: str) -> dict:
  """Side-by-side comparison of several reports (e.g. standard, balanced, DB-VAE).

  Args:
    reports: label -> report dict (as returned by ``write_report``/``load_report``).
    out_dir: folder for ``comparison.{json,md,csv,png}``.

  Returns:
    ``{"labels", "groups", "accuracy": {label: {group: acc}}, "accuracy_ci",
    "fairness": {label: {...}}, "overall": {label: acc}, "files"}``.
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
                         "models": {l: reports[l].get("model") for l in labels}})
  summary["files"] = files
  _write_json(files["json"], summary)

  header = ["Group"] + labels
  rows = [[g] + [_fmt_ci(acc[l][g], acc_ci[l][g]) for l in labels] for g in groups]
  rows.append(["**overall**"] + [_fmt(overall[l]) for l in labels])
  frows = [["Worst group"] + [fairness[l]["worst_group"] or "n/a" for l in labels]]
  frows += [[name] + [_fmt(fairness[l][k], 4) for l in labels] for k, name in _FAIRNESS_ROWS]
  md = ["# Comparison", "", "## Accuracy per group [95% CI]", "", _md_table(header, rows), "",
        "## Fairness", "", _md_table(["Metric"] + labels, frows), ""]
  with open(files["md"], "w") as f:
    f.write("\n".join(md))
  csv_rows = [["group"] + labels]
  csv_rows += [[g] + [_csv_value(_num(acc[l][g])) for l in labels] for g in groups]
  csv_rows.append(["overall"] + [_csv_value(_num(overall[l])) for l in labels])
  csv_rows += [[k] + [_csv_value(_num(fairness[l][k])) for l in labels] for k, _ in _FAIRNESS_ROWS]
  _write_csv(files["csv"], csv_rows)

  fig = _new_figure(max(7.0, 1.2 * len(groups) * max(1, len(labels)) / 2 + 3), 4.5)
  ax = fig.subplots()
  x = np.arange(len(groups))
  width = 0.8 / len(labels)
  for j, l in enumerate(labels):
    vals = np.array([_num(acc[l][g]) for g in groups])
    cis = np.array([[_num(c) for c in (acc_ci[l][g] or [None, None])] for g in groups])
    ax.bar(x + (j - (len(labels) - 1) / 2) * width, np.nan_to_num(vals), width,
           yerr=_ci_errors(vals, cis), capsize=3, color=_COLORS[j % len(_COLORS)],
           edgecolor="black", linewidth=0.5,
           label=f"{l} (worst {_fmt(fairness[l]['worst_group_accuracy'])}, "
                 f"Var[A] {_fmt(fairness[l]['accuracy_variance'], 4)})")
  ax.set_xticks(x, [g.replace("_", "\n") for g in groups], fontsize=10)
  ax.set_ylim(0, 1.15 + 0.07 * len(labels))  # headroom for the legend above the bars.
  ax.set_yticks(np.linspace(0, 1, 6))
  ax.set_ylabel("Accuracy", fontsize=11)
  ax.set_title("Accuracy per group (95% CI)", fontsize=12)
  ax.legend(fontsize=8, loc="upper center", ncol=min(3, len(labels)), framealpha=0.9)
  ax.grid(axis="y", alpha=0.3)
  _save_figure(fig, files["png"])
  return summary


# ----------------------------------------------------------------------------- alpha sweep


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  vals = np.array([_num(v) for v in values], np.float64)
  vals = vals[~np.isnan(vals)]
  if vals.size == 0:
    return math.nan, math.nan
  # Sample std across seeds (ddof=1) when there are several; 0 for a single seed.
  return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0


def summarize_sweep(reports: Mapping[Any, Sequence[Mapping[str, Any]]]) -> dict:
  """The DB-VAE paper's table: E[A] and Var[A] per smoothing value, spread over seeds.

  Args:
    reports: alpha -> list of reports (one per seed), each holding ``"metrics"``.

  Returns:
    ``{"rows": [{"alpha", "num_seeds", "mean_accuracy", "mean_accuracy_std",
    "accuracy_variance", "accuracy_variance_std", "worst_group_accuracy",
    "worst_group_accuracy_std", "overall_accuracy", "overall_accuracy_std",
    "group_accuracy": {group: [mean, std]}}], "groups": [...]}``, rows sorted by alpha.
    E[A] is the mean of the per-group accuracies of one run, Var[A] their population
    variance; both are then averaged over seeds, with the sample std across seeds.
  """
  if not reports:
    raise ValueError("summarize_sweep needs at least one alpha with reports")
  rows, all_groups = [], set()
  for alpha in sorted(reports, key=float):
    runs = list(reports[alpha])
    if not runs:
      raise ValueError(f"summarize_sweep: no reports for alpha={alpha}")
    fair = [r["metrics"]["fairness"] for r in runs]
    row: dict[str, Any] = {"alpha": float(alpha), "num_seeds": len(runs)}
    for key, src in (("mean_accuracy", "mean_group_accuracy"),
                     ("accuracy_variance", "accuracy_variance"),
                     ("worst_group_accuracy", "worst_group_accuracy")):
      row[key], row[f"{key}_std"] = _mean_std([f.get(src) for f in fair])
    row["overall_accuracy"], row["overall_accuracy_std"] = _mean_std(
        [r["metrics"]["overall"]["accuracy"] for r in runs])
    groups = sorted({g for r in runs for g, b in r["metrics"]["groups"].items()
                     if b.get("in_fairness", True)})
    all_groups.update(groups)
    row["group_accuracy"] = {
        g: list(_mean_std([(r["metrics"]["groups"].get(g) or {}).get("accuracy") for r in runs]))
        for g in groups}
    rows.append(row)
  return to_jsonable({"rows": rows, "groups": sorted(all_groups)})


def write_sweep(summary: Mapping[str, Any], out_dir: str, *, title: str = "DB-VAE smoothing sweep") -> dict:
  """Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` (E[A], Var[A] vs alpha)."""
  os.makedirs(out_dir, exist_ok=True)
  files = {k: os.path.join(out_dir, f"sweep.{k}") for k in ("json", "md", "png")}
  summary = dict(summary)
  summary["files"] = files
  _write_json(files["json"], summary)
  rows = summary["rows"]

  def pm(row: Mapping[str, Any], key: str, scale: float = 1.0, digits: int = 2) -> str:
    m, s = _num(row[key]) * scale, _num(row[f"{key}_std"]) * scale
    return "n/a" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"

  table = [[f"{r['alpha']:g}", r["num_seeds"], pm(r, "mean_accuracy", 100), pm(r, "accuracy_variance", 1e4),
            pm(r, "worst_group_accuracy", 100), pm(r, "overall_accuracy", 100)] for r in rows]
  groups = summary.get("groups", [])
  gtable = [[f"{r['alpha']:g}"] + [
      "n/a" if r["group_accuracy"].get(g) is None or r["group_accuracy"][g][0] is None
      else f"{100 * r['group_accuracy'][g][0]:.2f} ± {100 * (r['group_accuracy'][g][1] or 0):.2f}"
      for g in groups] for r in rows]
  md = [f"# {title}", "",
        "Mean over seeds ± std across seeds. E[A]: mean of the per-group accuracies (%); "
        "Var[A]: their population variance in %² (the variance of fractions x 1e4), "
        "as in the DB-VAE paper's tables.", "",
        _md_table(["alpha", "seeds", "E[A] (%)", "Var[A] (%²)", "Worst group (%)", "Overall (%)"],
                  table), "", "## Accuracy per group (%)", "",
        _md_table(["alpha"] + groups, gtable), ""]
  with open(files["md"], "w") as f:
    f.write("\n".join(md))

  alphas = np.array([r["alpha"] for r in rows])
  fig = _new_figure(10, 4)
  ax1, ax2 = fig.subplots(1, 2)
  for ax, key, scale, label, color in (
      (ax1, "mean_accuracy", 100, "E[A]: mean accuracy over groups (%)", _COLORS[0]),
      (ax2, "accuracy_variance", 1e4, "Var[A]: variance across groups (%²)", _COLORS[3])):
    m = np.array([_num(r[key]) for r in rows]) * scale
    s = np.nan_to_num(np.array([_num(r[f"{key}_std"]) for r in rows]) * scale)
    ax.errorbar(alphas, m, yerr=s, marker="o", capsize=4, color=color, linewidth=1.5)
    if len(alphas) > 1 and np.all(alphas > 0):
      ax.set_xscale("log")
    ax.set_xlabel("Smoothing alpha", fontsize=11)
    ax.set_ylabel(label, fontsize=10)
    ax.grid(alpha=0.3)
  ax1.set_title("Mean accuracy (higher is better)", fontsize=11)
  ax2.set_title("Accuracy variance (lower is fairer)", fontsize=11)
  seeds = sorted({r["num_seeds"] for r in rows})
  fig.suptitle(f"{title} (mean ± std over {'/'.join(map(str, seeds))} seeds)", fontsize=12)
  _save_figure(fig, files["png"])
  return summary


# ----------------------------------------------------------------------------- training curves


def read_metrics_jsonl(path: str) -> list[dict]:
  """Reads a ``metrics.jsonl`` (one JSON object per line); skips blank/corrupt lines."""
  if os.path.isdir(path):
    path = os.path.join(path, "metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"No metrics file at {path}: the train loop writes WORKDIR/metrics.jsonl")
  records = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:
        continue  # a run killed mid-write leaves a truncated last line.
      if isinstance(rec, dict) and "step" in rec:
        records.append(rec)
  return records


def _curve_panels(keys: Iterable[str]) -> list[tuple[str, list[str]]]:
  """Groups metric names into panels: losses, accuracies, anything else numeric."""
  keys = sorted(keys)
  loss = [k for k in keys if "loss" in k.lower() or k.lower().split("/")[-1] in ("kl", "recon",
                                                                                  "reconstruction")]
  acc = [k for k in keys if "acc" in k.lower() and k not in loss]
  panels = [("Loss", loss), ("Accuracy", acc)]
  return [(t, ks) for t, ks in panels if ks]


def plot_training_curves(paths: str | Sequence[str] | Mapping[str, str], out_png: str) -> str:
  """Loss and accuracy vs step from one or several ``metrics.jsonl`` files.

  Args:
    paths: a path (file or workdir), a list of them, or label -> path.
    out_png: output image.

  Returns:
    ``out_png``. Missing keys in some lines are skipped; raises ValueError when no
    loss or accuracy metric is found at all.
  """
  if isinstance(paths, str):
    paths = [paths]
  if not isinstance(paths, Mapping):
    paths = {os.path.basename(os.path.normpath(os.path.dirname(p) if p.endswith(".jsonl") else p)) or p: p
             for p in paths}
  runs = {label: read_metrics_jsonl(p) for label, p in paths.items()}
  keys = {k for recs in runs.values() for r in recs for k, v in r.items()
          if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
  panels = _curve_panels(keys)
  if not panels:
    raise ValueError(f"No loss or accuracy metrics found in {list(paths.values())} "
                     f"(keys seen: {sorted(keys)})")
  fig = _new_figure(5.5 * len(panels), 4)
  axes = np.atleast_1d(fig.subplots(1, len(panels)))
  styles = ("-", "--", ":", "-.")
  for ax, (title, ks) in zip(axes, panels):
    for ri, (label, recs) in enumerate(runs.items()):
      for ki, k in enumerate(ks):
        pts = [(r["step"], r[k]) for r in recs if isinstance(r.get(k), (int, float))
               and r[k] is not None and math.isfinite(r[k])]
        if not pts:
          continue
        steps, vals = zip(*pts)
        name = k if len(runs) == 1 else f"{label}: {k}"
        ax.plot(steps, vals, styles[ri % len(styles)], color=_COLORS[ki % len(_COLORS)],
                label=name, linewidth=1.4, marker="o" if len(pts) < 15 else None, markersize=3)
    ax.set_xlabel("Step", fontsize=11)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(title, fontsize=11)
    ax.set_title(f"{title} vs step", fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  return _save_figure(fig, out_png)


# ----------------------------------------------------------------------------- DB-VAE diagnostics


def _split_histograms(histograms: Any) -> tuple[np.ndarray, np.ndarray]:
  """(densities [D, bins], edges [D, bins+1]) from a tuple (either order) or a dict."""
  if isinstance(histograms, Mapping):
    dens = next((histograms[k] for k in histograms if "dens" in k or k in ("hist", "counts")), None)
    edges = next((histograms[k] for k in histograms if "edge" in k), None)
    if dens is None or edges is None:
      raise ValueError(f"latent histograms dict needs density and edge arrays, got keys {list(histograms)}")
    pair = (dens, edges)
  else:
    pair = tuple(histograms)
    if len(pair) != 2:
      raise ValueError("latent histograms must be (densities [D, bins], edges [D, bins+1])")
  a, b = (np.asarray(x, np.float64) for x in pair)
  if a.ndim == 1:
    a, b = a[None], b[None]
  if b.shape[-1] == a.shape[-1] - 1:
    a, b = b, a
  if a.ndim != 2 or b.shape != (a.shape[0], a.shape[1] + 1):
    raise ValueError(f"latent histograms: expected densities [D, bins] and edges [D, bins+1], "
                     f"got shapes {a.shape} and {b.shape}")
  return a, b


def plot_latent_histograms(histograms: Any, out_png: str, *, max_dims: int = 16,
                           title: str = "DB-VAE latent histograms over training faces") -> str:
  """Per-latent-dimension histograms, the density the DB-VAE resamples against.

  Args:
    histograms: ``(densities [D, bins], edges [D, bins+1])`` (either order) or a dict
      with keys containing ``dens`` and ``edge``.
    out_png: output image.
    max_dims: plots the first ``max_dims`` dimensions.
    title: figure title.
  """
  dens, edges = _split_histograms(histograms)
  d = min(len(dens), max_dims)
  ncols = min(4, d)
  nrows = int(math.ceil(d / ncols))
  fig = _new_figure(3.0 * ncols, 2.3 * nrows + 0.6)
  axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
  for i, ax in enumerate(axes):
    if i >= d:
      ax.axis("off")
      continue
    widths = np.diff(edges[i])
    ax.bar(edges[i][:-1], dens[i], width=widths, align="edge", color=_COLORS[0],
           edgecolor="black", linewidth=0.4)
    ax.set_title(f"z[{i}]", fontsize=10)
    ax.tick_params(labelsize=7)
    if i % ncols == 0:
      ax.set_ylabel("density", fontsize=9)
    if i // ncols == nrows - 1:
      ax.set_xlabel("latent mean", fontsize=9)
  suffix = f" (first {d} of {len(dens)} dims)" if d < len(dens) else ""
  fig.suptitle(title + suffix, fontsize=12)
  return _save_figure(fig, out_png)


def _to_uint8(images: Any) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  if images.min() >= 0.0 and images.max() <= 1.0:
    images = images * 255.0
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def plot_extreme_samples(images_low: Any, images_high: Any, out_png: str, *,
                         probs_low: Sequence[float] | None = None,
                         probs_high: Sequence[float] | None = None, scale: int | None = None) -> str:
  """Two rows of training faces: lowest and highest DB-VAE sampling probability.

  Args:
    images_low: [N, H, W, 3] faces with the lowest probability (uint8, or floats in [0, 1]).
    images_high: [M, H, W, 3] faces with the highest probability.
    out_png: output image (PNG/JPG).
    probs_low / probs_high: optional probabilities, shown as captions.
    scale: integer upscaling of the tiles (default: up to ~96 px tiles).

  Returns:
    ``out_png``.
  """
  low, high = _to_uint8(images_low), _to_uint8(images_high)
  if low.ndim != 4 or high.ndim != 4 or low.shape[1:] != high.shape[1:]:
    raise ValueError(f"plot_extreme_samples needs two [N, H, W, 3] stacks of one image size, "
                     f"got {low.shape} and {high.shape}")
  scale = scale or max(1, 96 // low.shape[1])
  ncols = max(len(low), len(high))

  def captions(prefix: str, probs: Sequence[float] | None, n: int) -> list[str]:
    if probs is None:
      return [f"{prefix} {i + 1}" for i in range(n)]
    return [f"{p:.1e}" for p in probs]

  def row(images: np.ndarray, labels: list[str]) -> np.ndarray:
    pad = ncols - len(images)
    if pad:  # fill a shorter row with blank tiles so both rows align.
      images = np.concatenate([images, np.full((pad,) + images.shape[1:], 255, np.uint8)])
      labels = labels + [""] * pad
    return imaging.tile_grid(images, labels, ncols=ncols, scale=scale)

  top = row(high, captions("high", probs_high, len(high)))
  bottom = row(low, captions("low", probs_low, len(low)))
  fig = _new_figure(max(6.0, 0.9 * ncols * scale * low.shape[2] / 64), 5.0)
  ax1, ax2 = fig.subplots(2, 1)
  for ax, img, t in ((ax1, top, "Highest sampling probability (rare in the latent space)"),
                     (ax2, bottom, "Lowest sampling probability (common in the latent space)")):
    ax.imshow(img)
    ax.set_title(t, fontsize=11)
    ax.axis("off")
  fig.suptitle("DB-VAE resampling: training faces at the extremes", fontsize=12)
  return _save_figure(fig, out_png)
