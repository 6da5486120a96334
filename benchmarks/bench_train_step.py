"""Training-step throughput: our JAX models and train step vs PyTorch, same run.

For ``standard_cnn`` and the DB-VAE at 64 px and ``resnet18`` at 128 px, batch 32 and
256, it times one full optimisation step (forward, backward, Adam update) of

- the library's model (``facebias_jax.models.get_model``) through the library's own
  jitted, buffer-donating ``facebias_jax.train.steps.make_train_step``, once with the
  default convolution implementation (``conv_impl=auto``: oneDNN's convolutions through
  the XLA FFI on one CPU device, ``facebias_jax.models.onednn``; where it cannot be
  built, the phase forms and batch chunks of ``facebias_jax.models.conv``; the JSON's
  ``machine.onednn_convolutions`` says which) and once with plain XLA convolutions
  (``conv_impl=xla``), with each one's compile time;
- the same architecture, loss and optimiser in PyTorch (``benchmarks/torch_reference.py``)
  in each variant a PyTorch user would try for speed (``--torch_variants``, default
  all): eager, channels-last, ``torch.compile`` (inductor) and compile + channels-last,
  each with ``torch.set_num_threads(--threads)``, and eager also at 1 thread
  (``eager_1t``). Each runs in a child process that works only while this one waits
  (``torch_reference.RemoteStep``: in one process the two OpenMP thread teams would
  slow PyTorch down) and reports its first call's seconds (``torch_<variant>_compile_s``:
  the compilation, for the compiled variants); XLA uses all cores of the machine (2
  here).

and reports images/s of every contender, the fastest PyTorch variant
(``torch_best_variant``), ``ratio`` = ours / that one and ``ratio_vs_eager`` = ours /
eager PyTorch at its better thread count. It also checks that the input pipeline
(``benchmarks.bench_pipeline.measure_pipeline``) delivers batches faster than the
standard CNN's train step consumes them. Writes ``benchmarks/results/train_step.json``.

    python -m benchmarks.bench_train_step [--quick] [--single_core] [--models ...]
        [--torch_variants eager,channels_last,compile,compile_channels_last]

On the 2-core container ``--quick`` (ResNet-18 at batch 32 only, fewer rounds) took
9 min 40 s with ``--no_pipeline``, about 3 min of it the ten ``torch.compile``
compilations (7-40 s each with a cold inductor cache in ``/tmp/torchinductor_*``, less
once it is warm). A full run took about 20 minutes with eager PyTorch alone; expect
about 30 now (estimated, not measured: ResNet-18 at batch 256 dominates, and its
compilation takes about a minute).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

# Model name -> (image size, kwargs of get_model).
MODELS = {
    "standard_cnn": (64, {"image_size": 64}),
    "dbvae": (64, {"image_size": 64}),
    "resnet18": (128, {}),
}
CONV_IMPLS = ("auto", "xla")
# Pause before each contender's timed round (see interleaved_best).
_SETTLE_SECONDS = 0.1
# Warm-up ends once a call is within this factor of the fastest warm-up call so far...
_STEADY_FACTOR = 1.5
# ...or after this many calls (a noisy machine may never get there).
_WARMUP_MAX_CALLS = 30


def _model_kind(name: str) -> str:
  return "dbvae" if name == "dbvae" else "classifier"


def pin_single_core() -> None:
  """Restricts this process to one core before XLA creates its thread pool.

  XLA:CPU sizes its intra-op pool from the process's CPU affinity, so this must run
  before the first JAX computation.
  """
  core = sorted(os.sched_getaffinity(0))[0]
  os.sched_setaffinity(0, {core})


def make_batch(name: str, batch_size: int, seed: int = 0) -> dict[str, Any]:
  """A fixed random batch in the layout ``facebias_jax.train.steps`` expects."""
  image_size = MODELS[name][0]
  rng = np.random.default_rng(seed)
  labels = (rng.random(batch_size) < 0.5).astype(np.int32)
  batch = {"image": jnp.asarray(rng.random((batch_size, image_size, image_size, 3),
                                           dtype=np.float32)),
           "label": jnp.asarray(labels),
           "mask": jnp.ones((batch_size,), bool)}
  if name == "dbvae":
    batch["vae_mask"] = jnp.asarray(labels == 1)
  return batch


def build_model(name: str, conv_impl: str):
  """The library model ``name`` with the convolution choice ``conv_impl``."""
  from facebias_jax.models import get_model

  return get_model(name, 1, conv_impl=conv_impl, **MODELS[name][1])


def make_jax_step(name: str, batch_size: int,
                  conv_impl: str) -> tuple[Callable[[], None], float]:
  """One library train step on a fixed batch, as a blocking zero-argument callable.

  Returns:
    ``(step, compile_seconds)``: the callable, and the seconds its first call took
    (tracing and XLA compilation, which batch chunking lengthens, plus one step).
  """
  from facebias_jax.train import steps

  model = build_model(name, conv_impl)
  tx = steps.make_optimizer(5e-4, total_steps=1000)
  model_def, state = steps.create_train_state(model, tx, jax.random.PRNGKey(0))
  train_step = steps.make_train_step(model_def, tx, kind=_model_kind(name))
  batch = make_batch(name, batch_size)
  holder = {"state": state}
  start = time.perf_counter()
  holder["state"], metrics = train_step(holder["state"], batch)
  jax.block_until_ready(metrics)
  compile_seconds = time.perf_counter() - start

  def run():
    holder["state"], out = train_step(holder["state"], batch)
    jax.block_until_ready(out["loss"])

  return run, compile_seconds


def _seconds(fn: Callable[[], float | None]) -> float:
  """Seconds one call takes: what the call reports (a ``RemoteStep`` timing itself in
  its own process), else the wall time around it."""
  start = time.perf_counter()
  reported = fn()
  return reported if reported is not None else time.perf_counter() - start


def _warm_up(fn: Callable[[], float | None], *, min_seconds: float) -> float:
  """Calls ``fn`` until it runs at steady state; returns its last call's seconds.

  PyTorch needs several calls to get there (oneDNN primitive caches, the OpenMP pool,
  and a compiled step may recompile on an early call); XLA compiled when the step was
  built. The first call is left out (it is the slow one), then at least 3 calls and
  ``min_seconds`` are spent, and it goes on while the latest call is much slower than
  the fastest: a late recompilation must not size the timed rounds.
  """
  _seconds(fn)
  steady = []
  while len(steady) < _WARMUP_MAX_CALLS:
    steady.append(_seconds(fn))
    if (len(steady) >= 3 and sum(steady) >= min_seconds
        and steady[-1] <= _STEADY_FACTOR * min(steady)):
      break
  return steady[-1]


def interleaved_best(fns: dict[str, Callable[[], float | None]], *, rounds: int,
                     min_seconds: float) -> dict[str, float]:
  """Best seconds per call of each function, timed in alternating rounds.

  The machine is shared (other processes come and go), so the functions under
  comparison take turns and each keeps its fastest round: a burst of load then hits
  all of them alike instead of whichever happened to be running.
  """
  inner = {key: max(1, int(min_seconds / max(_warm_up(fn, min_seconds=min_seconds), 1e-9)))
           for key, fn in fns.items()}
  best = {key: float("inf") for key in fns}
  for _ in range(rounds):
    for key, fn in fns.items():
      # Let the previous contender's idle threads stop spinning first: OpenMP and
      # XLA's pool busy-wait for a while after their last task, on the same cores.
      time.sleep(_SETTLE_SECONDS)
      best[key] = min(best[key], sum(_seconds(fn) for _ in range(inner[key])) / inner[key])
  return best


def measure(name: str, batch_size: int, *, threads: int, quick: bool,
            variants: Sequence[str]) -> dict[str, Any]:
  """Images/s of ours (auto and xla convolutions) and of PyTorch for one setting."""
  slow = name == "resnet18" and batch_size >= 256
  row: dict[str, Any] = {"model": name, "image_size": MODELS[name][0],
                         "batch_size": batch_size}
  fns = {}
  for impl in CONV_IMPLS:
    fns[impl], row[f"jax_{impl}_compile_s"] = make_jax_step(name, batch_size, impl)
  best, first_calls = best_with_torch(fns, name, batch_size, threads=threads,
                                      mode="train", variants=variants,
                                      rounds=2 if (quick or slow) else 4,
                                      min_seconds=0.2 if (quick or slow) else 0.5)
  row.update(throughputs(best, batch_size))
  row.update(first_calls)
  row["speedup_vs_xla"] = row["jax_auto_img_s"] / row["jax_xla_img_s"]
  return row


def torch_contenders(variants: Sequence[str], threads: int) -> dict[str, tuple[str, int]]:
  """``torch_<variant>`` -> (variant, thread count) of each PyTorch reference to time.

  Every variant runs at ``threads``; eager also at 1 thread (``torch_eager_1t``) when
  ``threads`` is more: PyTorch's OpenMP pool stalls badly when another process takes
  a core. The compiled variants are not run twice, each child costs a compilation.
  """
  contenders = {f"torch_{variant}": (variant, threads) for variant in variants}
  if "eager" in variants and threads > 1:
    contenders["torch_eager_1t"] = ("eager", 1)
  return contenders


def best_with_torch(fns: dict[str, Callable[[], None]], name: str, batch_size: int, *,
                    threads: int, mode: str, variants: Sequence[str], rounds: int,
                    min_seconds: float) -> tuple[dict[str, float], dict[str, Any]]:
  """``interleaved_best`` of ``fns`` and the PyTorch ``torch_contenders``.

  Each PyTorch reference runs in its own process (``torch_reference.RemoteStep``,
  closed afterwards). One that fails to start (say, ``torch.compile`` cannot build
  its kernels) is reported and left out rather than ending the run.

  Returns:
    ``(best, first_calls)``: best seconds per call by contender, and the row fields
    ``torch_<variant>_compile_s`` (each reference's first call: the compilation for
    the compiled variants) plus ``torch_failed`` (the variants that did not start)
    where any failed.
  """
  from benchmarks import torch_reference

  references, first_calls, failed = {}, {}, []
  try:
    for key, (variant, n) in torch_contenders(variants, threads).items():
      try:
        references[key] = torch_reference.RemoteStep(
            name, batch_size, MODELS[name][0], threads=n, mode=mode, variant=variant)
      except RuntimeError as err:
        print(f"warning: {err}; leaving {key} out", file=sys.stderr, flush=True)
        failed.append(key[len("torch_"):])
        continue
      first_calls[f"{key}_compile_s"] = references[key].first_call_s
    best = interleaved_best({**fns, **references}, rounds=rounds, min_seconds=min_seconds)
  finally:
    for reference in references.values():
      reference.close()
  if failed:
    first_calls["torch_failed"] = failed
  return best, first_calls


def throughputs(best: dict[str, float], batch_size: int) -> dict[str, Any]:
  """Images/s per contender and the ratios to PyTorch, from best seconds per call.

  ``ratio`` compares ours with the fastest PyTorch contender (``torch_best_variant``)
  and ``ratio_vs_eager`` with eager PyTorch at its better thread count; a row where
  no PyTorch reference ran has neither.
  """
  row: dict[str, Any] = {f"jax_{impl}_img_s": batch_size / best[impl]
                         for impl in CONV_IMPLS}
  torch_rates = {key[len("torch_"):]: batch_size / seconds
                 for key, seconds in best.items() if key.startswith("torch_")}
  row.update({f"torch_{variant}_img_s": rate for variant, rate in torch_rates.items()})
  if not torch_rates:
    return row
  row["torch_best_variant"] = max(torch_rates, key=torch_rates.get)
  row["torch_best_img_s"] = torch_rates[row["torch_best_variant"]]
  row["ratio"] = row["jax_auto_img_s"] / row["torch_best_img_s"]
  row["ratio_xla"] = row["jax_xla_img_s"] / row["torch_best_img_s"]
  eager = [rate for variant, rate in torch_rates.items() if variant.startswith("eager")]
  if eager:
    row["ratio_vs_eager"] = row["jax_auto_img_s"] / max(eager)
  return row


def table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
  """The printed table's columns: ours, each PyTorch contender that ran, the fastest
  one and the ratios, then the compile seconds (PyTorch's of the compiled variants;
  the JSON has every contender's first call)."""
  keys = list(dict.fromkeys(key for row in rows for key in row))
  torch_rates = [key for key in keys if key.startswith("torch_") and key.endswith("_img_s")
                 and key != "torch_best_img_s"]
  compiles = [key for key in keys if key.endswith("_compile_s")
              and key.startswith(("jax_", "torch_compile"))]
  return ["model", "image_size", "batch_size", "jax_auto_img_s", "jax_xla_img_s",
          *torch_rates, "torch_best_variant", "ratio", "ratio_vs_eager", "ratio_xla",
          *[key for key in ("speedup_vs_xla",) if key in keys], *compiles]


def summary_line(row: dict[str, Any]) -> str:
  """One setting's result in a line: ours, plain XLA, the fastest PyTorch and ratios."""
  line = (f"{row['model']} b{row['batch_size']}: ours {row['jax_auto_img_s']:.0f} img/s, "
          f"xla {row['jax_xla_img_s']:.0f}")
  if "torch_best_variant" not in row:
    return line + ", no PyTorch reference ran"
  line += (f", torch {row['torch_best_img_s']:.0f} ({row['torch_best_variant']}) "
           f"(ratio {row['ratio']:.2f}")
  if "ratio_vs_eager" in row:
    line += f", vs eager {row['ratio_vs_eager']:.2f}"
  return line + ")"


def pipeline_check(rows: list[dict[str, Any]], *, quick: bool) -> dict[str, Any] | None:
  """Input pipeline images/s vs the standard CNN train step (the fastest consumer)."""
  from benchmarks import bench_pipeline

  steps_by_batch = {r["batch_size"]: r["jax_auto_img_s"] for r in rows
                    if r["model"] == "standard_cnn"}
  if not steps_by_batch:
    return None
  with tempfile.TemporaryDirectory() as data_dir:
    result = bench_pipeline.measure_pipeline(
        data_dir, batch_sizes=sorted(steps_by_batch), num_threads=(2,),
        images=512 if quick else 2048, repeats=2 if quick else 3,
        train_size=1024 if quick else 4096)
  check = []
  for batch_size, step_rate in sorted(steps_by_batch.items()):
    pipe = result["best"][batch_size]["images_per_s"]
    check.append({"batch_size": batch_size, "pipeline_img_s": pipe,
                  "train_step_img_s": step_rate, "headroom": pipe / step_rate,
                  "pipeline_is_bottleneck": pipe < step_rate})
  return {"rows": check}


def model_parser(description: str) -> argparse.ArgumentParser:
  """Flags shared by the train-step and inference benchmarks."""
  parser = argparse.ArgumentParser(description=description)
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
  parser.add_argument("--torch_variants", default=None,
                      help="comma-separated subset of the PyTorch reference variants "
                           "(benchmarks.torch_reference.VARIANTS: eager, channels-last, "
                           "torch.compile and both); default: all")
  return parser


def measure_all(parser: argparse.ArgumentParser, args: argparse.Namespace,
                measure_fn: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
  """Validates the shared flags, then measures every (model, batch size) pair."""
  names = [m for m in args.models.split(",") if m]
  unknown = [m for m in names if m not in MODELS]
  if unknown:
    parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
  batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
  if not batch_sizes or min(batch_sizes) <= 0:
    parser.error(f"--batch_sizes must be positive integers, got {args.batch_sizes!r}")
  from benchmarks import torch_reference  # Imports torch: only once the flags parsed.
  from facebias_jax import host_memory

  host_memory.keep_freed_memory()  # As the training scripts do, before JAX's first op.

  try:
    args.torch_variants = torch_reference.parse_variants(
        args.torch_variants or ",".join(torch_reference.VARIANTS))
  except ValueError as err:
    parser.error(f"--torch_variants: {err}")
  if args.single_core:
    pin_single_core()
    args.threads = 1
  rows = []
  for name in names:
    for batch_size in batch_sizes:
      if args.quick and name == "resnet18" and batch_size > 32:
        continue  # Minutes per round on 2 cores.
      row = measure_fn(name, batch_size, threads=args.threads, quick=args.quick,
                       variants=args.torch_variants)
      rows.append(row)
      print(summary_line(row), flush=True)
  return rows


def main(argv: list[str] | None = None) -> int:
  parser = model_parser(__doc__.splitlines()[0])
  parser.add_argument("--no_pipeline", action="store_true",
                      help="skip the input-pipeline vs train-step check")
  args = parser.parse_args(argv)
  load_before = list(os.getloadavg())
  rows = measure_all(parser, args, measure)
  pipeline = None if args.no_pipeline else pipeline_check(rows, quick=args.quick)
  common.print_table(rows, table_columns(rows))
  extra = {"threads": args.threads, "single_core": args.single_core, "quick": args.quick,
           "torch_variants": list(args.torch_variants),
           "load_avg_before": load_before, "load_avg_after": list(os.getloadavg()),
           "note": "images/s of one full train step (forward, backward, Adam), best of "
                   "interleaved rounds; each PyTorch variant (eager_1t: eager at 1 "
                   "thread, the others at --threads) in its own child process; ratio = "
                   "ours (conv_impl=auto) / the fastest PyTorch variant "
                   "(torch_best_variant), ratio_vs_eager = ours / eager PyTorch at its "
                   "better thread count; torch_<variant>_compile_s = that variant's "
                   "first call (torch.compile's compilation for the compiled ones)"}
  if pipeline:
    print()
    common.print_table(pipeline["rows"], ["batch_size", "pipeline_img_s",
                                          "train_step_img_s", "headroom",
                                          "pipeline_is_bottleneck"])
    extra["pipeline_check"] = pipeline
  path = common.write_results(
      "train_step" + ("_single_core" if args.single_core else ""), rows, extra=extra)
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
