"""Inference throughput: our JAX models vs PyTorch, same process.

Times eval-mode forward passes (BatchNorm running statistics, sigmoid probabilities;
for the DB-VAE the full encode + decode with ``z = mu``) of ``standard_cnn`` and the
DB-VAE at 64 px and ``resnet18`` at 128 px, batch 32 and 256: the library model in
the eval-mode graph of ``facebias_jax.train.steps.split_model``, jitted (default
``conv_impl=auto`` and plain ``xla``), against ``benchmarks/torch_reference.py`` under
``torch.inference_mode``. Writes ``benchmarks/results/inference.json``.

    python -m benchmarks.bench_inference [--quick] [--single_core]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

import jax
from flax import nnx

from benchmarks import common
from benchmarks.bench_train_step import (CONV_IMPLS, MODELS, build_model, interleaved_best,
                                         make_batch, pin_single_core)


def make_jax_infer(name: str, batch_size: int, conv_impl: str) -> Callable[[], None]:
  """A jitted eval-mode forward pass of the library model on a fixed batch."""
  from facebias_jax.models import conv
  from facebias_jax.train import steps

  model = build_model(name, conv_impl)
  model_def, params, model_state = steps.split_model(model)
  images = make_batch(name, batch_size)["image"]

  @jax.jit
  def infer(params, model_state, images):
    model = nnx.merge(model_def.eval, params, model_state)
    logits, aux = model(images)
    out = {"prob": jax.nn.sigmoid(logits[:, 0])}
    if "reconstruction" in aux:
      out["reconstruction"] = aux["reconstruction"]
    return out

  conv.set_conv_impl(conv_impl)
  jax.block_until_ready(infer(params, model_state, images))  # Compile now.
  return lambda: jax.block_until_ready(infer(params, model_state, images))


def measure(name: str, batch_size: int, *, threads: int, quick: bool) -> dict[str, Any]:
  """Images/s of ours (auto and xla convolutions) and of PyTorch for one setting."""
  from benchmarks import torch_reference

  row: dict[str, Any] = {"model": name, "image_size": MODELS[name][0],
                         "batch_size": batch_size}
  fns = {impl: make_jax_infer(name, batch_size, impl) for impl in CONV_IMPLS}
  _, fns["torch"] = torch_reference.make_step(name, batch_size, MODELS[name][0],
                                              threads=threads)
  if threads > 1:
    _, fns["torch_1t"] = torch_reference.make_step(name, batch_size, MODELS[name][0],
                                                   threads=1)
  best = interleaved_best(fns, rounds=2 if quick else 4, min_seconds=0.2 if quick else 0.5)
  for impl in CONV_IMPLS:
    row[f"jax_{impl}_img_s"] = batch_size / best[impl]
  row["torch_img_s"] = batch_size / best["torch"]
  # PyTorch's OpenMP pool stalls badly when another process takes a core, so the
  # reference is PyTorch at its best thread count (--threads or 1).
  row["torch_1t_img_s"] = batch_size / best.get("torch_1t", best["torch"])
  row["torch_best_img_s"] = max(row["torch_img_s"], row["torch_1t_img_s"])
  row["ratio"] = row["jax_auto_img_s"] / row["torch_best_img_s"]
  row["ratio_xla"] = row["jax_xla_img_s"] / row["torch_best_img_s"]
  return row


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="fewer repeats; resnet18 only at batch 32")
  parser.add_argument("--models", default=",".join(MODELS),
                      help=f"comma-separated subset of {', '.join(MODELS)}")
  parser.add_argument("--batch_sizes", default="32,256", help="comma-separated batch sizes")
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                      help="torch.set_num_threads (XLA uses every core of the machine)")
  parser.add_argument("--single_core", action="store_true",
                      help="pin this process to one core and run both frameworks "
                           "single-threaded (robust when other jobs share the machine)")
  args = parser.parse_args(argv)
  names = [m for m in args.models.split(",") if m]
  unknown = [m for m in names if m not in MODELS]
  if unknown:
    parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
  batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
  if not batch_sizes or min(batch_sizes) <= 0:
    parser.error(f"--batch_sizes must be positive integers, got {args.batch_sizes!r}")
  if args.single_core:
    pin_single_core()
    args.threads = 1

  load_before = list(os.getloadavg())
  rows = []
  for name in names:
    for batch_size in batch_sizes:
      if args.quick and name == "resnet18" and batch_size > 32:
        continue
      row = measure(name, batch_size, threads=args.threads, quick=args.quick)
      rows.append(row)
      print(f"{name} b{batch_size}: ours {row['jax_auto_img_s']:.0f} img/s, "
            f"torch {row['torch_img_s']:.0f} (ratio {row['ratio']:.2f})", flush=True)
  common.print_table(rows, ["model", "image_size", "batch_size", "jax_auto_img_s",
                            "jax_xla_img_s", "torch_img_s", "torch_1t_img_s", "ratio",
                            "ratio_xla"])
  extra = {"threads": args.threads, "single_core": args.single_core, "quick": args.quick,
           "load_avg_before": load_before, "load_avg_after": list(os.getloadavg()),
           "note": "images/s of an eval-mode forward pass, best of interleaved rounds; "
                   "ratio = ours (conv_impl=auto) / best PyTorch (--threads or 1 "
                   "thread), same process"}
  path = common.write_results(
      "inference" + ("_single_core" if args.single_core else ""), rows, extra=extra)
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
