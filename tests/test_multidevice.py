"""One device vs four (fake CPU) devices: the same training run, the same parameters.

JAX is already initialised with one CPU device in the pytest process, so the
four-device run happens in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

import train_testlib
from facebias_jax.models import conv
from facebias_jax.train import checkpoint, loop, sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import sys
sys.path.insert(0, {tests!r})
import jax
import train_testlib
from facebias_jax.train import loop, sharding
assert jax.device_count() == 4, jax.devices()
config = train_testlib.tiny_config("dbvae", {data_dir!r}, max_steps=6)
config.eval.at_end = False
loop.train_and_evaluate(config, {workdir!r})
mesh = sharding.make_mesh()
try:
  sharding.check_batch_size(6, mesh)
except ValueError as e:
  print("ERROR:", e)
"""


def _child_env():
  # Plain XLA convolutions on both sides: "auto" would run oneDNN on one device and
  # XLA's kernels on four, and this test is about sharding, not convolution kernels
  # (those are compared in test_fast_conv.py and test_onednn.py).
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, FACEBIAS_CONV_IMPL="xla")
  return env


@pytest.fixture
def xla_convolutions():
  before = conv.get_conv_impl()
  conv.set_conv_impl("xla")
  yield
  conv.set_conv_impl(before)


def test_four_devices_match_one_device(tmp_path, xla_convolutions):
  data_dir = str(tmp_path / "tfds")
  train_testlib.prepare_tiny_dataset(data_dir)
  four = str(tmp_path / "four")
  script = CHILD.format(tests=os.path.join(ROOT, "tests"), data_dir=data_dir, workdir=four)
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_child_env(),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "batch size 6 does not divide across 4 devices" in result.stdout

  one = str(tmp_path / "one")
  config = train_testlib.tiny_config("dbvae", data_dir, max_steps=6)
  config.eval.at_end = False
  loop.train_and_evaluate(config, one)
  model_one, _ = checkpoint.load_model(one)
  model_four, _ = checkpoint.load_model(four)
  leaves_one = jax.tree_util.tree_leaves_with_path(nnx.state(model_one))
  leaves_four = jax.tree_util.tree_leaves_with_path(nnx.state(model_four))
  assert len(leaves_one) == len(leaves_four)
  # Sharding changes the order of the batch reductions (~1e-7 differences in the
  # gradients). Adam divides by sqrt(v), so a parameter whose gradient is almost
  # zero (a bias before a dead ReLU) turns that noise into a visible fraction of
  # its step: allow 5e-5, 2% of the 6 steps x lr 5e-4 a parameter can move.
  for (path, a), (_, b) in zip(leaves_one, leaves_four):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=5e-5,
                               err_msg=jax.tree_util.keystr(path))


def test_sharding_helpers_single_device():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ("data",)
  batch = sharding.shard_batch({"x": np.arange(8.0).reshape(8, 1)}, mesh)
  np.testing.assert_array_equal(np.asarray(batch["x"]), np.arange(8.0).reshape(8, 1))
  with pytest.raises(ValueError, match="batch size 0"):
    sharding.check_batch_size(0, mesh)
  # No cluster variables in the test environment: stays single-process.
  assert not sharding.maybe_initialize_distributed() or jax.process_count() == 1
