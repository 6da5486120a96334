"""Training methods compared across seeds on one dataset: the group-robustness table.

``compare_methods(config, workdir)`` trains every method of ``config.methods`` for every
seed of ``config.seeds`` from the one run config ``config.run`` (same model, data,
optimizer, validation and selection; only ``train.method`` and the seed change, the
DB-VAE gets ``config.dbvae_model``, and with ``config.equal_steps`` every method trains
and validates on ERM's step budget), each a normal run directory
``workdir/<method>/seed_<s>`` (resumable; skipped once it has its report). DFR refits
the ERM run of the same seed when ERM is in the comparison, instead of training its own
base. Then ``eval.seeds.summarize_methods`` / ``write_methods`` write
``methods.{json,md,csv,png}``: worst-group and average test accuracy per method, mean ±
std over seeds with a 95% interval, per-group accuracies and the selected epoch.

It trains *and* evaluates, so it sits above both ``train`` and ``eval``.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from facebias_jax import runs
from facebias_jax.data import groups as groups_lib
from facebias_jax.data import sources
from facebias_jax.eval import report, seeds as seeds_lib
from facebias_jax.train import loop, methods as methods_lib


def parse_list(value: Any, kind: type = str) -> list:
  """``"a,b"`` or a sequence -> a list of ``kind`` values (blanks dropped)."""
  items = value.split(",") if isinstance(value, str) else list(value)
  return [kind(str(v).strip()) for v in items if str(v).strip()]


def run_dir(workdir: str, method: str, seed: int) -> str:
  """The workdir of one run of the comparison, e.g. ``workdir/jtt/seed_1``."""
  return os.path.join(workdir, method, f"seed_{int(seed)}")


def check(config: ml_collections.ConfigDict) -> tuple[list[str], list[int]]:
  """The methods and seeds of a comparison config; ValueError naming the bad field."""
  chosen = parse_list(config.methods)
  unknown = [m for m in chosen if m not in methods_lib.METHODS]
  if not chosen or unknown:
    raise ValueError(f"config.methods={config.methods!r}: give methods from "
                     f"{methods_lib.METHODS}, comma-separated")
  if len(set(chosen)) != len(chosen):
    raise ValueError(f"config.methods={config.methods!r} names a method twice")
  try:
    seeds = parse_list(config.seeds, int)
  except ValueError:
    raise ValueError(f"config.seeds={config.seeds!r} must be integers, e.g. '0,1,2'") from None
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise ValueError(f"config.seeds={config.seeds!r} must be distinct integers >= 0")
  return chosen, seeds


def erm_steps_per_epoch(config: ml_collections.ConfigDict, num_train: int) -> int:
  """Steps of one ERM epoch of the run config (the comparison's unit of training)."""
  return max(1, int(num_train) // int(config.run.train.batch_size))


def method_config(config: ml_collections.ConfigDict, method: str, seed: int,
                  workdir: str, *, num_train: int) -> ml_collections.ConfigDict:
  """The run config of one (method, seed) of the comparison.

  With ``config.equal_steps`` every method takes the optimizer steps of
  ``run.train.num_epochs`` ERM epochs and validates every ERM epoch, whatever its own
  epochs are (SUBG's are tiny, JTT's and oversampling's long): the same compute and the
  same selection points for all.
  """
  cfg = ml_collections.ConfigDict(config.run.to_dict())
  cfg.seed = int(seed)
  cfg.train.method = method
  if config.equal_steps:
    per_epoch = erm_steps_per_epoch(config, num_train)
    epochs = int(config.run.train.num_epochs)
    if int(config.run.train.max_steps) <= 0:
      cfg.train.max_steps = epochs * per_epoch
    every = int(config.run.eval.every_epochs)
    if every > 0:
      cfg.eval.every_epochs = 0
      cfg.eval.every_steps = every * per_epoch
  if method == "dbvae":
    cfg.model = ml_collections.ConfigDict(config.dbvae_model.to_dict())
    cfg.train.face_nonface_batches = False
  if method == "dfr" and "erm" in parse_list(config.methods):
    cfg.dfr.base_run = run_dir(workdir, "erm", seed)
  return cfg


def _finished_report(path: str, cfg: ml_collections.ConfigDict) -> dict | None:
  """The report of a run already trained and evaluated with exactly this config; None
  when it is missing or the config differs in any field (the loop then resumes it,
  re-evaluates it, or refuses a different experiment)."""
  try:
    rep = report.load_report(os.path.join(path, "report.json"))
  except (FileNotFoundError, ValueError):
    return None
  return rep if runs.config_changes(cfg, path) == ([], []) else None


def train_shares(config: ml_collections.ConfigDict) -> tuple[dict[str, float], int]:
  """Each evaluation group's share of the training split (for the average accuracy),
  and the split's size."""
  d = config.run.data
  source = sources.load_source(d.name, split=d.train_split, data_dir=d.data_dir,
                               manual_dir=d.manual_dir)
  labels = groups_lib.assign_groups(sources.read_attributes(source), config.run.eval.groups,
                                    value_names=sources.value_names(source))
  names, counts = np.unique(labels, return_counts=True)
  return {str(n): float(c / counts.sum()) for n, c in zip(names, counts)}, len(source)


def _ordered(chosen: Sequence[str]) -> list[str]:
  """Training order: ERM before DFR (DFR refits ERM's run)."""
  return sorted(chosen, key=lambda m: (m == "dfr", chosen.index(m)))


def compare_methods(config: ml_collections.ConfigDict, workdir: str, *,
                    train_fn: Callable[[Any, str], dict] | None = None) -> dict:
  """Trains and evaluates every (method, seed); writes the table and plot.

  Args:
    config: ``experiments/configs/compare_methods.py``'s ConfigDict (``run``,
      ``methods``, ``seeds``, ``dbvae_model``).
    workdir: the comparison's folder.
    train_fn: ``(config, workdir) -> report``; defaults to ``loop.train_and_evaluate``.

  Returns:
    ``seeds.summarize_methods``'s dict plus ``runs`` ({method: [workdirs]}),
    ``total_time_s`` (this call's wall time) and ``files``.
  """
  chosen, seed_list = check(config)
  train_fn = train_fn or loop.train_and_evaluate
  shares, num_train = train_shares(config)
  reports: dict[str, list[dict]] = {m: [] for m in chosen}
  paths: dict[str, list[str]] = {m: [] for m in chosen}
  start, total = time.perf_counter(), len(chosen) * len(seed_list)
  done = 0
  for seed in seed_list:
    for method in _ordered(chosen):
      path = run_dir(workdir, method, seed)
      cfg = method_config(config, method, seed, workdir, num_train=num_train)
      rep = _finished_report(path, cfg)
      began = time.perf_counter()
      if rep is None:
        logging.info("Comparison run %s seed %d -> %s", method, seed, path)
        rep = train_fn(cfg, path)
        if not isinstance(rep, dict) or "metrics" not in rep:
          rep = report.load_report(os.path.join(path, "report.json"))
      done += 1
      if jax.process_index() == 0:
        worst = rep["metrics"]["fairness"].get("worst_group_accuracy")
        print(f"[{done}/{total}] {method} seed {seed}: worst group "
              f"{'n/a' if worst is None else f'{worst:.3f}'}, accuracy "
              f"{rep['metrics']['overall']['accuracy']:.3f} "
              f"({time.perf_counter() - began:.0f} s; {path})", flush=True)
      reports[method].append(rep)
      paths[method].append(path)
  summary = seeds_lib.summarize_methods(
      reports, train_shares=shares,
      steps_per_epoch=erm_steps_per_epoch(config, num_train) if config.equal_steps else None)
  summary["runs"] = paths
  summary["total_time_s"] = time.perf_counter() - start
  summary["dataset"] = {"name": config.run.data.name, "label_key": config.run.data.label_key,
                        "groups": config.run.eval.groups}
  return seeds_lib.write_methods(summary, workdir,
                                 title=f"Methods on {config.run.data.name} "
                                       f"({config.run.data.label_key} x groups "
                                       f"{config.run.eval.groups})")
