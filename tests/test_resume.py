"""A run killed with SIGKILL mid-training and restarted ends exactly where an
uninterrupted run with the same seed ends (weights, BatchNorm statistics,
optimizer state, Group DRO's weights), including the DB-VAE's per-epoch sampling plan,
random crops, JTT's error set and the checkpoint selected by validation; for each kind
of run (``train_testlib.RESUME_RUNS``: the DB-VAE, a fine-tune, every training method)."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

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
config = train_testlib.resume_config({kind!r}, {data_dir!r}, {steps}, {weights!r})

def kill_at(step):
  if step == {kill_at}:
    os.kill(os.getpid(), signal.SIGKILL)

loop.train_and_evaluate(config, {workdir!r}, on_step=kill_at)
"""


def _weights(tmp_path):
  """A tiny torchvision-layout ResNet-18 state dict written with torch.save."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch_reference  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  path = str(tmp_path / "resnet18.pth")
  torch.save(torch_reference.resnet18(num_classes=1, width=0.125).state_dict(), path)
  return path


def _final_state(workdir):
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    step = ckpt.latest_step()
    restored = ckpt.manager.restore(step)
    return step, {name: restored[name] for name in restored.keys()}
  finally:
    ckpt.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", train_testlib.RESUME_RUNS)
def test_sigkill_and_resume_matches_uninterrupted_run(kind, tmp_path):
  data_dir = str(tmp_path / "tfds")
  train_testlib.prepare_tiny_dataset(data_dir)
  weights = _weights(tmp_path) if kind == "finetune" else None
  config = lambda: train_testlib.resume_config(kind, data_dir, TOTAL_STEPS, weights)
  killed = str(tmp_path / "killed")
  script = CHILD.format(tests=os.path.join(ROOT, "tests"), data_dir=data_dir, workdir=killed,
                        steps=TOTAL_STEPS, kill_at=KILL_AT, kind=kind, weights=weights)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  interrupted_at = max(runs.finished_steps(
      os.path.join(killed, loop.DFR_BASE_DIR) if kind == "dfr" else killed))
  assert interrupted_at in (3, 6)

  resumed = loop.train_and_evaluate(config(), killed)
  uninterrupted = str(tmp_path / "uninterrupted")
  reference = loop.train_and_evaluate(config(), uninterrupted)
  assert resumed["selection"] == reference["selection"]
  assert reference["selection"]["step"] in (3, 6, 9, 12)
  # DFR: the killed run is its base; its own checkpoint is the refit at the base's
  # selected step.
  trained = [(killed, uninterrupted)]
  if kind == "dfr":
    trained = [tuple(os.path.join(d, loop.DFR_BASE_DIR) for d in (killed, uninterrupted))]
  else:
    assert resumed["training"]["steps"] == TOTAL_STEPS
  for dirs in trained + [(killed, uninterrupted)]:
    (step_a, state_a), (step_b, state_b) = (_final_state(d) for d in dirs)
    assert step_a == step_b
    leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
    assert len(leaves_a) == len(leaves_b) > 10
    for a, b in zip(leaves_a, leaves_b):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  killed, uninterrupted = trained[0]
  assert _final_state(killed)[0] == TOTAL_STEPS
  # The log holds each step's training and validation record at most once, the
  # resumed part included, and the same validations as the uninterrupted run.
  killed_log, reference_log = runs.read_metrics(killed), runs.read_metrics(uninterrupted)
  for kind in ("loss", "val_accuracy"):
    logged = [r["step"] for r in killed_log if kind in r]
    assert logged == sorted(set(logged)) and logged[-1] == TOTAL_STEPS, kind
  validations = lambda log: [(r["step"], r["val_accuracy"]) for r in log if "val_accuracy" in r]
  assert validations(killed_log) == validations(reference_log) == [
      (s, v) for s, v in validations(reference_log) if s in (3, 6, 9, 12)]
