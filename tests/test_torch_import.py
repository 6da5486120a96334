"""Tests of torchvision weight import against a plain-torch ResNet reference."""

import sys

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch  # The test extra: its absence is a failure, not a skip.

import torch_reference as tr

from facebias_jax.models.torch_import import (  # pylint: disable=wrong-import-position
    from_torchvision, load_state_dict)

ATOL = 1e-4


def _torch_logits(module, x_bhwc):
  with torch.no_grad():
    return module(torch.from_numpy(x_bhwc).permute(0, 3, 1, 2)).numpy()


@pytest.fixture(scope="module")
def x():
  return np.random.RandomState(0).rand(2, 32, 32, 3).astype(np.float32)


@pytest.fixture(scope="module")
def reference(x):
  """A full-width torch ResNet-18 (10 classes) with non-trivial BatchNorm statistics."""
  torch.manual_seed(0)
  net = tr.resnet18(num_classes=10)
  tr.randomize_batchnorm(net)
  net.eval()
  return net, _torch_logits(net, x)


def _ours(model, x):
  return np.asarray(model(jnp.asarray(x))[0])


def test_resnet18_logits_match_torch(reference, x):
  net, expected = reference
  model = from_torchvision(net.state_dict(), arch="resnet18")
  assert model.num_classes == 10 and model.head.hidden_dims == ()
  np.testing.assert_allclose(_ours(model, x), expected, atol=ATOL)
  # The imported head still composes into the CAM matrix.
  fmap = model.feature_map(jnp.asarray(x))
  w, b = model.linear_head()
  np.testing.assert_allclose(jnp.mean(fmap @ w, axis=(1, 2)) + b, expected, atol=ATOL)


def test_stacked_head_and_dataparallel_prefix(reference, x):
  net, _ = reference
  torch.manual_seed(1)
  stacked = torch.nn.Sequential(net, torch.nn.Linear(10, 2)).eval()
  expected = _torch_logits(stacked, x)
  state = {f"module.{k}": v.numpy() for k, v in stacked.state_dict().items()}
  model = from_torchvision(state, head=(10,))
  assert model.head.hidden_dims == (10,) and model.num_classes == 2
  np.testing.assert_allclose(_ours(model, x), expected, atol=ATOL)
  with pytest.raises(ValueError, match=r"head=\(1000,\).*hidden widths \(10,\)"):
    from_torchvision(state, head=(1000,))


def test_pth_and_safetensors_files(reference, x, tmp_path):
  safetensors_numpy = safetensors.numpy
  net, expected = reference
  pth = tmp_path / "resnet18.pth"
  torch.save(net.state_dict(), pth)
  st = tmp_path / "resnet18.safetensors"
  safetensors_numpy.save_file(
      {k: np.ascontiguousarray(v.numpy()) for k, v in net.state_dict().items()}, str(st))
  for path in (pth, st):
    np.testing.assert_allclose(_ours(from_torchvision(path), x), expected, atol=ATOL)
  with pytest.raises(FileNotFoundError, match="missing.pth"):
    from_torchvision(tmp_path / "missing.pth")


def test_reinit_head_keeps_backbone(reference, x):
  net, _ = reference
  imported = from_torchvision(net.state_dict())
  fresh = from_torchvision(net.state_dict(), head="reinit", num_classes=1)
  assert fresh.head.layers[-1].kernel.shape == (512, 1)
  np.testing.assert_allclose(fresh.feature_map(jnp.asarray(x)),
                             imported.feature_map(jnp.asarray(x)), atol=1e-6)
  with pytest.raises(ValueError, match="num_classes=1 but the checkpoint's head gives 10"):
    from_torchvision(net.state_dict(), num_classes=1)


@pytest.mark.slow
def test_bottleneck_resnet50_matches_torch(x):
  torch.manual_seed(2)
  net = tr.resnet50(num_classes=3, width=0.125)
  tr.randomize_batchnorm(net, seed=2)
  net.eval()
  model = from_torchvision(net.state_dict(), arch="resnet50", width=0.125)
  np.testing.assert_allclose(_ours(model, x), _torch_logits(net, x), atol=ATOL)


def test_key_and_shape_errors(reference):
  net, _ = reference
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  missing = {k: v for k, v in state.items() if k != "layer2.0.conv1.weight"}
  with pytest.raises(ValueError, match="missing keys: layer2.0.conv1.weight"):
    from_torchvision(missing)
  extra = dict(state, **{"layer1.0.conv9.weight": np.zeros((1,))})
  with pytest.raises(ValueError, match="unexpected keys: layer1.0.conv9.weight"):
    from_torchvision(extra)
  with pytest.raises(ValueError, match="looks like resnet18; check arch"):
    from_torchvision(state, arch="resnet34")
  with pytest.raises(ValueError, match=r"conv1.weight: checkpoint \(64, 3, 7, 7\) "
                     r"\(as HWIO \(7, 7, 3, 64\)\) vs model \(3, 3, 3, 64\)"):
    from_torchvision(state, small_inputs=True)
  stacked = dict(state, **{"fc.weight": state["fc.weight"][:7], "fc.bias": state["fc.bias"][:7],
                           "1.weight": np.zeros((2, 10)), "1.bias": np.zeros(2)})
  stacked = {("0." + k if not k.startswith("1.") else k): v for k, v in stacked.items()}
  with pytest.raises(ValueError, match=r"1.weight: checkpoint \(2, 10\) \(as \(in, out\) "
                     r"\(10, 2\)\) vs model \(7, 2\)"):
    from_torchvision(stacked)
  with pytest.raises(ValueError, match="Unknown arch 'resnet101'"):
    from_torchvision(state, arch="resnet101")


def test_load_state_dict_unwraps_and_drops_counters(reference):
  net, _ = reference
  wrapped = {"state_dict": net.state_dict()}
  state = load_state_dict(wrapped)
  assert "bn1.num_batches_tracked" not in state
  assert state["conv1.weight"].shape == (64, 3, 7, 7)
  assert isinstance(state["fc.bias"], np.ndarray)


def test_pth_without_torch_says_how_to_install(tmp_path, monkeypatch):
  path = tmp_path / "w.pth"
  path.write_bytes(b"not read")
  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
  with pytest.raises(ImportError, match=r"pip install torch==2.13.0"):
    from_torchvision(path)
