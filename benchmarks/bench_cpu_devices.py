"""Train-step throughput on CPU split into N XLA host devices vs one device.

XLA:CPU can present one machine as N devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``); the library's train loop
then shards every batch over a 1-D ``data`` mesh of them
(``facebias_jax.train.sharding``), each device works on ``batch / N`` images, and the
gradient all-reduce is inserted by XLA. ``jit`` keeps full-batch semantics, so the
BatchNorm statistics and the loss are those of the whole batch: the step is the same
computation, only scheduled differently.

The device count is fixed when JAX starts, so every setting runs in its own
subprocess (``--worker``) with ``XLA_FLAGS`` set. Each worker builds the library's
real sharded step the way ``facebias_jax.train.loop`` does (``create_train_state``,
``sharding.replicate``, ``steps.make_train_step``, ``sharding.shard_batch`` on every
call) for ``standard_cnn`` and the DB-VAE at 64 px, times it with
``bench_train_step.interleaved_best`` and also takes one plain-SGD step (lr 1, so the
parameter change is the gradient) from the same initial weights. The parent checks
that the gradients and BatchNorm statistics of N devices equal the 1-device ones
(relative error), keeps each setting's best time over ``--rounds`` alternating
launches, measures the PyTorch reference (``benchmarks/torch_reference.py``, best of
all cores and 1 thread) the same way, and writes ``benchmarks/results/cpu_devices.json``.

    python -m benchmarks.bench_cpu_devices [--quick] [--device_counts 1,2,4]

About 4 minutes on the 2-core container (``--quick``: about 1.5 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

MODELS = ("standard_cnn", "dbvae")
IMAGE_SIZE = 64
_RESULT_TAG = "RESULT_JSON "


def _batch(name: str, batch_size: int):
  """The fixed random batch of ``bench_train_step.make_batch``, as host arrays."""
  import numpy as np

  from benchmarks import bench_train_step
  return {k: np.asarray(v) for k, v in bench_train_step.make_batch(name, batch_size).items()}


def _sharded_step(name: str, batch_size: int, mesh, tx):
  """``(step, state, host_batch)``: the library's sharded train step, as the loop builds it."""
  import jax

  from benchmarks import bench_train_step
  from facebias_jax.train import sharding, steps

  sharding.check_batch_size(batch_size, mesh)
  model = bench_train_step.build_model(name, "auto")
  model_def, state = steps.create_train_state(model, tx, jax.random.PRNGKey(0))
  state = sharding.replicate(state, mesh)
  step = steps.make_train_step(model_def, tx,
                               kind="dbvae" if name == "dbvae" else "classifier")
  return step, state, _batch(name, batch_size)


def _sgd_delta(name: str, batch_size: int, mesh, path: str) -> float:
  """Saves (initial - updated) params and the new BatchNorm statistics of one SGD step.

  Returns:
    The step's loss.
  """
  import jax
  import numpy as np
  import optax

  from facebias_jax.train import sharding

  step, state, batch = _sharded_step(name, batch_size, mesh, optax.sgd(1.0))
  before = [np.asarray(x) for x in jax.tree.leaves(state.params)]
  state, metrics = step(state, sharding.shard_batch(batch, mesh))
  after = [np.asarray(x) for x in jax.tree.leaves(state.params)]
  stats = [np.asarray(x) for x in jax.tree.leaves(state.model_state)]
  np.savez(path, *[b - a for b, a in zip(before, after)], *stats,
           num_params=np.int64(len(before)))
  return float(metrics["loss"])


def worker(args: argparse.Namespace) -> dict[str, Any]:
  """Runs in the subprocess: times every (model, batch size) at this device count."""
  if args.torch:
    from benchmarks import torch_reference
    from benchmarks.bench_train_step import interleaved_best
    fns = {}
    for key in args.settings:
      name, batch_size = key.split(":")
      for threads in sorted({os.cpu_count() or 1, 1}):
        fns[f"{key}:{threads}"], _ = torch_reference.make_step(
            name, int(batch_size), IMAGE_SIZE, threads=threads)
    best = interleaved_best(fns, rounds=2, min_seconds=args.min_seconds)
    return {key: min(v for k, v in best.items() if k.rsplit(":", 1)[0] == key)
            for key in args.settings}

  import jax

  from benchmarks.bench_train_step import interleaved_best
  from facebias_jax.train import sharding, steps

  mesh = sharding.make_mesh()
  tx = steps.make_optimizer(5e-4, total_steps=1000)
  fns, losses = {}, {}
  for key in args.settings:
    name, batch_size = key.split(":")
    if args.check:
      losses[key] = _sgd_delta(name, int(batch_size), mesh,
                               os.path.join(args.out_dir, f"{name}_{batch_size}.npz"))
    step, state, batch = _sharded_step(name, int(batch_size), mesh, tx)
    holder = {"state": state}

    def run(step=step, batch=batch, holder=holder):
      # shard_batch on every call: the loop feeds host batches, so placing them on
      # the mesh is part of the step's cost.
      holder["state"], metrics = step(holder["state"], sharding.shard_batch(batch, mesh))
      jax.block_until_ready(metrics["loss"])

    run()  # Compile.
    fns[key] = run
  best = interleaved_best(fns, rounds=2, min_seconds=args.min_seconds)
  return {"devices": len(jax.devices()), "seconds": best, "loss": losses}


def _launch(device_count: int | None, settings: list[str], out_dir: str,
            min_seconds: float, check: bool = False) -> dict[str, Any]:
  """Runs one worker subprocess (``device_count=None``: the PyTorch reference)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "benchmarks.bench_cpu_devices", "--worker",
         "--out_dir", out_dir, "--min_seconds", str(min_seconds),
         "--settings", ",".join(settings)]
  if check:
    cmd.append("--check")
  if device_count is None:
    cmd.append("--torch")
  else:
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags + [
        f"--xla_force_host_platform_device_count={device_count}"])
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, check=False)
  for line in proc.stdout.splitlines():
    if line.startswith(_RESULT_TAG):
      return json.loads(line[len(_RESULT_TAG):])
  raise RuntimeError(f"worker {cmd} (device count {device_count}) failed with exit code "
                     f"{proc.returncode}:\n{proc.stderr[-3000:]}")


def relative_errors(reference: str, other: str) -> tuple[float, float]:
  """(gradient relative L2 error, BatchNorm statistics max relative error) of two saves."""
  import numpy as np

  a, b = np.load(reference), np.load(other)
  n = int(a["num_params"])
  keys = [f"arr_{i}" for i in range(len(a.files) - 1)]
  grad_a, grad_b = keys[:n], keys[n:]
  num = sum(float(((a[k] - b[k]) ** 2).sum()) for k in grad_a)
  den = sum(float((a[k] ** 2).sum()) for k in grad_a)
  stats = max((float(abs(a[k] - b[k]).max() / (abs(a[k]).max() + 1e-12)) for k in grad_b),
              default=0.0)
  return (num / max(den, 1e-30)) ** 0.5, stats


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="device counts 1,2 only, one round, shorter timing")
  parser.add_argument("--device_counts", default="1,2,4",
                      help="comma-separated XLA host device counts; must include 1")
  parser.add_argument("--models", default=",".join(MODELS),
                      help=f"comma-separated subset of {', '.join(MODELS)}")
  parser.add_argument("--batch_sizes", default="32,256", help="comma-separated batch sizes")
  parser.add_argument("--rounds", type=int, default=2,
                      help="alternating launches per device count (best is kept)")
  parser.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
  # Internal: the subprocess side.
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--torch", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--settings", default="", help=argparse.SUPPRESS)
  parser.add_argument("--out_dir", default="", help=argparse.SUPPRESS)
  parser.add_argument("--min_seconds", type=float, default=0.5, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    args.settings = [s for s in args.settings.split(",") if s]
    print(_RESULT_TAG + json.dumps(worker(args)), flush=True)
    return 0

  names = [m for m in args.models.split(",") if m]
  if not names or any(m not in MODELS for m in names):
    parser.error(f"--models: got {args.models!r}; choose from {', '.join(MODELS)}")
  try:
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    counts = [int(c) for c in
              ("1,2" if args.quick else args.device_counts).split(",") if c]
  except ValueError:
    parser.error("--batch_sizes and --device_counts take comma-separated integers")
  if not batch_sizes or min(batch_sizes) <= 0 or not counts or min(counts) <= 0:
    parser.error("--batch_sizes and --device_counts must be positive integers")
  if 1 not in counts:
    parser.error(f"--device_counts must include 1 (the reference), got {counts}")
  bad = [(b, c) for b in batch_sizes for c in counts if b % c]
  if bad:
    parser.error(f"each batch size must divide by each device count; not: {bad}")
  rounds = 1 if args.quick else max(1, args.rounds)
  min_seconds = 0.3 if args.quick else 0.5
  settings = [f"{m}:{b}" for m in names for b in batch_sizes]
  load_before = list(os.getloadavg())

  best: dict[int, dict[str, float]] = {c: {} for c in counts}
  losses: dict[int, dict[str, float]] = {}
  with tempfile.TemporaryDirectory() as tmp:
    dirs = {c: os.path.join(tmp, f"d{c}") for c in counts}
    for r in range(rounds):
      # Alternate the order so slow phases of a shared machine hit every count.
      for c in (counts if r % 2 == 0 else counts[::-1]):
        os.makedirs(dirs[c], exist_ok=True)
        # The equivalence check (one extra compile per setting) runs once.
        out = _launch(c, settings, dirs[c], min_seconds, check=r == 0)
        if out["devices"] != c:
          raise RuntimeError(f"asked XLA for {c} host devices, got {out['devices']}")
        losses.setdefault(c, out["loss"])
        for key, sec in out["seconds"].items():
          best[c][key] = min(best[c].get(key, float("inf")), sec)
        print(f"round {r + 1}, {c} device(s): " + ", ".join(
            f"{k} {int(k.split(':')[1]) / s:.0f} img/s" for k, s in out["seconds"].items()),
              flush=True)
    torch_best = ({} if args.no_torch else _launch(None, settings, tmp, min_seconds))
    rows = []
    for key in settings:
      name, batch_size = key.split(":")
      batch_size = int(batch_size)
      for c in counts:
        grad_err, stats_err = relative_errors(
            os.path.join(dirs[1], f"{name}_{batch_size}.npz"),
            os.path.join(dirs[c], f"{name}_{batch_size}.npz"))
        row = {"model": name, "image_size": IMAGE_SIZE, "batch_size": batch_size,
               "devices": c, "img_s": batch_size / best[c][key],
               "speedup_vs_1": best[1][key] / best[c][key],
               "loss_diff": abs(losses[c][key] - losses[1][key]),
               "grad_rel_err": grad_err, "bn_stats_rel_err": stats_err}
        if key in torch_best:
          row["torch_best_img_s"] = batch_size / torch_best[key]
          row["ratio_vs_torch"] = row["img_s"] / row["torch_best_img_s"]
        rows.append(row)
  common_columns = ["model", "batch_size", "devices", "img_s", "speedup_vs_1",
                    "torch_best_img_s", "ratio_vs_torch", "grad_rel_err"]
  from benchmarks import common
  common.print_table(rows, common_columns)
  extra = {"quick": args.quick, "rounds": rounds, "load_avg_before": load_before,
           "load_avg_after": list(os.getloadavg()),
           "note": "images/s of the library's sharded train step (forward, backward, "
                   "Adam; shard_batch included) with XLA:CPU split into N host devices "
                   "(--xla_force_host_platform_device_count=N, one subprocess each), "
                   "best of interleaved rounds; speedup_vs_1 = N devices / 1 device; "
                   "grad_rel_err / bn_stats_rel_err: one SGD step vs 1 device; "
                   "torch_best: PyTorch at its best of all cores or 1 thread"}
  path = common.write_results("cpu_devices", rows, extra=extra)
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
