"""Results over seeds: mean, spread and a 95% interval per setting, as tables and plots.

Single runs in this field are routinely compared by eye; a setting (a smoothing value,
a training method) is instead summarised over its seeds by the mean, the sample
standard deviation (ddof=1) and the 95% Student-t interval of the mean
(``mean ± t_{0.975, n-1} s / sqrt(n)``; none for one seed).

* ``summarize_sweep`` / ``write_sweep``: the DB-VAE paper's table, E[A] (mean accuracy
  over groups) and Var[A] (variance across groups) per smoothing value alpha.
* ``summarize_methods`` / ``write_methods``: the group-robustness table, worst-group and
  average accuracy per training method, per-group accuracies, the selected epoch.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from facebias_jax.eval import plots
from facebias_jax.eval.formatting import as_float, csv_value, md_table
from facebias_jax.eval.report import write_csv, to_jsonable, write_json


def mean_std(values: Sequence[Any]) -> tuple[float, float]:
  """Mean and sample std (ddof=1; 0 for one value) of the non-missing values."""
  vals = _finite(values)
  if vals.size == 0:
    return math.nan, math.nan
  return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0


def t_interval(values: Sequence[Any], level: float = 0.95) -> list[float]:
  """The Student-t interval of the mean over seeds; NaNs for fewer than two values."""
  vals = _finite(values)
  if vals.size < 2:
    return [math.nan, math.nan]
  half = (scipy_stats.t.ppf(0.5 + level / 2, vals.size - 1) * vals.std(ddof=1)
          / math.sqrt(vals.size))
  return [float(vals.mean() - half), float(vals.mean() + half)]


def _finite(values: Sequence[Any]) -> np.ndarray:
  vals = np.array([as_float(v) for v in values], np.float64)
  return vals[~np.isnan(vals)]


def _put(row: dict, key: str, values: Sequence[Any]) -> None:
  """``row[key]``, ``key_std``, ``key_ci`` and ``key_values`` of one quantity."""
  row[key], row[f"{key}_std"] = mean_std(values)
  row[f"{key}_ci"] = t_interval(values)
  row[f"{key}_values"] = [as_float(v) for v in values]


def _seed_row(runs: Sequence[Mapping[str, Any]]) -> tuple[dict, list[str]]:
  """The statistics every summary shares, from one setting's reports (one per seed)."""
  fair = [r["metrics"]["fairness"] for r in runs]
  row: dict[str, Any] = {"num_seeds": len(runs)}
  for key, src in (("mean_accuracy", "mean_group_accuracy"),
                   ("accuracy_variance", "accuracy_variance"),
                   ("worst_group_accuracy", "worst_group_accuracy")):
    _put(row, key, [f.get(src) for f in fair])
  _put(row, "overall_accuracy", [r["metrics"]["overall"]["accuracy"] for r in runs])
  groups = sorted({g for r in runs for g, b in r["metrics"]["groups"].items()
                   if b.get("in_fairness", True)})
  row["group_accuracy"] = {
      g: list(mean_std([(r["metrics"]["groups"].get(g) or {}).get("accuracy") for r in runs]))
      for g in groups}
  return row, groups


def _pm(row: Mapping[str, Any], key: str, scale: float = 1.0, digits: int = 2) -> str:
  m, s = as_float(row[key]) * scale, as_float(row[f"{key}_std"]) * scale
  return "n/a" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def _ci(row: Mapping[str, Any], key: str, scale: float = 100.0) -> str:
  lo, hi = (as_float(c) * scale for c in row.get(f"{key}_ci", (None, None)))
  return "n/a" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"


def _group_cells(row: Mapping[str, Any], groups: Sequence[str]) -> list[str]:
  cells = []
  for g in groups:
    m, s = row["group_accuracy"].get(g) or (None, None)
    cells.append("n/a" if m is None or math.isnan(as_float(m))
                 else f"{100 * m:.2f} ± {100 * as_float(s or 0):.2f}")
  return cells


def _files(out_dir: str, stem: str, kinds: Sequence[str]) -> dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  return {k: os.path.join(out_dir, f"{stem}.{k}") for k in kinds}


# ----------------------------------------------------------------------------- alpha sweep


def summarize_sweep(reports: Mapping[Any, Sequence[Mapping[str, Any]]]) -> dict:
  """The DB-VAE paper's table: E[A] and Var[A] per smoothing value, spread over seeds.

  Args:
    reports: alpha -> list of reports (one per seed), each holding ``"metrics"``.

  Returns:
    ``{"rows": [{"alpha", "num_seeds", "mean_accuracy", "mean_accuracy_std",
    "mean_accuracy_ci", "accuracy_variance", ..., "worst_group_accuracy", ...,
    "overall_accuracy", ..., "group_accuracy": {group: [mean, std]}}], "groups": [...]}``,
    rows sorted by alpha. E[A] is the mean of the per-group accuracies of one run,
    Var[A] their population variance; both are then averaged over seeds.
  """
  if not reports:
    raise ValueError("summarize_sweep needs at least one alpha with reports")
  rows, all_groups = [], set()
  for alpha in sorted(reports, key=float):
    runs = list(reports[alpha])
    if not runs:
      raise ValueError(f"summarize_sweep: no reports for alpha={alpha}")
    row, groups = _seed_row(runs)
    rows.append({"alpha": float(alpha), **row})
    all_groups.update(groups)
  return to_jsonable({"rows": rows, "groups": sorted(all_groups)})


def write_sweep(summary: Mapping[str, Any], out_dir: str, *,
                title: str = "DB-VAE smoothing sweep") -> dict:
  """Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` (E[A], Var[A] vs alpha)."""
  files = _files(out_dir, "sweep", ("json", "md", "png"))
  summary = dict(summary, files=files)
  write_json(files["json"], summary)
  rows, groups = summary["rows"], summary.get("groups", [])
  table = [[f"{r['alpha']:g}", r["num_seeds"], _pm(r, "mean_accuracy", 100),
            _pm(r, "accuracy_variance", 1e4), _pm(r, "worst_group_accuracy", 100),
            _pm(r, "overall_accuracy", 100)] for r in rows]
  gtable = [[f"{r['alpha']:g}"] + _group_cells(r, groups) for r in rows]
  md = [f"# {title}", "",
        "Mean over seeds ± std across seeds. E[A]: mean of the per-group accuracies (%); "
        "Var[A]: their population variance in %² (the variance of fractions x 1e4), "
        "as in the DB-VAE paper's tables.", "",
        md_table(["alpha", "seeds", "E[A] (%)", "Var[A] (%²)", "Worst group (%)", "Overall (%)"],
                 table), "", "## Accuracy per group (%)", "",
        md_table(["alpha"] + list(groups), gtable), ""]
  with open(files["md"], "w") as f:
    f.write("\n".join(md))
  plots.plot_sweep(rows, files["png"], title=title)
  return summary


# ----------------------------------------------------------------------------- methods


def _selected_epoch(rep: Mapping[str, Any], steps_per_epoch: int | None) -> float:
  """The epoch of the checkpoint a run selected: its step over ``steps_per_epoch``
  (default the run's own epoch length)."""
  step = (rep.get("selection") or {}).get("step")
  per_epoch = steps_per_epoch or (rep.get("training") or {}).get("steps_per_epoch")
  return math.nan if step is None or not per_epoch else float(step) / float(per_epoch)


def summarize_methods(reports: Mapping[str, Sequence[Mapping[str, Any]]], *,
                      train_shares: Mapping[str, float] | None = None,
                      steps_per_epoch: int | None = None) -> dict:
  """Worst-group and average accuracy per training method over seeds.

  Args:
    reports: method -> reports of its runs (one per seed), in the order to list them.
    train_shares: each group's share of the training split. The *average accuracy*
      is then the test group accuracies weighted by these shares, the convention of
      Sagawa et al. (2020) when the test split is balanced over groups (as the
      synthetic benchmark's and PPB's are); without shares it is the plain test
      accuracy.
    steps_per_epoch: the unit of ``selected_epoch`` when the methods' epochs differ in
      length (the comparison's ERM epoch); default each run's own epoch.

  Returns:
    ``{"rows": [...], "groups": [...], "ranking": [methods by mean worst-group
    accuracy, best first]}``; each row holds ``method``, ``num_seeds``, for
    ``worst_group_accuracy``, ``average_accuracy``, ``mean_accuracy`` (E[A]),
    ``overall_accuracy``, ``accuracy_variance`` and ``selected_epoch`` the mean,
    ``_std``, ``_ci`` (95% t interval) and ``_values`` (per seed), plus
    ``group_accuracy`` {group: [mean, std]} and ``train_time_s`` (summed over seeds).
  """
  if not reports:
    raise ValueError("summarize_methods needs at least one method with reports")
  rows, all_groups = [], set()
  for method, runs in reports.items():
    runs = list(runs)
    if not runs:
      raise ValueError(f"summarize_methods: no reports for method {method!r}")
    row, groups = _seed_row(runs)
    all_groups.update(groups)
    if train_shares:
      averages = [_weighted_accuracy(r, train_shares) for r in runs]
    else:
      averages = [r["metrics"]["overall"]["accuracy"] for r in runs]
    _put(row, "average_accuracy", averages)
    _put(row, "selected_epoch", [_selected_epoch(r, steps_per_epoch) for r in runs])
    row["train_time_s"] = float(sum(as_float((r.get("training") or {}).get("wall_time_s", 0))
                                    for r in runs))
    rows.append({"method": method, **row})
  ranking = [r["method"] for r in sorted(rows, key=lambda r: -np.nan_to_num(
      as_float(r["worst_group_accuracy"]), nan=-1.0))]
  return to_jsonable({"rows": rows, "groups": sorted(all_groups), "ranking": ranking,
                      "average_accuracy": ("test group accuracies weighted by the training "
                                           "split's group shares" if train_shares else
                                           "test accuracy")})


def _weighted_accuracy(rep: Mapping[str, Any], shares: Mapping[str, float]) -> float:
  groups = rep["metrics"]["groups"]
  known = {g: w for g, w in shares.items() if g in groups}
  total = sum(known.values())
  if not total:
    return math.nan
  return float(sum(w * as_float(groups[g]["accuracy"]) for g, w in known.items()) / total)


def write_methods(summary: Mapping[str, Any], out_dir: str, *,
                  title: str = "Training methods compared") -> dict:
  """Writes ``methods.{json,md,csv,png}``: the table, per-group accuracies and the plot."""
  files = _files(out_dir, "methods", ("json", "md", "csv", "png"))
  summary = dict(summary, files=files)
  write_json(files["json"], summary)
  rows, groups = summary["rows"], summary.get("groups", [])
  seeds = sorted({r["num_seeds"] for r in rows})
  table = [[r["method"], r["num_seeds"], _pm(r, "worst_group_accuracy", 100),
            _ci(r, "worst_group_accuracy"), _pm(r, "average_accuracy", 100),
            _ci(r, "average_accuracy"), _pm(r, "mean_accuracy", 100),
            _pm(r, "selected_epoch", 1.0, 1)] for r in rows]
  md = [f"# {title}", "",
        f"Mean ± std over {'/'.join(map(str, seeds))} seeds, and the 95% t interval of the "
        f"mean. Average accuracy: {summary.get('average_accuracy', 'test accuracy')}. E[A]: "
        "mean of the per-group test accuracies. Selected epoch: the checkpoint chosen by "
        "validation.", "",
        md_table(["Method", "Seeds", "Worst group (%)", "95% CI", "Average (%)", "95% CI",
                  "E[A] (%)", "Selected epoch"], table), "",
        "Ranking by mean worst-group accuracy: " + " > ".join(summary.get("ranking", [])), "",
        "## Accuracy per group (%)", "",
        md_table(["Method"] + list(groups), [[r["method"]] + _group_cells(r, groups)
                                             for r in rows]), ""]
  with open(files["md"], "w") as f:
    f.write("\n".join(md))
  keys = ("worst_group_accuracy", "average_accuracy", "mean_accuracy", "selected_epoch")
  header = ["method", "num_seeds"] + [f"{k}{s}" for k in keys for s in ("", "_std")]
  header += [f"accuracy_{g}" for g in groups]
  csv_rows = [header] + [
      [r["method"], r["num_seeds"]] + [csv_value(as_float(r[f"{k}{s}"])) for k in keys
                                       for s in ("", "_std")]
      + [csv_value(as_float((r["group_accuracy"].get(g) or [None])[0])) for g in groups]
      for r in rows]
  write_csv(files["csv"], csv_rows)
  plots.plot_methods(rows, groups, files["png"], title=title)
  return summary
