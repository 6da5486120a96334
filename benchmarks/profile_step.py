"""Where one train step's time goes: oneDNN calls per pass, XLA's own work, page faults.

    python -m benchmarks.profile_step [--model resnet18] [--batch_size 32] [--steps 3]

Traces the library's jitted train step with ``jax.profiler`` and sums, per step:

* the time inside each kind of oneDNN FFI call (convolution forward, input and filter
  gradient, BatchNorm and max-pool forward and backward). The calls run one at a time
  (``csrc/onednn_common.h``), so a call's own time starts when the previous one ended:
  the time an XLA thread waits on the lock is not counted;
* the time of XLA's own thunks (element-wise and reduction fusions, dense layers,
  copies), which may overlap the oneDNN calls on other threads;
* minor page faults and kernel CPU time per step (``getrusage``), next to the same
  PyTorch step's (its fastest variant on CPU, channels-last eager, in a child process):
  the figures that led to ``facebias_jax/host_memory.py``.

Writes ``benchmarks/results/profile_<model>_b<batch>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from benchmarks import bench_train_step, common

_FFI_PREFIX = "facebias_onednn_conv_"
# Host-side trace events that are not work on the step's data.
_NOT_WORK = ("$", "Thunk", "end:", "Pjit", "Common", "Parse", "Handle", "Alloc", "Wait",
             "Slinky", "Python")


def ffi_targets(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> oneDNN pass (``forward``, ``norm_backward``, ...)."""
  pattern = re.compile(r"%(\S+) = [^\n]*custom_call_target=\"" + _FFI_PREFIX + r"(\w+)\"")
  return {m.group(1): m.group(2) for m in pattern.finditer(hlo_text)}


def split_time(events: list[dict[str, Any]], targets: dict[str, str],
               steps: int) -> dict[str, Any]:
  """Per-step milliseconds by oneDNN pass (own time only) and for XLA's other thunks.

  Args:
    events: complete ("X") trace events with ``name``, ``ts`` and ``dur`` (µs).
    targets: from :func:`ffi_targets`.
    steps: how many steps the trace covers.
  """
  own = collections.defaultdict(float)
  previous_end = float("-inf")
  calls = sorted((e for e in events if e["name"] in targets), key=lambda e: e["ts"] + e["dur"])
  for e in calls:
    end = e["ts"] + e["dur"]
    own[targets[e["name"]]] += max(0.0, end - max(e["ts"], previous_end))
    previous_end = end
  other = sum(e["dur"] for e in events
              if e["name"] not in targets and not e["name"].startswith(_NOT_WORK))
  per_step = {k: v / steps / 1000 for k, v in sorted(own.items(), key=lambda kv: -kv[1])}
  return {"onednn_ms": per_step, "onednn_total_ms": sum(per_step.values()),
          "xla_other_ms": other / steps / 1000}


def faults_per_step(run: Callable[[], None], steps: int) -> dict[str, float]:
  """Minor page faults and kernel CPU milliseconds per call of ``run`` (this process)."""
  before = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(steps):
    run()
  after = resource.getrusage(resource.RUSAGE_SELF)
  return {"page_faults": (after.ru_minflt - before.ru_minflt) / steps,
          "kernel_cpu_ms": 1000 * (after.ru_stime - before.ru_stime) / steps}


_TORCH_CHILD = r"""
import json, sys
from benchmarks import torch_reference
from benchmarks.profile_step import faults_per_step
name, batch, size, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
step = torch_reference.make_step(name, batch, size, threads=int(sys.argv[5]),
                                 variant="channels_last")[0]
for _ in range(3):
  step()
print(json.dumps(faults_per_step(step, steps)))
"""


def torch_faults(name: str, batch_size: int, steps: int, threads: int) -> dict[str, float]:
  """The same figures for PyTorch's step, in a fresh process (glibc's defaults)."""
  size = bench_train_step.MODELS[name][0]
  out = subprocess.run([sys.executable, "-c", _TORCH_CHILD, name, str(batch_size), str(size),
                        str(steps), str(threads)], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def profile(name: str, batch_size: int, steps: int) -> dict[str, Any]:
  """Builds, warms up and traces ``steps`` train steps of model ``name``."""
  import jax

  from facebias_jax.train import steps as steps_lib

  model = bench_train_step.build_model(name, "auto")
  tx = steps_lib.make_optimizer(5e-4, total_steps=1000)
  model_def, state = steps_lib.create_train_state(model, tx, jax.random.PRNGKey(0))
  train_step = steps_lib.make_train_step(model_def, tx, kind=bench_train_step._model_kind(name))
  batch = bench_train_step.make_batch(name, batch_size)
  targets = ffi_targets(train_step.lower(state, batch).compile().as_text())
  holder = {"state": state}

  def run():
    holder["state"], out = train_step(holder["state"], batch)
    jax.block_until_ready(out["loss"])

  for _ in range(3):
    run()
  start = time.perf_counter()
  for _ in range(steps):
    run()
  step_ms = 1000 * (time.perf_counter() - start) / steps
  faults = faults_per_step(run, steps)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(steps):
        run()
    path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
      trace = json.load(f)
  events = [e for e in (trace["traceEvents"] if isinstance(trace, dict) else trace)
            if e.get("ph") == "X"]
  return {"model": name, "batch_size": batch_size, "step_ms": step_ms, **faults,
          **split_time(events, targets, steps)}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet18", choices=sorted(bench_train_step.MODELS))
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=3, help="steps traced and counted")
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                      help="PyTorch threads for its page-fault count")
  parser.add_argument("--no_torch", action="store_true", help="skip PyTorch's figures")
  args = parser.parse_args(argv)
  if args.batch_size <= 0 or args.steps <= 0:
    parser.error(f"--batch_size and --steps must be positive, got {args.batch_size} and "
                 f"{args.steps}")
  from facebias_jax import host_memory

  host_memory.keep_freed_memory()  # As the training scripts do, before JAX's first op.
  row = profile(args.model, args.batch_size, args.steps)
  if not args.no_torch:
    row["torch"] = torch_faults(args.model, args.batch_size, args.steps, args.threads)
  table = [{"what": f"oneDNN {k}", "ms_per_step": v} for k, v in row["onednn_ms"].items()]
  table += [{"what": "oneDNN, all calls", "ms_per_step": row["onednn_total_ms"]},
            {"what": "XLA's other thunks (may overlap)", "ms_per_step": row["xla_other_ms"]},
            {"what": "whole step (untraced)", "ms_per_step": row["step_ms"]}]
  common.print_table(table, ["what", "ms_per_step"])
  torch = row.get("torch", {})
  print(f"page faults per step: ours {row['page_faults']:.0f}, PyTorch "
        f"{torch.get('page_faults', float('nan')):.0f}; kernel CPU ms: ours "
        f"{row['kernel_cpu_ms']:.1f}, PyTorch {torch.get('kernel_cpu_ms', float('nan')):.1f}")
  path = common.write_results(f"profile_{args.model}_b{args.batch_size}", [row],
                              extra={"steps": args.steps})
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
