"""A run killed with SIGKILL mid-training and restarted ends exactly where an
uninterrupted run with the same seed ends (weights, BatchNorm statistics,
optimizer state), including the DB-VAE's per-epoch sampling plan."""

import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np

import train_testlib
from facebias_jax.train import checkpoint, loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 12  # 1.5 epochs of 8 steps: the kill lands in epoch 0, the end in epoch 1.

CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import train_testlib
from facebias_jax.train import loop
config = train_testlib.tiny_config("dbvae", {data_dir!r}, max_steps={steps},
                                   checkpoint_every_steps=3)
config.eval.at_end = False
real_batches = loop._batches

def slow_batches(*args, **kwargs):
  # Slow the killed run down so the parent can kill it after its first checkpoint.
  for batch in real_batches(*args, **kwargs):
    time.sleep(0.5)
    yield batch

loop._batches = slow_batches
loop.train_and_evaluate(config, {workdir!r})
"""


def _config(data_dir):
  config = train_testlib.tiny_config("dbvae", data_dir, max_steps=TOTAL_STEPS,
                                     checkpoint_every_steps=3)
  config.eval.at_end = False
  return config


def _final_state(workdir):
  config = _config("unused")
  del config
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    step = ckpt.latest_step()
    return step, ckpt.manager.restore(step).state
  finally:
    ckpt.close()


def _wait_for_checkpoint(directory, proc, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.isdir(directory) and any(re.fullmatch(r"\d+", d) for d in os.listdir(directory)):
      return
    if proc.poll() is not None:
      raise AssertionError(f"training exited before its first checkpoint: "
                           f"{proc.stderr.read()[-3000:]}")
    time.sleep(0.05)
  raise AssertionError("no checkpoint appeared")


def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path):
  data_dir = str(tmp_path / "tfds")
  train_testlib.prepare_tiny_dataset(data_dir)
  killed = str(tmp_path / "killed")
  script = CHILD.format(tests=os.path.join(ROOT, "tests"), data_dir=data_dir, workdir=killed,
                        steps=TOTAL_STEPS)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    _wait_for_checkpoint(os.path.join(killed, "checkpoints"), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == -signal.SIGKILL
  ckpt = checkpoint.Checkpointer(killed)
  interrupted_at = ckpt.latest_step()
  ckpt.close()
  assert interrupted_at is not None and interrupted_at < TOTAL_STEPS

  resumed = loop.train_and_evaluate(_config(data_dir), killed)
  assert resumed["training"]["steps"] == TOTAL_STEPS
  uninterrupted = str(tmp_path / "uninterrupted")
  loop.train_and_evaluate(_config(data_dir), uninterrupted)

  step_a, state_a = _final_state(killed)
  step_b, state_b = _final_state(uninterrupted)
  assert step_a == step_b == TOTAL_STEPS
  leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
  assert len(leaves_a) == len(leaves_b) > 10
  for a, b in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  # The log holds each step at most once, the resumed part included.
  with open(os.path.join(killed, "metrics.jsonl")) as f:
    logged = [int(re.search(r'"step": (\d+)', line).group(1)) for line in f]
  assert logged == sorted(set(logged)) and logged[-1] == TOTAL_STEPS
