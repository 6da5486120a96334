"""Shared helpers for benchmarks: machine facts, timing, JSON results and tables.

Every benchmark runs the thing it measures and its reference in the same run, in
alternating rounds, so the ratio between them is meaningful on a noisy machine (the
PyTorch references of the model benchmarks run in a child process that works only while
this one waits); absolute figures are reported with the machine they were taken on.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from importlib import metadata
from typing import Callable, Sequence

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "opencv-python", "grain",
             "tensorflow-datasets", "torch", "onednn-cpu-gomp")


def machine_info() -> dict:
  """Processor, core count, accelerator and package versions of this run."""
  import jax  # Imported lazily: some benchmarks set XLA flags first.

  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {
      "cpu": cpu,
      "cores": os.cpu_count(),
      "platform": platform.platform(),
      "python": platform.python_version(),
      "jax_backend": jax.default_backend(),
      "jax_devices": [str(d) for d in jax.devices()],
      "versions": versions,
      "onednn_convolutions": _onednn_status(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def _onednn_status() -> str:
  """Whether conv_impl=auto can use the oneDNN convolutions here, or why not."""
  from facebias_jax.ops import onednn

  return "available" if onednn.available() else f"unavailable: {onednn.unavailable_reason()}"


def time_call(fn: Callable[[], object], *, warmup: int = 2, repeats: int = 5,
              min_seconds: float = 1.0) -> float:
  """Median seconds per call of ``fn`` after ``warmup`` untimed calls.

  Each repeat runs ``fn`` enough times to last ``min_seconds`` so short calls are
  not dominated by timer noise. ``fn`` must block until its work is done (call
  ``jax.block_until_ready`` inside it for JAX code).
  """
  for _ in range(warmup):
    fn()
  start = time.perf_counter()
  fn()
  once = max(time.perf_counter() - start, 1e-9)
  inner = max(1, int(min_seconds / once))
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(inner):
      fn()
    samples.append((time.perf_counter() - start) / inner)
  samples.sort()
  return samples[len(samples) // 2]


def write_results(name: str, rows: Sequence[dict], *, extra: dict | None = None) -> str:
  """Writes ``benchmarks/results/<name>.json`` with the rows and machine facts."""
  os.makedirs(RESULTS_DIR, exist_ok=True)
  path = os.path.join(RESULTS_DIR, f"{name}.json")
  payload = {"benchmark": name, "machine": machine_info(), "rows": list(rows)}
  if extra:
    payload.update(extra)
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
  return path


def print_table(rows: Sequence[dict], columns: Sequence[str]) -> None:
  """Prints rows as a Markdown table (the form the README carries)."""
  def fmt(value):
    if isinstance(value, float):
      return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)

  print("| " + " | ".join(columns) + " |")
  print("|" + "|".join("---" for _ in columns) + "|")
  for row in rows:
    print("| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |")
