r"""The training loop against its bare step: where a run's time goes beyond the step.

In one process, on the config a flagfile gives (default: the standard CNN of
``make demo``, 32 px, batch 32), it measures

- ``loop``: ``facebias_jax.train.loop.train_and_evaluate`` for ``--steps`` steps (default
  the config's whole run; no final evaluation), a fresh run each round (empty workdir
  and image cache), timed per step through its ``on_step`` hook; the steady rate
  leaves out the first ``--warmup`` steps (compilation), and a second rate also the
  steps that checkpoint or validate;
- ``bare``: the same jitted train step (same model, optimizer and batch shapes, built
  through ``facebias_jax.train.steps``) called back to back on one batch already on the
  device, as ``benchmarks/bench_train_step.py`` times it;
- ``pipeline``: the loop's input side alone, ``plan.batches`` then the host-to-device
  copy (``sharding.shard_batch``), at the same batch size, with nothing else running;

and reports ``loop / bare`` (1 = no overhead) with the overhead split into what the
input side costs and the rest (checkpoints, metric fetches, logging). Run ``loop`` and
``bare`` in alternating rounds (``--rounds``) so a busy machine hits both alike; each
keeps its best round. Writes ``benchmarks/results/loop.json`` (``--out``).

    python -m benchmarks.bench_loop [--flagfile=experiments/flags/cnn_synthetic.flags]
        [--steps=0] [--rounds=2] [--out=loop]

About 1.5 minutes on the 2-core container with the defaults (the demo's data must be
prepared: ``make demo`` does it, or the first run here does, about a minute).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/classifier.py",
    "Training config file; overridable as --config.a.b=value (as in train_classifier).")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps per loop round; 0 = the config's "
                              "own run (the demo: 3 epochs).", lower_bound=0)
_WARMUP = flags.DEFINE_integer("warmup", 20, "Steps left out of the steady rate "
                               "(compilation, thread start-up).", lower_bound=1)
_OUT = flags.DEFINE_string("out", "loop", "Results file name under benchmarks/results.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating loop / bare rounds; each keeps "
                               "its best.", lower_bound=1)
DEFAULT_FLAGFILE = "experiments/flags/cnn_synthetic.flags"


def steady_rate(times: list[float], warmup: int, skip: frozenset[int] = frozenset()) -> float:
  """Steps/s after step ``warmup`` from the times steps 1, 2, ... ended, leaving out the
  intervals that end at a step in ``skip`` (1-based)."""
  if len(times) <= warmup + 1:
    raise ValueError(f"--steps must exceed --warmup + 1 ({warmup + 1}), got {len(times)}")
  intervals = [(step, times[step - 1] - times[step - 2])
               for step in range(warmup + 2, len(times) + 1) if step not in skip]
  return len(intervals) / sum(seconds for _, seconds in intervals)


def periodic_steps(config, steps_per_epoch: int, steps: int) -> frozenset[int]:
  """Steps after which the loop checkpoints or validates (epoch ends, every
  ``checkpoint_every_steps``, the last step)."""
  every = int(config.train.checkpoint_every_steps)
  return frozenset(s for s in range(1, steps + 1)
                   if s % every == 0 or s % steps_per_epoch == 0 or s == steps)


def time_loop(config, steps: int, warmup: int, steps_per_epoch: int) -> dict[str, float]:
  """Steady steps/s of ``train_and_evaluate`` in a fresh workdir: everything included,
  and without the steps that checkpoint or validate; its wall time."""
  from facebias_jax.data import image_cache
  from facebias_jax.train import loop

  image_cache.clear()  # Every round is a fresh run: its first epoch reads from disk.
  config = config.copy_and_resolve_references()
  config.train.max_steps = steps
  config.eval.at_end = False
  times = []
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    loop.train_and_evaluate(config, workdir, on_step=lambda _: times.append(time.perf_counter()))
    wall = time.perf_counter() - start
  return {"steps_per_s": steady_rate(times, warmup),
          "steps_per_s_between_saves": steady_rate(
              times, warmup, periodic_steps(config, steps_per_epoch, steps)),
          "wall_s": wall, "first_step_s": times[0] - start}


def _first_inputs(config, data, mesh) -> dict[str, Any]:
  """One batch of the run's first epoch, as the step receives it (on the device)."""
  from facebias_jax.train import plan as plan_lib, sharding

  batch = next(iter(_input_batches(config, data)))
  inputs = {"image": batch["image"], "label": batch["label"], "mask": batch["mask"]}
  if config.model.name == "dbvae":
    inputs["vae_mask"] = plan_lib.face_flags(batch.get("attributes", {}), batch["label"],
                                             data.face_key) & batch["mask"]
  return sharding.shard_batch(inputs, mesh)


def _input_batches(config, data):
  from facebias_jax.train import plan as plan_lib

  plan = plan_lib.epoch_plan(config, data, 0)
  return plan_lib.batches(config, data.source, plan, train=True, epoch=0)


def make_bare_step(config, data, total_steps: int):
  """The loop's train step on one device-resident batch: ``run(n)`` takes n steps."""
  import jax

  from facebias_jax import runs
  from facebias_jax.train import config as config_lib, sharding, steps as steps_lib

  mesh = sharding.make_mesh()
  tx = config_lib.make_optimizer_from_config(config, total_steps=total_steps)
  model_def, state = steps_lib.create_train_state(
      runs.build_model(config), tx, jax.random.PRNGKey(int(config.seed)),
      compute_dtype=config.train.get("dtype", "float32"))
  step = steps_lib.make_train_step(model_def, tx, kind="dbvae" if config.model.name == "dbvae"
                                   else "classifier", kl_weight=float(config.debias.kl_weight),
                                   reconstruction_loss=config.debias.reconstruction_loss)
  holder = {"state": sharding.replicate(state, mesh)}
  inputs = _first_inputs(config, data, mesh)

  def run(n: int) -> None:
    for _ in range(n):
      holder["state"], metrics = step(holder["state"], inputs)
    jax.block_until_ready(metrics["loss"])

  run(1)  # Compiles.
  return run


def time_bare(run, steps: int) -> float:
  """Steps/s of ``steps`` bare steps."""
  start = time.perf_counter()
  run(steps)
  return steps / (time.perf_counter() - start)


def time_pipeline(config, data, steps: int) -> float:
  """Batches/s of the input side alone: pipeline batches copied to the device."""
  import jax

  from facebias_jax.train import sharding

  mesh = sharding.make_mesh()
  it = iter(_input_batches(config, data))
  next(it)  # Reader threads start.
  start = time.perf_counter()
  done = 0
  for batch in it:
    placed = sharding.shard_batch({k: batch[k] for k in ("image", "label", "mask")}, mesh)
    done += 1
    if done == steps:
      break
  jax.block_until_ready(placed)
  return done / (time.perf_counter() - start)


def summarize(loop_rate: float, bare_rate: float, pipeline_rate: float) -> dict[str, float]:
  """Ratios and the per-step overhead, split into the input side and the rest.

  If the input side ran serially with the step it would cost ``1 / pipeline_rate`` per
  step; the part of the overhead beyond that is bookkeeping (logging, checkpoints).
  """
  step_ms, loop_ms = 1e3 / bare_rate, 1e3 / loop_rate
  input_ms = 1e3 / pipeline_rate
  overhead_ms = loop_ms - step_ms
  return {"loop_over_bare": loop_rate / bare_rate,
          "overhead_percent": 100.0 * overhead_ms / loop_ms,
          "step_ms": step_ms, "loop_ms_per_step": loop_ms, "overhead_ms": overhead_ms,
          "input_ms_per_batch_alone": input_ms,
          "overhead_beyond_input_ms": overhead_ms - min(input_ms, overhead_ms)}


def main(argv: list[str]) -> None:
  del argv
  from facebias_jax import host_memory

  host_memory.keep_freed_memory()  # As the training scripts do, before JAX's first op.
  import jax

  from benchmarks import common
  from facebias_jax.train import plan as plan_lib

  config = _CONFIG.value
  data = plan_lib.TrainData(config)  # Prepares the dataset on first use.
  steps_per_epoch = plan_lib.epoch_length(config, data) // int(config.train.batch_size)
  steps = _STEPS.value or (int(config.train.max_steps) or
                           int(config.train.num_epochs) * steps_per_epoch)
  warmup = _WARMUP.value
  if steps <= warmup + 1:
    raise app.UsageError(f"--steps={steps} must exceed --warmup + 1 = {warmup + 1}")
  bare = make_bare_step(config, data, steps)
  loops, bares = [], []
  for round_index in range(_ROUNDS.value):
    loops.append(time_loop(config, steps, warmup, steps_per_epoch))
    bares.append(time_bare(bare, steps - warmup))
    print(f"round {round_index + 1}: loop {loops[-1]['steps_per_s']:.1f} steps/s "
          f"({loops[-1]['steps_per_s_between_saves']:.1f} between checkpoints and "
          f"validations), bare {bares[-1]:.1f} steps/s", flush=True)
  pipeline_rate = time_pipeline(config, data, min(steps, 400))
  best_loop = max(loops, key=lambda r: r["steps_per_s"])
  bare_rate = max(bares)
  row = {"model": config.model.name, "image_size": int(config.data.image_size),
         "batch_size": int(config.train.batch_size), "steps": steps,
         "steps_per_epoch": steps_per_epoch,
         "loop_steps_per_s": best_loop["steps_per_s"],
         "loop_steps_per_s_between_saves": max(r["steps_per_s_between_saves"] for r in loops),
         "bare_steps_per_s": bare_rate,
         "pipeline_batches_per_s": pipeline_rate, "loop_wall_s": best_loop["wall_s"],
         "loop_first_step_s": best_loop["first_step_s"],
         **summarize(best_loop["steps_per_s"], bare_rate, pipeline_rate)}
  row["between_saves_over_bare"] = row["loop_steps_per_s_between_saves"] / bare_rate
  common.print_table([row], ["model", "batch_size", "loop_steps_per_s",
                             "loop_steps_per_s_between_saves", "bare_steps_per_s",
                             "pipeline_batches_per_s", "loop_over_bare",
                             "between_saves_over_bare", "overhead_percent"])
  path = common.write_results(_OUT.value, [row], extra={
      "rounds": {"loop": loops, "bare": bares}, "devices": [str(d) for d in jax.devices()],
      "argv": sys.argv[1:],
      "note": "steady steps/s after the warm-up steps; loop = train_and_evaluate with "
              "eval.at_end=False (logging, checkpoints and validation as configured), "
              "bare = the same jitted step on one device-resident batch"})
  print(f"wrote {path}")


if __name__ == "__main__":
  from experiments.common import run as common_run  # Quiet orbax logs, compile cache.

  if not any(a.startswith("--flagfile") for a in sys.argv[1:]) and os.path.exists(
      DEFAULT_FLAGFILE):
    sys.argv.insert(1, f"--flagfile={DEFAULT_FLAGFILE}")
  common_run(main)
