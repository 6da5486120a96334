"""Plots of evaluation and training: per-group bars, comparisons, sweeps, curves, DB-VAE.

* ``plot_group_metrics``: accuracy per group with 95% CI whiskers; TPR, FPR, selection
  rate (``report_groups.png``).
* ``plot_comparison`` / ``plot_paired``: the figures of ``report.compare_runs`` (side by
  side; paired differences); ``plot_sweep`` / ``plot_methods``: those of ``seeds``.
* ``plot_training_curves``: loss and accuracy against the step from ``metrics.jsonl``.
* ``plot_latent_histograms``, ``plot_extreme_samples``: the DB-VAE's diagnostics.

Plots use matplotlib's object API on an Agg canvas (no pyplot state), so they work
headless and never change the backend of a notebook that imports this module.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from facebias_jax import imaging, runs
from facebias_jax.eval.formatting import as_float, fmt

_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


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
  acc = np.array([as_float(g["accuracy"]) for g in groups])
  cis = np.array([[as_float(c) for c in (g.get("accuracy_ci") or [None, None])] for g in groups])
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
  overall = as_float(metrics["overall"]["accuracy"])
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
    vals = np.array([as_float(g[key]) for g in groups])
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
  summary = (f"worst group {f.get('worst_group')} ({fmt(f.get('worst_group_accuracy'))}), "
             f"gap {fmt(f.get('accuracy_gap'))}, Var[A] {fmt(f.get('accuracy_variance'), 4)}, "
             f"EOD {fmt(f.get('equalized_odds_difference'))}")
  fig.suptitle(f"{title}\n{summary}" if title else summary, fontsize=10)
  return _save_figure(fig, out_png)


def plot_comparison(summary: Mapping[str, Any], out_png: str) -> str:
  """Grouped bars: accuracy per group (95% CI) for each run of a ``compare_runs`` summary."""
  labels, groups = summary["labels"], summary["groups"]
  acc, acc_ci, fairness = summary["accuracy"], summary["accuracy_ci"], summary["fairness"]
  fig = _new_figure(max(7.0, 1.2 * len(groups) * max(1, len(labels)) / 2 + 3), 4.5)
  ax = fig.subplots()
  x = np.arange(len(groups))
  width = 0.8 / len(labels)
  for j, l in enumerate(labels):
    vals = np.array([as_float(acc[l][g]) for g in groups])
    cis = np.array([[as_float(c) for c in (acc_ci[l][g] or [None, None])] for g in groups])
    ax.bar(x + (j - (len(labels) - 1) / 2) * width, np.nan_to_num(vals), width,
           yerr=_ci_errors(vals, cis), capsize=3, color=_COLORS[j % len(_COLORS)],
           edgecolor="black", linewidth=0.5,
           label=f"{l} (worst {fmt(fairness[l]['worst_group_accuracy'])}, "
                 f"Var[A] {fmt(fairness[l]['accuracy_variance'], 4)})")
  ax.set_xticks(x, [g.replace("_", "\n") for g in groups], fontsize=10)
  ax.set_ylim(0, 1.15 + 0.07 * len(labels))  # headroom for the legend above the bars.
  ax.set_yticks(np.linspace(0, 1, 6))
  ax.set_ylabel("Accuracy", fontsize=11)
  ax.set_title("Accuracy per group (95% CI)", fontsize=12)
  ax.legend(fontsize=8, loc="upper center", ncol=min(3, len(labels)), framealpha=0.9)
  ax.grid(axis="y", alpha=0.3)
  return _save_figure(fig, out_png)


def plot_paired(paired: Mapping[str, Any], out_png: str) -> str:
  """Forest plot: each run's differences from the reference with paired 95% intervals.

  One panel per compared run; rows are the accuracy-scale metrics (percentage points)
  and the per-group accuracies; an interval clear of 0 is drawn solid.
  """
  ref, results = paired["reference"], paired["runs"]
  keys = [("overall", "accuracy", "accuracy"),
          ("fairness", "worst_group_accuracy", "worst-group accuracy"),
          ("fairness", "mean_group_accuracy", "E[A] (mean over groups)"),
          ("fairness", "accuracy_gap", "accuracy gap"),
          ("fairness", "equalized_odds_difference", "equalized odds diff.")]
  first = next(iter(results.values()))
  rows = [(sec, k, name) for sec, k, name in keys if first[sec].get(k) is not None]
  rows += [("groups", g, f"acc. {g}") for g in first["groups"]]
  fig = _new_figure(4.2 * len(results) + 1.5, 0.38 * len(rows) + 1.6)
  axes = fig.subplots(1, len(results), sharex=True, sharey=True, squeeze=False)[0]
  y = np.arange(len(rows))[::-1]
  for ax, (label, result) in zip(axes, results.items()):
    for yi, (sec, k, _) in zip(y, rows):
      e = result[sec].get(k)
      if e is None:
        continue
      d, (lo, hi) = 100 * as_float(e["difference"]), (100 * as_float(c) for c in e["ci"])
      clear = e["excludes_zero"]
      ax.errorbar([d], [yi], xerr=[[max(d - lo, 0)], [max(hi - d, 0)]], fmt="o",
                  color=_COLORS[3] if clear else _COLORS[0], capsize=3,
                  markerfacecolor=None if clear else "white")
    ax.axvline(0, color="gray", linewidth=1)
    ax.set_title(f"{label} - {ref}", fontsize=10)
    ax.set_xlabel("difference (percentage points), 95% paired CI", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
  axes[0].set_yticks(y, [name for _, _, name in rows], fontsize=9)
  fig.suptitle("Paired bootstrap on the same test images (solid red: interval excludes 0)",
               fontsize=10)
  return _save_figure(fig, out_png)


def plot_sweep(rows: Sequence[Mapping[str, Any]], out_png: str, *, title: str) -> str:
  """E[A] and Var[A] against the smoothing alpha (mean ± std over seeds)."""
  alphas = np.array([r["alpha"] for r in rows])
  fig = _new_figure(10, 4)
  ax1, ax2 = fig.subplots(1, 2)
  for ax, key, scale, label, color in (
      (ax1, "mean_accuracy", 100, "E[A]: mean accuracy over groups (%)", _COLORS[0]),
      (ax2, "accuracy_variance", 1e4, "Var[A]: variance across groups (%²)", _COLORS[3])):
    m = np.array([as_float(r[key]) for r in rows]) * scale
    s = np.nan_to_num(np.array([as_float(r[f"{key}_std"]) for r in rows]) * scale)
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
  return _save_figure(fig, out_png)


def plot_methods(rows: Sequence[Mapping[str, Any]], groups: Sequence[str], out_png: str, *,
                 title: str) -> str:
  """Left: worst-group and average accuracy per method (mean, 95% t interval over seeds,
  one dot per seed). Right: accuracy per group (mean ± std over seeds)."""
  methods = [r["method"] for r in rows]
  fig = _new_figure(min(18.0, max(10.0, 0.8 * len(methods) + 0.12 * len(methods) * len(groups)
                                   + 4)), 5.0)
  ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
  x = np.arange(len(methods))
  for offset, key, label, marker, color in (
      (-0.15, "worst_group_accuracy", "worst group", "o", _COLORS[3]),
      (0.15, "average_accuracy", "average", "s", _COLORS[0])):
    m = np.array([100 * as_float(r[key]) for r in rows])
    ci = np.array([[100 * as_float(c) for c in r[f"{key}_ci"]] for r in rows])
    ax1.errorbar(x + offset, m, yerr=_ci_errors(m, ci), fmt=marker, color=color, capsize=4,
                 label=f"{label} (mean, 95% CI)")
    for xi, r in zip(x, rows):
      vals = [100 * as_float(v) for v in r[f"{key}_values"]]
      ax1.scatter(np.full(len(vals), xi + offset + 0.07), vals, s=9, color=color, alpha=0.5)
  ax1.set_xticks(x, methods, rotation=30, ha="right", fontsize=9)
  ax1.set_ylim(0, 102)  # A t interval over few seeds can reach past 0-100%.
  ax1.set_ylabel("Test accuracy (%)", fontsize=10)
  ax1.set_title("Worst group and average, per method", fontsize=11)
  ax1.legend(fontsize=8, loc="best")
  ax1.grid(axis="y", alpha=0.3)
  width = 0.8 / max(1, len(groups))
  for j, g in enumerate(groups):
    m = np.array([100 * as_float((r["group_accuracy"].get(g) or [None])[0]) for r in rows])
    s = np.array([100 * as_float((r["group_accuracy"].get(g) or [None, None])[1]) for r in rows])
    ax2.bar(x + (j - (len(groups) - 1) / 2) * width, np.nan_to_num(m), width,
            yerr=np.nan_to_num(s), capsize=2, color=_COLORS[j % len(_COLORS)],
            edgecolor="black", linewidth=0.4, label=g)
  ax2.set_xticks(x, methods, rotation=30, ha="right", fontsize=9)
  ax2.set_ylim(0, 112)
  ax2.set_ylabel("Test accuracy (%)", fontsize=10)
  ax2.set_title("Accuracy per group (mean ± std over seeds)", fontsize=11)
  ax2.legend(fontsize=7, ncol=min(4, max(1, len(groups))), loc="upper center")
  ax2.grid(axis="y", alpha=0.3)
  fig.suptitle(title, fontsize=12)
  return _save_figure(fig, out_png)


# ----------------------------------------------------------------------------- training curves

# DB-VAE loss terms on a scale of their own (the KL is ~20 where the losses are ~0.1).
_VAE_TERMS = ("kl", "recon", "vae_loss")
_GROUP_CURVES = "val_group_accuracy"


def _curve_panels(keys: Iterable[str]) -> list[tuple[str, list[str]]]:
  """Groups metric names into panels: losses, the DB-VAE's terms, accuracies."""
  keys = sorted(keys)
  vae = [k for k in keys if k in _VAE_TERMS]
  loss = [k for k in keys if "loss" in k.lower() and k not in vae]
  acc = [k for k in keys if "acc" in k.lower() and k not in loss]
  panels = [("Loss", loss), ("DB-VAE terms", vae), ("Accuracy", acc)]
  return [(t, ks) for t, ks in panels if ks]


def _series(records: Sequence[Mapping[str, Any]], key: str, sub: str | None = None):
  """``(steps, values)`` of one metric (``sub``: a key of a nested dict metric)."""
  pts = []
  for r in records:
    v = r.get(key)
    if sub is not None:
      v = v.get(sub) if isinstance(v, Mapping) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
      pts.append((r["step"], v))
  return tuple(zip(*pts)) if pts else ((), ())


def _style_axis(ax, title: str, ylabel: str) -> None:
  ax.set_xlabel("Step", fontsize=11)
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_ylabel(ylabel, fontsize=11)
  ax.set_title(title, fontsize=12)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)


def plot_training_curves(paths: str | Sequence[str] | Mapping[str, str], out_png: str) -> str:
  """Loss, accuracy and per-group validation accuracy vs step from ``metrics.jsonl``.

  Panels: training and validation losses; the DB-VAE's KL and reconstruction terms
  (their own scale, log axis when it spans decades); training and validation accuracy
  with the worst group's; the validation accuracy of every group (one line each).

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
  histories = {label: runs.read_metrics(p) for label, p in paths.items()}
  keys = {k for recs in histories.values() for r in recs for k, v in r.items()
          if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
  panels = _curve_panels(keys)
  if not panels:
    raise ValueError(f"No loss or accuracy metrics found in {list(paths.values())} "
                     f"(keys seen: {sorted(keys)})")
  groups = sorted({g for recs in histories.values() for r in recs
                   for g in (r.get(_GROUP_CURVES) or {})})
  count = len(panels) + bool(groups)
  fig = _new_figure(5.2 * count, 4.2)
  axes = np.atleast_1d(fig.subplots(1, count))
  styles = ("-", "--", ":", "-.")
  for ax, (title, ks) in zip(axes, panels):
    lows, highs = [], []
    for ri, (label, recs) in enumerate(histories.items()):
      for ki, k in enumerate(ks):
        steps, vals = _series(recs, k)
        if not steps:
          continue
        lows.append(min(vals))
        highs.append(max(vals))
        name = k if len(histories) == 1 else f"{label}: {k}"
        ax.plot(steps, vals, styles[ri % len(styles)], color=_COLORS[ki % len(_COLORS)],
                label=name, linewidth=1.4, marker="o" if len(steps) < 15 else None,
                markersize=3)
    if lows and min(lows) > 0 and max(highs) / min(lows) > 100:
      ax.set_yscale("log")
    _style_axis(ax, f"{title} vs step", title)
  if groups:
    ax = axes[-1]
    for ri, (label, recs) in enumerate(histories.items()):
      for gi, g in enumerate(groups):
        steps, vals = _series(recs, _GROUP_CURVES, g)
        if steps:
          ax.plot(steps, vals, styles[ri % len(styles)], color=_COLORS[gi % len(_COLORS)],
                  label=g if len(histories) == 1 else f"{label}: {g}", linewidth=1.4,
                  marker="o" if len(steps) < 15 else None, markersize=3)
    ax.set_ylim(0, 1.05)
    _style_axis(ax, "Validation accuracy per group", "Accuracy")
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
