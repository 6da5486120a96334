"""What an operator meets: readers next to a training run, damaged checkpoints, a second
run on one workdir, SIGTERM / Ctrl-C, unwritable workdirs, a run that collapses, and a
schedule whose length changes on resume."""

import errno
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import train_testlib
from facebias_jax import runs
from facebias_jax.train import checkpoint, loop, workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(data_dir, steps, **train):
  config = train_testlib.tiny_config("cnn", data_dir, max_steps=steps, **train)
  config.train.checkpoint_every_steps = 3
  config.train.keep_checkpoints = 10
  config.eval.at_end = False
  return config


def _state(workdir):
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    step = ckpt.latest_step()
    restored = ckpt.manager.restore(step)
    return step, jax.tree.leaves({k: restored[k] for k in (runs.MODEL_ITEM, runs.TRAIN_ITEM)})
  finally:
    ckpt.close()


def _assert_same_state(a, b):
  (step_a, leaves_a), (step_b, leaves_b) = _state(a), _state(b)
  assert step_a == step_b and len(leaves_a) == len(leaves_b) > 10
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _child(script, env=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **(env or {}))
  return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ----------------------------------------------------------------------------- readers


@pytest.mark.slow
def test_reading_a_run_while_it_trains_leaves_every_checkpoint_intact(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  script = f"""
import sys; sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
import train_testlib
from facebias_jax.train import loop
config = train_testlib.tiny_config("cnn", {data_dir!r}, max_steps=40,
                                   checkpoint_every_steps=1, keep_checkpoints=100)
config.eval.at_end = False
loop.train_and_evaluate(config, {workdir!r})
"""
  proc = _child(script)
  reads = []
  while proc.poll() is None:
    try:
      reads.append(runs.load_run(workdir).step)
    except FileNotFoundError:
      time.sleep(0.05)  # No config.json or checkpoint yet.
  _, err = proc.communicate()
  assert proc.returncode == 0, err[-3000:]
  assert len(reads) >= 3 and reads == sorted(reads)
  assert runs.finished_steps(workdir) == list(range(1, 41))
  assert not [n for n in os.listdir(runs.checkpoint_dir(workdir)) if not n.isdigit()]
  for step in (1, 20, 40):
    assert runs.load_run(workdir, step=step).step == step


# ----------------------------------------------------------------------------- damage


def _damage(step_dir, how):
  files = sorted((os.path.getsize(os.path.join(d, f)), os.path.join(d, f))
                 for d, _, names in os.walk(os.path.join(step_dir, "model")) for f in names)
  largest = files[-1][1]
  if how == "flip":  # One bit of the largest parameter file.
    with open(largest, "r+b") as f:
      f.seek(os.path.getsize(largest) // 2)
      byte = f.read(1)
      f.seek(-1, 1)
      f.write(bytes([byte[0] ^ 0x10]))
  elif how == "truncate":
    with open(largest, "r+b") as f:
      f.truncate(os.path.getsize(largest) // 3)
  elif how == "missing_item":
    subprocess.run(["rm", "-rf", os.path.join(step_dir, "sampler")], check=True)
  elif how == "empty":
    for name in os.listdir(step_dir):
      subprocess.run(["rm", "-rf", os.path.join(step_dir, name)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flip", "truncate", "missing_item", "empty"])
def test_a_damaged_latest_checkpoint_is_moved_aside_and_the_run_resumes_exactly(
    data_dir, tmp_path, how, caplog):
  damaged, reference = str(tmp_path / "damaged"), str(tmp_path / "reference")
  loop.train_and_evaluate(_config(data_dir, 6), damaged)
  loop.train_and_evaluate(_config(data_dir, 9), reference)
  _damage(runs.step_dir(damaged, 6), how)
  # Readers fall back to the newest step that restores, and say so; never write.
  if how != "missing_item":  # A lost sampler item does not concern the model.
    with caplog.at_level("WARNING"):
      assert runs.load_run(damaged).step == 3
    assert "checkpoint step 6" in caplog.text
    with pytest.raises(runs.CorruptCheckpointError, match="step 6.*pick another step"):
      runs.load_run(damaged, step=6)
    assert runs.finished_steps(damaged) == [3, 6]
  caplog.clear()
  with caplog.at_level("WARNING"):
    loop.train_and_evaluate(_config(data_dir, 9), damaged)
  assert "checkpoint step 6" in caplog.text and "6.corrupt" in caplog.text
  assert os.path.isdir(os.path.join(runs.checkpoint_dir(damaged), "6.corrupt"))
  assert runs.finished_steps(damaged) == [3, 6, 9]
  _assert_same_state(damaged, reference)  # Resumed from 3: steps 4-9 replayed exactly.


@pytest.mark.slow
def test_no_checkpoint_that_restores_is_a_clear_error(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(_config(data_dir, 6), workdir)
  for step in (3, 6):
    _damage(runs.step_dir(workdir, step), "truncate")
  with pytest.raises(runs.CorruptCheckpointError, match=r"no checkpoint restores: .*step 6"
                                                        r".*step 3"):
    loop.train_and_evaluate(_config(data_dir, 9), workdir)
  assert sorted(os.listdir(runs.checkpoint_dir(workdir))) == ["3.corrupt", "6.corrupt"]


# ----------------------------------------------------------------------------- one run per workdir


@pytest.mark.slow
def test_a_second_run_on_the_same_workdir_is_refused(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with workdir_lib.WorkdirLock(workdir):
    with pytest.raises(workdir_lib.WorkdirBusyError, match=f"pid {os.getpid()} on"):
      loop.train_and_evaluate(_config(data_dir, 3), workdir)
  # Released on exit (and by the kernel when a process dies): the run goes ahead.
  loop.train_and_evaluate(_config(data_dir, 3), workdir)
  assert runs.finished_steps(workdir) == [3]


def test_unwritable_workdirs_are_one_clear_error(tmp_path, monkeypatch):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
    workdir_lib.check_writable(str(a_file))

  def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")

  monkeypatch.setattr("builtins.open", read_only)
  with pytest.raises(OSError, match="read-only filesystem; choose a writable folder"):
    workdir_lib.check_writable(str(tmp_path / "ro"))


# ----------------------------------------------------------------------------- signals


STOPPED_CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import train_testlib
from absl import app
from experiments import common
from facebias_jax.train import loop

def main(argv):
  config = train_testlib.tiny_config("cnn", {data_dir!r}, max_steps=12,
                                     checkpoint_every_steps=100)
  config.eval.at_end = False
  send = lambda step: os.kill(os.getpid(), signal.{signal}) if step == 4 else None
  loop.train_and_evaluate(config, {workdir!r}, on_step=send)

sys.argv = ["train_classifier"]
common.run(main)
"""


@pytest.mark.slow
@pytest.mark.parametrize("name,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_sigterm_and_ctrl_c_checkpoint_at_the_next_step_and_exit(data_dir, tmp_path, name,
                                                                  code):
  workdir = str(tmp_path / "run")
  proc = _child(STOPPED_CHILD.format(tests=os.path.join(ROOT, "tests"), data_dir=data_dir,
                                     workdir=workdir, signal=name))
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == code, err[-3000:]
  assert f"train_classifier: stopped by {name} after step 5; checkpoint saved in {workdir}" \
      in err
  assert "Traceback" not in err
  assert runs.finished_steps(workdir) == [5]  # Checkpointing every 100 steps otherwise.
  config = train_testlib.tiny_config("cnn", data_dir, max_steps=12, checkpoint_every_steps=100)
  config.eval.at_end = False
  loop.train_and_evaluate(config, workdir)
  reference = str(tmp_path / "reference")
  loop.train_and_evaluate(config, reference)
  _assert_same_state(workdir, reference)


# ----------------------------------------------------------------------------- config and collapse


@pytest.mark.slow
def test_run_length_is_part_of_the_experiment_when_the_schedule_depends_on_it(data_dir,
                                                                            tmp_path):
  workdir = str(tmp_path / "run")
  config = _config(data_dir, 3, schedule="warmup_cosine", warmup_steps=1)
  loop.train_and_evaluate(config, workdir)
  config.train.max_steps = 6
  with pytest.raises(runs.ConfigMismatchError, match="train.max_steps: saved 3 vs now 6"):
    loop.train_and_evaluate(config, workdir)
  constant = _config(data_dir, 3)
  loop.train_and_evaluate(constant, str(tmp_path / "constant"))
  constant.train.max_steps = 6  # A constant learning rate: only a longer run.
  assert loop.train_and_evaluate(constant, str(tmp_path / "constant"))["training"]["steps"] == 6


@pytest.mark.slow
def test_a_collapsed_model_is_reported_as_such(data_dir, tmp_path, caplog):
  workdir = str(tmp_path / "collapsed")
  config = train_testlib.tiny_config("cnn", data_dir, learning_rate=1.0, max_steps=8)
  config.eval.every_steps = 4
  with caplog.at_level("WARNING"):
    report = loop.train_and_evaluate(config, workdir)
  constant = report["metrics"]["settings"]["constant_prediction"]
  assert constant in (0, 1)
  assert "predicts class" in caplog.text and "collapsed" in caplog.text
  assert f"predicts class {constant} for every example" in open(
      os.path.join(workdir, "report.md")).read()
  records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["val_constant_prediction"] for r in records if "val_accuracy" in r][-1] == constant


# ----------------------------------------------------------------------------- full disk


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoints(data_dir, tmp_path,
                                                                    monkeypatch, caplog):
  from etils.epath import abstract_path  # pylint: disable=import-outside-toplevel
  workdir, reference = str(tmp_path / "run"), str(tmp_path / "reference")
  loop.train_and_evaluate(_config(data_dir, 6), workdir)
  real_write = abstract_path.Path.write_text

  def full_disk_from_step_9(self, *args, **kwargs):
    if f"{os.sep}9.orbax-checkpoint-tmp" in os.fspath(self):
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_write(self, *args, **kwargs)

  # Orbax writes its metadata through epath in a background thread, as on a real disk.
  monkeypatch.setattr(abstract_path.Path, "write_text", full_disk_from_step_9)
  with caplog.at_level("WARNING"):
    with pytest.raises(workdir_lib.DiskFullError) as raised:
      loop.train_and_evaluate(_config(data_dir, 12), workdir)
  message = str(raised.value)
  assert message.count("\n") == 0 and "MiB free" in message
  assert f"no space left on the device of {runs.checkpoint_dir(workdir)}" in message
  assert "the newest complete checkpoint is step 6, intact" in message
  assert not [r for r in caplog.records if "No space left" in r.getMessage()]
  assert sorted(os.listdir(runs.checkpoint_dir(workdir))) == ["3", "6"]  # No stray tmp.
  monkeypatch.setattr(abstract_path.Path, "write_text", real_write)
  loop.train_and_evaluate(_config(data_dir, 12), workdir)  # Space again: resumes from 6.
  loop.train_and_evaluate(_config(data_dir, 12), reference)
  _assert_same_state(workdir, reference)
