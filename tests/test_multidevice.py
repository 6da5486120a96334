"""One device vs four (fake CPU) devices: the same training run, the same parameters.

JAX is already initialised with one CPU device in the pytest process, so the
four-device run happens in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.

What sharding may change is the order of the batch reductions (float32 rounding,
~1e-7). The runs use SGD with momentum: Adam divides each gradient by its running
RMS, so a parameter whose gradient is pure rounding noise (the bias of a dead ReLU
channel) takes a full-size first step whose sign and size follow that noise, and
Adam-trained parameters of the two runs then differ by whatever the kernels round
(0.1 relative on some machines). SGD moves such a parameter by lr x noise.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

import train_testlib
from facebias_jax import runs
from facebias_jax.train import loop, sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import sys
sys.path.insert(0, {tests!r})
import jax
import train_testlib
from facebias_jax.train import loop, sharding
assert jax.device_count() == 4, jax.devices()
config = train_testlib.multidevice_config({data_dir!r})
loop.train_and_evaluate(config, {workdir!r})
mesh = sharding.make_mesh()
try:
  sharding.check_batch_size(6, mesh)
except ValueError as e:
  print("ERROR:", e)
"""


def _child_env():
  return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
              JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)


def test_four_devices_match_one_device(tmp_path):
  data_dir = str(tmp_path / "tfds")
  train_testlib.prepare_tiny_dataset(data_dir)
  four = str(tmp_path / "four")
  script = CHILD.format(tests=os.path.join(ROOT, "tests"), data_dir=data_dir, workdir=four)
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_child_env(),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "batch size 6 does not divide across 4 devices" in result.stdout

  one = str(tmp_path / "one")
  loop.train_and_evaluate(train_testlib.multidevice_config(data_dir), one)
  model_one, _ = runs.load_model(one)
  model_four, _ = runs.load_model(four)
  initial = runs.build_model(train_testlib.multidevice_config(data_dir))
  leaves_one = jax.tree_util.tree_leaves_with_path(nnx.state(model_one))
  leaves_four = jax.tree_util.tree_leaves_with_path(nnx.state(model_four))
  leaves_init = jax.tree.leaves(nnx.state(initial))
  assert len(leaves_one) == len(leaves_four) == len(leaves_init) > 20
  moved = 0
  for (path, a), (_, b), a0 in zip(leaves_one, leaves_four, leaves_init):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=2e-6,
                               err_msg=jax.tree_util.keystr(path))
    moved += not np.allclose(a, a0, rtol=0, atol=1e-5)
  assert moved > len(leaves_init) // 2  # Training moved them: the comparison means something.


def test_sharding_helpers_single_device():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ("data",)
  batch = sharding.shard_batch({"x": np.arange(8.0).reshape(8, 1)}, mesh)
  np.testing.assert_array_equal(np.asarray(batch["x"]), np.arange(8.0).reshape(8, 1))
  with pytest.raises(ValueError, match="batch size 0"):
    sharding.check_batch_size(0, mesh)
  # No cluster variables in the test environment: stays single-process.
  assert not sharding.maybe_initialize_distributed() or jax.process_count() == 1
