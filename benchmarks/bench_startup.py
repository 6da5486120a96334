"""First-step time of a fresh process, with JAX's persistent compilation cache cold and warm.

Every entry point pays model build, tracing and XLA compilation before its first step;
``facebias_jax.compilation_cache`` (on by default in the scripts) keeps the compiled
executables on disk. For each model this runs, one after the other in fresh child
processes sharing one temporary cache folder: a *cold* process (empty cache), then
``--warm_runs`` *warm* ones, each timing model build, the first train step (trace +
compile or cache load + one step) and a second step, plus a process with the cache
off. Each process also reports its resident memory (``VmRSS``) after the imports, after
building the model and its peak (``VmHWM``) after the two steps, next to a PyTorch
process doing the same (``benchmarks/torch_reference.py``, eager). Writes
``benchmarks/results/startup.json`` with the cold/warm pair, their ratio and the memory
per model::

    python -m benchmarks.bench_startup [--quick] [--models standard_cnn resnet18 dbvae]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from benchmarks import bench_train_step, common

# Resident and peak memory of the running process, in MB (Linux /proc).
_MEMORY = r"""
import re
def memory_mb(key):
  with open("/proc/self/status") as f:
    return int(re.search(key + r":\s+(\d+)", f.read()).group(1)) / 1024
"""

_CHILD = _MEMORY + r"""
import json, sys, time
t0 = time.perf_counter()
from facebias_jax import compilation_cache, host_memory
host_memory.keep_freed_memory()  # As the scripts do (experiments/common.run).
compilation_cache.enable({cache!r}) if {cache!r} else None
import jax
from benchmarks import bench_train_step as b
from facebias_jax.train import steps
t1 = time.perf_counter()
rss_import = memory_mb("VmRSS")
model = b.build_model({name!r}, "auto")
tx = steps.make_optimizer(5e-4, total_steps=1000)
model_def, state = steps.create_train_state(model, tx, jax.random.PRNGKey(0))
step = steps.make_train_step(model_def, tx, kind=b._model_kind({name!r}))
batch = b.make_batch({name!r}, {batch})
t2 = time.perf_counter()
rss_build = memory_mb("VmRSS")
state, m = step(state, batch); jax.block_until_ready(m)
t3 = time.perf_counter()
state, m = step(state, batch); jax.block_until_ready(m)
t4 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "build_s": t2 - t1, "first_step_s": t3 - t2,
                   "second_step_s": t4 - t3, "rss_import_mb": rss_import,
                   "rss_build_mb": rss_build, "peak_mb": memory_mb("VmHWM")}}))
"""

_TORCH_CHILD = _MEMORY + r"""
import json, time
t0 = time.perf_counter()
import torch
from benchmarks import bench_train_step as b, torch_reference
t1 = time.perf_counter()
rss_import = memory_mb("VmRSS")
step, _ = torch_reference.make_step({name!r}, {batch}, b.MODELS[{name!r}][0], threads={threads})
t2 = time.perf_counter()
rss_build = memory_mb("VmRSS")
step()
t3 = time.perf_counter()
step()
t4 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "build_s": t2 - t1, "first_step_s": t3 - t2,
                   "second_step_s": t4 - t3, "rss_import_mb": rss_import,
                   "rss_build_mb": rss_build, "peak_mb": memory_mb("VmHWM")}}))
"""


def child(name: str, batch: int, cache: str | None, *, torch: bool = False) -> dict:
  """Runs one fresh process (ours, or PyTorch's with ``torch``) and returns its timings
  and memory."""
  code = (_TORCH_CHILD.format(name=name, batch=batch, threads=os.cpu_count() or 1) if torch
          else _CHILD.format(name=name, batch=batch, cache=cache or ""))
  env = {**os.environ, "FACEBIAS_JAX_COMPILATION_CACHE": "off"}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, cwd=os.path.dirname(os.path.dirname(__file__)), check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, batch: int, warm_runs: int) -> dict:
  """Cold, warm and uncached first-step times of ``name`` (fresh processes)."""
  with tempfile.TemporaryDirectory() as cache:
    cold = child(name, batch, cache)
    warm = [child(name, batch, cache) for _ in range(warm_runs)]
    entries = len(os.listdir(cache))
  off = child(name, batch, None)
  reference = child(name, batch, None, torch=True)
  best_warm = min(w["first_step_s"] for w in warm)
  return {"model": name, "batch_size": batch, "cold_first_step_s": cold["first_step_s"],
          "warm_first_step_s": best_warm, "cold_over_warm": cold["first_step_s"] / best_warm,
          "no_cache_first_step_s": off["first_step_s"], "build_s": cold["build_s"],
          "import_s": cold["import_s"], "steady_step_s": cold["second_step_s"],
          "cache_entries": entries, "rss_import_mb": off["rss_import_mb"],
          "rss_build_mb": off["rss_build_mb"], "peak_mb": off["peak_mb"],
          "torch_first_step_s": reference["first_step_s"],
          "torch_import_s": reference["import_s"],
          "torch_rss_import_mb": reference["rss_import_mb"],
          "torch_peak_mb": reference["peak_mb"],
          "peak_over_torch": off["peak_mb"] / reference["peak_mb"]}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", nargs="+", default=list(bench_train_step.MODELS),
                      choices=list(bench_train_step.MODELS))
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--warm_runs", type=int, default=2)
  parser.add_argument("--quick", action="store_true", help="one warm run, batch 8")
  args = parser.parse_args(argv)
  batch = 8 if args.quick else args.batch_size
  warm_runs = 1 if args.quick else args.warm_runs
  rows = [measure(name, batch, warm_runs) for name in args.models]
  path = common.write_results("startup", rows)
  for r in rows:
    print(f"{r['model']}: first step cold {r['cold_first_step_s']:.2f} s, warm "
          f"{r['warm_first_step_s']:.2f} s ({r['cold_over_warm']:.2f}x), no cache "
          f"{r['no_cache_first_step_s']:.2f} s; build {r['build_s']:.2f} s, import "
          f"{r['import_s']:.2f} s; peak memory {r['peak_mb']:.0f} MB (after imports "
          f"{r['rss_import_mb']:.0f}) vs PyTorch {r['torch_peak_mb']:.0f} MB (after imports "
          f"{r['torch_rss_import_mb']:.0f})")
  print(f"-> {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
