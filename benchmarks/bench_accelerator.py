r"""Train-step throughput on an accelerator: img/s, step time and model FLOPs utilisation.

For ResNet-18 and ResNet-50 at 224 px and the DB-VAE at 64 px, each in float32 and in
bfloat16 mixed precision (``config.train.dtype``, ``facebias_jax.models.precision``),
it times the library's jitted train step (``facebias_jax.train.steps``) on a fixed
batch split over every local device, and reports

- images/s and milliseconds per step (median of ``--steps`` timed steps after warm-up),
  and the first call's seconds (tracing + compilation);
- FLOPs per step as XLA counts them in the lowered step (``Lowered.cost_analysis``,
  XLA's own convolutions, so the count does not depend on the kernels that run) and
  the model FLOPs utilisation, achieved FLOP/s over the devices' peak: from
  ``PEAK_TFLOPS`` (vendor figures, dense, per device) where the device is known, else
  (CPUs) this machine's measured float32 matmul rate, marked as such;
- next to each model, what the input pipeline can feed at its image size: decode +
  random resized crop + flip per core (``benchmarks.bench_pipeline``), and the cores
  that takes at the step's rate.

On a GPU or TPU the sizes are the study's (``--preset=full``, the default there). It
runs unchanged on a CPU with ``--preset=tiny`` (the default on CPUs: small widths, 32 px,
a few steps; about a minute on 2 cores), which is how the tests keep it working.
Writes ``benchmarks/results/accelerator.json`` (``--out`` to change).

    python -m benchmarks.bench_accelerator [--preset=auto|full|tiny] [--dtypes=float32,bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

# Dense peak TFLOP/s per JAX device, from the vendors' data sheets. float32 on NVIDIA
# Ampere and later is TF32 on the tensor cores, which XLA uses for float32 convolutions
# and matmuls at JAX's default precision; TPUs run float32 matmuls as bfloat16 passes,
# so no float32 peak is given for them. Matched against ``device_kind`` in order
# (the more specific names first).
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bfloat16": 989.0, "float32": 494.0}),
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}),
    ("H100", {"bfloat16": 989.0, "float32": 494.0}),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
    ("L40S", {"bfloat16": 362.0, "float32": 183.0}),
    ("L4", {"bfloat16": 121.0, "float32": 60.0}),
    ("A10G", {"bfloat16": 70.0, "float32": 35.0}),
    ("V100", {"float32": 15.7}),
    ("T4", {"float32": 8.1}),
    ("TPU v6", {"bfloat16": 918.0}),
    ("TPU v5p", {"bfloat16": 459.0}),
    ("TPU v5", {"bfloat16": 197.0}),  # v5e ("TPU v5 lite").
    ("TPU v4", {"bfloat16": 275.0}),
)

# (model, image size, batch per device, get_model options) per preset.
PRESETS = {
    "full": (("resnet18", 224, 256, {}), ("resnet50", 224, 128, {}),
             ("dbvae", 64, 256, {"image_size": 64})),
    "tiny": (("resnet18", 32, 8, {"width": 0.125}), ("resnet50", 32, 4, {"width": 0.125}),
             ("dbvae", 32, 8, {"image_size": 32, "filters": 4, "latent_dim": 8})),
}
DTYPES = ("float32", "bfloat16")


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """The table's peak for a device kind and compute dtype, or None if unknown."""
  for name, peaks in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return peaks.get(dtype)
  return None


def measured_matmul_tflops(side: int = 2048, seconds: float = 0.5) -> float:
  """This machine's float32 matmul rate (TFLOP/s): the CPU stand-in for a peak."""
  a = jnp.ones((side, side), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  per_call = common.time_call(lambda: matmul(a).block_until_ready(), warmup=1, repeats=3,
                              min_seconds=seconds)
  return 2 * side ** 3 / per_call / 1e12


def _batch(name: str, size: int, batch_size: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  labels = (np.arange(batch_size) % 2).astype(np.int32)
  batch = {"image": rng.random((batch_size, size, size, 3), dtype=np.float32),
           "label": labels, "mask": np.ones(batch_size, bool)}
  if name == "dbvae":
    batch["vae_mask"] = labels == 1
  return batch


def _train_step(name: str, options: dict, dtype: str, conv_impl: str = "auto"):
  from facebias_jax.models import get_model
  from facebias_jax.train import steps

  model = get_model(name, 1, conv_impl=conv_impl, **options)
  tx = steps.make_optimizer(1e-3, total_steps=1000)
  model_def, state = steps.create_train_state(model, tx, jax.random.PRNGKey(0),
                                              compute_dtype=dtype)
  step = steps.make_train_step(model_def, tx, kind="dbvae" if name == "dbvae" else "classifier")
  return step, state


def step_flops(name: str, options: dict, dtype: str, batch: dict) -> float:
  """FLOPs of one train step as XLA counts them (XLA's own convolutions, lowered only)."""
  step, state = _train_step(name, options, dtype, conv_impl="xla")
  analysis = step.lower(state, batch).cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per computation.
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", float("nan")))


def measure_case(name: str, size: int, batch_per_device: int, options: dict, dtype: str, *,
                 steps: int, mesh) -> dict[str, Any]:
  """One (model, dtype) row: compile seconds, step time, img/s, FLOPs and MFU inputs."""
  from facebias_jax.train import sharding

  batch_size = batch_per_device * mesh.size
  host_batch = _batch(name, size, batch_size)
  step, state = _train_step(name, options, dtype)
  state = sharding.replicate(state, mesh)
  batch = sharding.shard_batch(host_batch, mesh)
  start = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  for _ in range(2):  # Warm-up: allocator and autotuning settle.
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics["loss"])
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  flops = step_flops(name, options, dtype, host_batch)
  return {"model": name, "image_size": size, "dtype": dtype, "batch_size": batch_size,
          "devices": mesh.size, "compile_s": compile_s, "step_ms": 1e3 * seconds,
          "img_s": batch_size / seconds, "gflops_per_step": flops / 1e9,
          "achieved_tflops": flops / seconds / 1e12,
          "finite": bool(metrics["finite"]), "loss": float(metrics["loss"])}


def add_utilisation(row: dict[str, Any], device_kind: str, devices: int,
                    cpu_peak: float | None) -> None:
  """``peak_tflops`` (all devices), its source and ``mfu`` on a row."""
  peak = peak_tflops(device_kind, row["dtype"])
  if peak is not None:
    row["peak_tflops"], row["peak_source"] = peak * devices, "PEAK_TFLOPS"
  elif cpu_peak is not None:
    row["peak_tflops"], row["peak_source"] = cpu_peak, "measured float32 matmul"
  else:
    row["peak_tflops"], row["peak_source"] = None, f"unknown for {device_kind!r}"
  row["mfu"] = (row["achieved_tflops"] / row["peak_tflops"] if row["peak_tflops"] else None)


def add_input_rates(rows: list[dict[str, Any]], *, images: int) -> dict[int, float]:
  """Decode + augment img/s per core at each row's image size, and the cores needed."""
  from benchmarks import bench_pipeline

  rates = {size: bench_pipeline.decode_augment_rate(size, images=images)
           for size in sorted({r["image_size"] for r in rows})}
  for row in rows:
    row["input_img_s_per_core"] = rates[row["image_size"]]
    row["input_cores_needed"] = row["img_s"] / rates[row["image_size"]]
  return rates


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="auto", choices=("auto", "full", "tiny"),
                      help="model sizes: 'full' (224 px ResNets, 64 px DB-VAE), 'tiny' "
                           "(CI-sized), 'auto' = full on GPU/TPU, tiny on CPU")
  parser.add_argument("--dtypes", default=",".join(DTYPES),
                      help=f"comma-separated compute dtypes, of {', '.join(DTYPES)}")
  parser.add_argument("--models", default="",
                      help="comma-separated subset of the preset's models (default all)")
  parser.add_argument("--steps", type=int, default=0,
                      help="timed steps per case (default 20 full, 3 tiny)")
  parser.add_argument("--out", default="accelerator",
                      help="results file name under benchmarks/results, without .json")
  args = parser.parse_args(argv)
  args.dtypes = [d for d in args.dtypes.split(",") if d]
  bad = [d for d in args.dtypes if d not in DTYPES] or ([] if args.dtypes else ["<none>"])
  if bad:
    parser.error(f"--dtypes: {bad} not of {', '.join(DTYPES)}")
  if args.preset == "auto":
    args.preset = "tiny" if jax.default_backend() == "cpu" else "full"
  cases = PRESETS[args.preset]
  names = [m for m in args.models.split(",") if m] or [c[0] for c in cases]
  unknown = [m for m in names if m not in {c[0] for c in cases}]
  if unknown:
    parser.error(f"--models: {unknown} not of {', '.join(c[0] for c in cases)}")
  args.cases = [c for c in cases if c[0] in names]
  if args.steps < 0:
    parser.error(f"--steps must be >= 0, got {args.steps}")
  args.steps = args.steps or (20 if args.preset == "full" else 3)
  return args


def main(argv: list[str] | None = None) -> int:
  from facebias_jax.train import sharding

  args = parse_args(argv)
  mesh = sharding.make_mesh()
  device_kind = jax.devices()[0].device_kind
  cpu_peak = measured_matmul_tflops() if jax.default_backend() == "cpu" else None
  rows = []
  for name, size, per_device, options in args.cases:
    for dtype in args.dtypes:
      row = measure_case(name, size, per_device, options, dtype, steps=args.steps, mesh=mesh)
      add_utilisation(row, device_kind, mesh.size, cpu_peak)
      rows.append(row)
      print(f"{name} {size}px {dtype}: {row['img_s']:,.0f} img/s, {row['step_ms']:.1f} ms/step, "
            f"MFU {row['mfu'] if row['mfu'] is None else round(row['mfu'], 3)}", flush=True)
  input_rates = add_input_rates(rows, images=64 if args.preset == "tiny" else 400)
  common.print_table(rows, ["model", "image_size", "dtype", "batch_size", "img_s", "step_ms",
                            "compile_s", "gflops_per_step", "achieved_tflops", "mfu",
                            "input_img_s_per_core", "input_cores_needed"])
  path = common.write_results(args.out, rows, extra={
      "preset": args.preset, "device_kind": device_kind, "devices": mesh.size,
      "cpu_matmul_tflops": cpu_peak,
      "input_img_s_per_core": {str(k): v for k, v in input_rates.items()},
      "note": "median step time after warm-up; FLOPs from XLA's cost analysis of the "
              "lowered step; mfu = achieved / peak (PEAK_TFLOPS, dense, or this CPU's "
              "measured float32 matmul rate)"})
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
