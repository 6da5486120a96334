"""The DB-VAE smoothing sweep: train over alphas x seeds, then the paper's table.

Amini et al. (AIES 2019) report, per value of the histogram smoothing alpha, the
mean accuracy over demographic groups E[A] and the variance across groups Var[A].
``run_alpha_sweep`` trains one DB-VAE per (alpha, seed) with
``train.loop.train_and_evaluate`` into ``workdir/alpha_<a>/seed_<s>`` and writes
``sweep.json``, ``sweep.md`` and ``sweep.png`` into ``workdir`` (see
``eval.seeds.summarize_sweep`` for the aggregation). It trains *and* evaluates, so
it sits above both ``train`` and ``eval``.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence

from absl import logging

from facebias_jax.eval import report, seeds as seeds_lib
from facebias_jax.train import loop


def run_dir(workdir: str, alpha: float, seed: int) -> str:
  """The workdir of one sweep run, e.g. ``workdir/alpha_0.01/seed_0``."""
  return os.path.join(workdir, f"alpha_{alpha:g}", f"seed_{seed}")


def _finished_report(path: str, alpha: float, seed: int) -> dict | None:
  """The report of a run already evaluated with this alpha and seed, else None."""
  try:
    rep = report.load_report(path)
  except (FileNotFoundError, ValueError):
    return None
  cfg = rep.get("config") or {}
  smoothing = (cfg.get("debias") or {}).get("smoothing")
  if smoothing is None or not math.isclose(float(smoothing), alpha) or cfg.get("seed") != seed:
    return None
  return rep


def run_alpha_sweep(config: Any, workdir: str, *, alphas: Sequence[float], seeds: Sequence[int],
                    reuse_existing: bool = True,
                    train_fn: Callable[[Any, str], dict] | None = None) -> dict:
  """Trains and evaluates a DB-VAE for every (alpha, seed); writes the sweep table and plot.

  Args:
    config: a DB-VAE ``ConfigDict`` (e.g. ``experiments/configs/dbvae_synthetic.py``);
      each run gets a copy with ``debias.smoothing = alpha`` and ``seed = seed``.
    workdir: sweep folder; runs go to ``run_dir(workdir, alpha, seed)``.
    alphas: smoothing values (> 0).
    seeds: seeds per alpha.
    reuse_existing: skip runs whose ``report.json`` already holds this alpha and seed
      (an interrupted sweep resumes where it stopped).
    train_fn: ``(config, workdir) -> report dict``; defaults to
      ``train.loop.train_and_evaluate``.

  Returns:
    The ``eval.seeds.summarize_sweep`` dict plus ``files`` (``sweep.json/md/png``) and
    ``runs`` ({alpha: [run workdirs]}).
  """
  if not alphas or not seeds:
    raise ValueError("The sweep needs at least one alpha and one seed")
  bad = [a for a in alphas if not float(a) > 0]
  if bad:
    raise ValueError(f"Smoothing values must be > 0, got {bad}")
  if len(set(map(float, alphas))) != len(alphas) or len(set(seeds)) != len(seeds):
    raise ValueError(f"Alphas and seeds must be distinct, got alphas={list(alphas)} seeds={list(seeds)}")
  if "debias" not in config:
    raise ValueError("The sweep config has no 'debias' section: use a DB-VAE config such as "
                     "experiments/configs/dbvae_synthetic.py")
  train_fn = train_fn or loop.train_and_evaluate
  reports: dict[float, list[dict]] = {}
  runs: dict[float, list[str]] = {}
  for alpha in map(float, alphas):
    for seed in map(int, seeds):
      path = run_dir(workdir, alpha, seed)
      rep = _finished_report(path, alpha, seed) if reuse_existing else None
      if rep is None:
        cfg = config.copy_and_resolve_references()
        cfg.debias.smoothing = alpha
        cfg.seed = seed
        logging.info("Sweep run alpha=%g seed=%d -> %s", alpha, seed, path)
        rep = train_fn(cfg, path)
        if not isinstance(rep, dict) or "metrics" not in rep:
          rep = report.load_report(path)  # the loop wrote report.json into its workdir.
      else:
        logging.info("Sweep run alpha=%g seed=%d already evaluated in %s", alpha, seed, path)
      reports.setdefault(alpha, []).append(rep)
      runs.setdefault(alpha, []).append(path)
  summary = seeds_lib.summarize_sweep(reports)
  summary["runs"] = {f"{a:g}": paths for a, paths in runs.items()}
  return seeds_lib.write_sweep(summary, workdir)
