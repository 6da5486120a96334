"""Inference throughput: our JAX models vs PyTorch, same run, alternating rounds.

Times eval-mode forward passes (BatchNorm running statistics, sigmoid probabilities;
for the DB-VAE the full encode + decode with ``z = mu``) of ``standard_cnn`` and the
DB-VAE at 64 px and ``resnet18`` at 128 px, batch 32 and 256: the library model in
the eval-mode graph of ``facebias_jax.train.steps.split_model``, jitted (default
``conv_impl=auto`` and plain ``xla``), against ``benchmarks/torch_reference.py`` under
``torch.inference_mode`` in a child process (as in ``bench_train_step``). Writes
``benchmarks/results/inference.json``.

    python -m benchmarks.bench_inference [--quick] [--single_core]
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import jax
from flax import nnx

from benchmarks import common
from benchmarks.bench_train_step import (CONV_IMPLS, MODELS, best_with_torch, build_model,
                                         make_batch, measure_all, model_parser,
                                         throughputs)


def make_jax_infer(name: str, batch_size: int, conv_impl: str) -> Callable[[], None]:
  """A jitted eval-mode forward pass of the library model on a fixed batch."""
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

  jax.block_until_ready(infer(params, model_state, images))  # Compile now.

  def run() -> None:
    jax.block_until_ready(infer(params, model_state, images))

  return run


def measure(name: str, batch_size: int, *, threads: int, quick: bool) -> dict[str, Any]:
  """Images/s of ours (auto and xla convolutions) and of PyTorch for one setting."""
  row: dict[str, Any] = {"model": name, "image_size": MODELS[name][0],
                         "batch_size": batch_size}
  fns = {impl: make_jax_infer(name, batch_size, impl) for impl in CONV_IMPLS}
  best = best_with_torch(fns, name, batch_size, threads=threads, mode="infer",
                         rounds=2 if quick else 4, min_seconds=0.2 if quick else 0.5)
  row.update(throughputs(best, batch_size))
  return row


def main(argv: list[str] | None = None) -> int:
  parser = model_parser(__doc__.splitlines()[0])
  args = parser.parse_args(argv)
  load_before = list(os.getloadavg())
  rows = measure_all(parser, args, measure)
  common.print_table(rows, ["model", "image_size", "batch_size", "jax_auto_img_s",
                            "jax_xla_img_s", "torch_img_s", "torch_1t_img_s", "ratio",
                            "ratio_xla"])
  extra = {"threads": args.threads, "single_core": args.single_core, "quick": args.quick,
           "load_avg_before": load_before, "load_avg_after": list(os.getloadavg()),
           "note": "images/s of an eval-mode forward pass, best of interleaved rounds; "
                   "ratio = ours (conv_impl=auto) / best PyTorch (--threads or 1 "
                   "thread) in a child process, alternating rounds"}
  path = common.write_results(
      "inference" + ("_single_core" if args.single_core else ""), rows, extra=extra)
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
