"""A run killed with SIGKILL mid-training and restarted ends exactly where an
uninterrupted run with the same seed ends (weights, BatchNorm statistics,
optimizer state), including the DB-VAE's per-epoch sampling plan."""

import os
import re
import signal
import subprocess
import sys

import jax
import numpy as np

import train_testlib
from facebias_jax import runs
from facebias_jax.train import checkpoint, loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 12  # 1.5 epochs of 8 steps: the kill lands in epoch 0, the end in epoch 1.
KILL_AT = 7       # After the step-6 checkpoint was handed to orbax (it may be unfinished).

CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import train_testlib
from facebias_jax.train import loop
config = train_testlib.tiny_config("dbvae", {data_dir!r}, max_steps={steps},
                                   checkpoint_every_steps=3)
config.eval.at_end = False

def kill_at(step):
  if step == {kill_at}:
    os.kill(os.getpid(), signal.SIGKILL)

loop.train_and_evaluate(config, {workdir!r}, on_step=kill_at)
"""


def _config(data_dir):
  config = train_testlib.tiny_config("dbvae", data_dir, max_steps=TOTAL_STEPS,
                                     checkpoint_every_steps=3)
  config.eval.at_end = False
  return config


def _final_state(workdir):
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    step = ckpt.latest_step()
    restored = ckpt.manager.restore(step)
    return step, {name: restored[name] for name in restored.keys()}
  finally:
    ckpt.close()


def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path):
  data_dir = str(tmp_path / "tfds")
  train_testlib.prepare_tiny_dataset(data_dir)
  killed = str(tmp_path / "killed")
  script = CHILD.format(tests=os.path.join(ROOT, "tests"), data_dir=data_dir, workdir=killed,
                        steps=TOTAL_STEPS, kill_at=KILL_AT)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  interrupted_at = max(runs.finished_steps(killed))
  assert interrupted_at in (3, 6)

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
