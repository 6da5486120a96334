"""Inference throughput: our JAX models vs PyTorch, same run, alternating rounds.

Times eval-mode forward passes (BatchNorm running statistics, sigmoid probabilities;
for the DB-VAE the full encode + decode with ``z = mu``) of ``standard_cnn`` and the
DB-VAE at 64 px and ``resnet18`` at 128 px, batch 32 and 256: the library model in
the eval-mode graph of ``facebias_jax.train.steps.split_model``, jitted (default
``conv_impl=auto`` and plain ``xla``), against ``benchmarks/torch_reference.py`` under
``torch.inference_mode`` in its variants (eager and channels-last at ``--threads``,
eager also at 1 thread, and ``torch.compile`` of the eval forward without and with
channels-last; ``--torch_variants`` picks a subset), each in a child process (as in
``bench_train_step``). ``ratio`` is ours / the fastest variant, ``ratio_vs_eager`` ours
/ eager PyTorch. Writes ``benchmarks/results/inference.json``.

    python -m benchmarks.bench_inference [--quick] [--single_core] [--torch_variants ...]

A ``--quick`` run on the 2-core container takes about 5 minutes (estimated from one
setting, the DB-VAE at batch 32: 50 s, 15 s of it compiling the eval forward twice).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence

import jax
from flax import nnx

from benchmarks import common
from benchmarks.bench_train_step import (CONV_IMPLS, MODELS, best_with_torch, build_model,
                                         make_batch, measure_all, model_parser,
                                         table_columns, throughputs)


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


def measure(name: str, batch_size: int, *, threads: int, quick: bool,
            variants: Sequence[str]) -> dict[str, Any]:
  """Images/s of ours (auto and xla convolutions) and of PyTorch for one setting."""
  row: dict[str, Any] = {"model": name, "image_size": MODELS[name][0],
                         "batch_size": batch_size}
  fns = {impl: make_jax_infer(name, batch_size, impl) for impl in CONV_IMPLS}
  best, first_calls = best_with_torch(fns, name, batch_size, threads=threads,
                                      mode="infer", variants=variants,
                                      rounds=2 if quick else 4,
                                      min_seconds=0.2 if quick else 0.5)
  row.update(throughputs(best, batch_size))
  row.update(first_calls)
  return row


def main(argv: list[str] | None = None) -> int:
  parser = model_parser(__doc__.splitlines()[0])
  args = parser.parse_args(argv)
  load_before = list(os.getloadavg())
  rows = measure_all(parser, args, measure)
  common.print_table(rows, table_columns(rows))
  extra = {"threads": args.threads, "single_core": args.single_core, "quick": args.quick,
           "torch_variants": list(args.torch_variants),
           "load_avg_before": load_before, "load_avg_after": list(os.getloadavg()),
           "note": "images/s of an eval-mode forward pass, best of interleaved rounds; "
                   "each PyTorch variant (eager_1t: eager at 1 thread, the others at "
                   "--threads) in its own child process; ratio = ours (conv_impl=auto) "
                   "/ the fastest PyTorch variant (torch_best_variant), ratio_vs_eager "
                   "= ours / eager PyTorch at its better thread count; "
                   "torch_<variant>_compile_s = that variant's first call "
                   "(torch.compile's compilation for the compiled ones)"}
  path = common.write_results(
      "inference" + ("_single_core" if args.single_core else ""), rows, extra=extra)
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
