"""Dataset analysis: how many examples each demographic group has, and how unequal.

:func:`analyze` works on attribute arrays alone (counts and fractions per
attribute value, and per group for each group spec such as ``"skin,Male"``) and
builds the imbalance table: per group ``n``, ``share`` of the split and ``ratio``
to the largest group. :func:`write_analysis` adds the files a researcher looks at
(``analysis.json``, ``analysis.md``, one sample grid per group and a bar plot of
group shares); :func:`run_analysis` loads a TFDS split first and is what
``experiments/analyze_dataset.py`` calls. Any builder whose records carry
integer attributes works (synthetic set, CelebA, PPB, UTKFace, FairFace).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import cv2
import ml_collections
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from facebias_jax import imaging
from facebias_jax.data import groups as groups_lib
from facebias_jax.data import sources

UNKNOWN_VALUE = -1
THUMB_SIZE = 96  # Grid tiles are resized to this side so any dataset tiles evenly.


# Attributes with more distinct values than this (identities, file ids) are summarised:
# their count of distinct values and the most frequent ones, not a row per value.
MAX_LISTED_VALUES = 20
TOP_VALUES = 10


def _value_key(value: Any, names: Sequence[str] | None = None) -> str:
  if isinstance(value, str):
    return value if value else "unknown"
  if value == UNKNOWN_VALUE:
    return "unknown"
  value = int(value)
  return f"{value} ({names[value]})" if names is not None and 0 <= value < len(names) else str(value)


def _real_summary(values: np.ndarray) -> dict[str, Any]:
  known = values[np.isfinite(values)]
  summary: dict[str, Any] = {"kind": "real", "known": int(known.size),
                             "unknown": int(values.size - known.size)}
  if known.size:
    q = np.percentile(known, [0, 10, 50, 90, 100])
    summary.update(mean=float(known.mean()), min=float(q[0]), p10=float(q[1]),
                   median=float(q[2]), p90=float(q[3]), max=float(q[4]))
  return summary


def attribute_counts(attributes: Mapping[str, np.ndarray], *,
                     value_names: Mapping[str, Sequence[str]] | None = None
                     ) -> dict[str, dict[str, Any]]:
  """Per attribute: ``counts`` and ``fractions`` of each value (-1 / "" -> "unknown").

  Real-valued attributes (``skin_ita``) get quantiles instead (``kind: "real"``), and
  attributes with more than ``MAX_LISTED_VALUES`` distinct values (``identity``) the
  number of distinct values and the ``TOP_VALUES`` most frequent (``kind: "many"``).
  Values the dataset names (``value_names``) show their name, e.g. ``"1 (Black)"``.
  """
  out = {}
  names_of = dict(value_names or {})
  for name in sorted(attributes):
    values = np.asarray(attributes[name])
    if values.dtype.kind == "f":
      out[name] = _real_summary(values.astype(np.float64))
      continue
    values = values.astype(str) if values.dtype.kind in "USO" else values.astype(np.int64)
    uniques, counts = np.unique(values, return_counts=True)
    total = max(len(values), 1)
    keys = [_value_key(v.item() if hasattr(v, "item") else v, names_of.get(name))
            for v in uniques]
    if len(uniques) > MAX_LISTED_VALUES:
      order = np.argsort(-counts, kind="stable")[:TOP_VALUES]
      out[name] = {"kind": "many", "distinct": int(len(uniques)),
                   "top": {keys[i]: int(counts[i]) for i in order}}
      continue
    out[name] = {"kind": "values",
                 "counts": {k: int(c) for k, c in zip(keys, counts)},
                 "fractions": {k: float(c / total) for k, c in zip(keys, counts)}}
  return out


def imbalance_table(group_names: np.ndarray, labels: np.ndarray | None = None) -> dict[str, Any]:
  """Imbalance of one grouping: rows sorted by size, largest first.

  Args:
    group_names: str ``[N]`` group per example (``"unknown"`` allowed).
    labels: optional int ``[N]`` labels; adds each group's positive rate.

  Returns:
    ``{"rows": [{group, n, share, ratio_to_largest[, positive_rate]}...],
    "num_groups", "largest", "smallest", "imbalance_ratio"}``. ``share`` is over
    all examples; the ratios and largest/smallest ignore the ``"unknown"`` group
    (e.g. non-faces), which is no demographic group.
  """
  group_names = np.asarray(group_names).astype(str)
  total = max(len(group_names), 1)
  names, counts = np.unique(group_names, return_counts=True)
  known = [(str(g), int(c)) for g, c in zip(names, counts) if g != groups_lib.UNKNOWN]
  largest = max((c for _, c in known), default=0)
  rows = []
  for group, count in sorted(zip(names.tolist(), counts.tolist()),
                             key=lambda gc: (gc[0] == groups_lib.UNKNOWN, -gc[1], gc[0])):
    row = {"group": group, "n": int(count), "share": float(count / total),
           "ratio_to_largest": (float(count / largest)
                                if largest and group != groups_lib.UNKNOWN else None)}
    if labels is not None:
      row["positive_rate"] = float(np.mean(np.asarray(labels)[group_names == group] == 1))
    rows.append(row)
  smallest = min(known, key=lambda gc: gc[1]) if known else None
  biggest = max(known, key=lambda gc: gc[1]) if known else None
  return {
      "rows": rows,
      "num_groups": len(known),
      "largest": biggest[0] if biggest else None,
      "smallest": smallest[0] if smallest else None,
      "imbalance_ratio": (float(biggest[1] / smallest[1]) if known else None),
  }


def analyze(attributes: Mapping[str, np.ndarray], group_specs: Sequence[str], *,
            labels: np.ndarray | None = None,
            value_names: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
  """Counts, fractions and imbalance tables of one split.

  Args:
    attributes: name -> ``[N]`` (e.g. ``sources.read_attributes(source)``).
    group_specs: group specs such as ``["skin,Male", "Male,Young"]``.
    labels: optional int ``[N]`` labels (adds label counts and per-group rates).
    value_names: the dataset's names of attribute values (``sources.value_names``).

  Returns:
    ``{"num_examples", "attributes": attribute_counts(...), "label": counts or
    None, "groups": {spec: imbalance_table(...)}}``.
  """
  if not group_specs:
    raise ValueError("analyze needs at least one group spec, e.g. 'skin,Male'.")
  num = groups_lib.num_examples(attributes)
  if labels is not None and len(labels) != num:
    raise ValueError(f"labels has {len(labels)} entries but the attributes have {num}; "
                     "pass one label per example.")
  result: dict[str, Any] = {
      "num_examples": int(num),
      "attributes": attribute_counts(attributes, value_names=value_names),
      "label": attribute_counts({"label": labels})["label"] if labels is not None else None,
      "groups": {},
  }
  for spec in group_specs:
    names = groups_lib.parse_group_spec(spec, attributes)
    key = ",".join(names)
    result["groups"][key] = imbalance_table(
        groups_lib.assign_groups(attributes, names, value_names=value_names), labels)
    result["groups"][key]["attributes"] = groups_lib.describe(names, attributes)
  return result


def _fmt_ratio(value: float | None) -> str:
  return "-" if value is None else f"{value:.3f}"


def to_markdown(result: Mapping[str, Any], *, title: str = "Dataset analysis") -> str:
  """The analysis as Markdown: one imbalance table per spec, then attribute counts."""
  lines = [f"# {title}", "", f"Examples: {result['num_examples']}", ""]
  for spec, table in result["groups"].items():
    with_rate = bool(table["rows"]) and "positive_rate" in table["rows"][0]
    lines += [f"## Groups `{spec}`", ""]
    lines += [f"- `{name}`: {text}" for name, text in (table.get("attributes") or {}).items()]
    lines += ["", f"{table['num_groups']} groups; largest `{table['largest']}`, smallest "
              f"`{table['smallest']}`, imbalance ratio (largest / smallest) "
              f"{_fmt_ratio(table['imbalance_ratio'])}.", ""]
    header = "| group | n | share | ratio to largest |" + (" positive label rate |"
                                                            if with_rate else "")
    lines += [header, "|---|---:|---:|---:|" + ("---:|" if with_rate else "")]
    for row in table["rows"]:
      line = (f"| {row['group']} | {row['n']} | {row['share']:.2%} | "
              f"{_fmt_ratio(row['ratio_to_largest'])} |")
      if with_rate:
        line += f" {row['positive_rate']:.2%} |"
      lines.append(line)
    lines.append("")
  lines += ["## Attributes", "", "| attribute | value counts (fraction) |", "|---|---|"]
  sections = dict(result["attributes"])
  if result.get("label"):
    sections = {"label": result["label"], **sections}
  for name, stats in sections.items():
    lines.append(f"| {name} | {_attribute_cell(stats)} |")
  lines.append("")
  return "\n".join(lines)


def _attribute_cell(stats: Mapping[str, Any]) -> str:
  """One attribute's row of the Markdown table."""
  if stats.get("kind") == "real":
    if not stats["known"]:
      return f"all {stats['unknown']} unknown"
    return (f"real: mean {stats['mean']:.1f}, median {stats['median']:.1f}, 10-90% "
            f"[{stats['p10']:.1f}, {stats['p90']:.1f}], range [{stats['min']:.1f}, "
            f"{stats['max']:.1f}]; {stats['unknown']} unknown")
  if stats.get("kind") == "many":
    top = ", ".join(f"{v}: {c}" for v, c in stats["top"].items())
    return f"{stats['distinct']} distinct values; most frequent: {top}"
  return ", ".join(f"{v}: {c} ({stats['fractions'][v]:.1%})" for v, c in stats["counts"].items())


def sample_indices(group_names: np.ndarray, group: str, num: int, seed: int) -> np.ndarray:
  """Up to ``num`` example indices of ``group``, a seeded random pick, sorted."""
  members = np.flatnonzero(np.asarray(group_names) == group)
  if len(members) <= num:
    return members
  rng = np.random.default_rng([int(seed), len(members)])
  return np.sort(rng.choice(members, size=num, replace=False))


def _thumbnails(source, ids: np.ndarray) -> np.ndarray:
  thumbs = []
  for image in sources.read_images(source, ids):
    interpolation = cv2.INTER_AREA if image.shape[0] > THUMB_SIZE else cv2.INTER_NEAREST
    thumbs.append(cv2.resize(image, (THUMB_SIZE, THUMB_SIZE), interpolation=interpolation))
  return np.stack(thumbs)


def plot_group_shares(result: Mapping[str, Any], path: str) -> str:
  """One horizontal bar chart of group shares per spec, in one PNG."""
  specs = list(result["groups"].items())
  heights = [max(1.5, 0.35 * len(t["rows"]) + 0.8) for _, t in specs]
  # The object API on an Agg canvas: no pyplot state, works headless, leaves a
  # notebook's backend alone.
  fig = Figure(figsize=(7, sum(heights)))
  FigureCanvasAgg(fig)
  axes = fig.subplots(len(specs), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)
  for ax, (spec, table) in zip(axes[:, 0], specs):
    rows = table["rows"][::-1]  # Largest on top.
    shares = [100 * r["share"] for r in rows]
    colors = ["#bbbbbb" if r["group"] == groups_lib.UNKNOWN else "#3b75af" for r in rows]
    bars = ax.barh([r["group"] for r in rows], shares, color=colors)
    for bar, row in zip(bars, rows):
      ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" n={row['n']}",
              va="center", fontsize=8)
    ax.set_xlabel("share of examples (%)")
    ax.set_title(f"groups {spec}")
    ax.set_xlim(0, max(shares + [1]) * 1.25)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  return path


def write_analysis(workdir: str, source, group_specs: Sequence[str], *, dataset: str = "",
                   split: str = "", samples_per_group: int = 16, seed: int = 0,
                   label_key: str = "label") -> dict[str, Any]:
  """Analyses one split and writes ``analysis.json``, ``analysis.md`` and PNGs.

  Args:
    workdir: output directory (created).
    source: a :func:`sources.load_source` source (or a sequence of record dicts).
    group_specs: e.g. ``["skin,Male", "Male,Young"]``.
    dataset: dataset name, recorded in the outputs.
    split: split name, recorded in the outputs.
    samples_per_group: images per group in ``samples/<spec>/<group>.png``
      (0 writes no grids).
    seed: seed of the sample pick.
    label_key: integer feature reported as the label.

  Returns:
    The :func:`analyze` dict plus ``dataset``, ``split`` and ``files`` (paths).
  """
  if samples_per_group < 0:
    raise ValueError(f"samples_per_group must be >= 0, got {samples_per_group}.")
  os.makedirs(workdir, exist_ok=True)
  attributes = sources.read_attributes(source, progress=True)
  labels = sources.read_column(source, label_key)
  names = sources.value_names(source)
  result = analyze(attributes, group_specs, labels=labels, value_names=names)
  result = {"dataset": dataset, "split": split, **result}
  files = {"json": os.path.join(workdir, "analysis.json"),
           "markdown": os.path.join(workdir, "analysis.md"),
           "shares_plot": os.path.join(workdir, "group_shares.png"),
           "samples": {}}
  plot_group_shares(result, files["shares_plot"])
  if samples_per_group:
    for spec in result["groups"]:
      group_names = groups_lib.assign_groups(attributes, spec, value_names=names)
      for row in result["groups"][spec]["rows"]:
        ids = sample_indices(group_names, row["group"], samples_per_group, seed)
        grid = imaging.tile_grid(_thumbnails(source, ids),
                                 [f"#{i}" for i in ids])
        path = os.path.join(workdir, "samples", imaging.slug(spec, "group"),
                            f"{imaging.slug(row['group'], 'group')}.png")
        imaging.save_image(path, grid)
        files["samples"].setdefault(spec, {})[row["group"]] = path
  result["files"] = files
  title = f"Dataset analysis: {dataset} [{split}]" if dataset else "Dataset analysis"
  with open(files["markdown"], "w") as f:
    f.write(to_markdown(result, title=title))
  with open(files["json"], "w") as f:
    json.dump(result, f, indent=2)
  return result


def group_specs(text: str) -> list[str]:
  """The group specs of ``config.groups``: ``"skin,Male;Male,Young"`` -> two specs."""
  specs = [spec.strip() for spec in str(text or "").split(";") if spec.strip()]
  if not specs or any(not part.strip() for spec in specs for part in spec.split(",")):
    raise ValueError(f"--config.groups={text!r} needs group specs like 'skin,Male' (several "
                     "separated by ';', e.g. 'skin,Male;Male,Young')")
  return specs


def run_analysis(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Loads ``config.dataset``/``config.split`` (preparing it if asked) and writes its analysis.

  Args:
    config: ``experiments/configs/analyze.py``'s ConfigDict, filled in.
    workdir: output directory.

  Returns:
    The dict :func:`write_analysis` returns.
  """
  specs = group_specs(config.groups)
  if int(config.samples_per_group) < 0:
    raise ValueError(f"--config.samples_per_group must be >= 0, got {config.samples_per_group}")
  source = sources.load_source(config.dataset, split=config.split, data_dir=config.data_dir,
                               manual_dir=config.manual_dir, prepare=bool(config.prepare))
  return write_analysis(workdir, source, specs, dataset=config.dataset, split=config.split,
                        samples_per_group=int(config.samples_per_group),
                        seed=int(config.seed), label_key=config.label_key)
