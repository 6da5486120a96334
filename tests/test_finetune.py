"""Training from torchvision weights or another run's checkpoint (config.model.init_from)."""


import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torch_reference as tr
import train_testlib
from facebias_jax import runs
from facebias_jax.train import config as config_lib
from facebias_jax.train import init as init_lib
from facebias_jax.train import loop


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  train_testlib.prepare_tiny_dataset(path, task="sex")
  return path


@pytest.fixture(scope="module")
def torch_net_and_file(tmp_path_factory):
  """A 1/8-width torchvision-layout ResNet-18 with one logit, saved with torch.save."""
  torch.manual_seed(0)
  net = tr.resnet18(num_classes=1, width=0.125)
  tr.randomize_batchnorm(net)
  net.eval()
  path = str(tmp_path_factory.mktemp("weights") / "resnet18.pth")
  torch.save(net.state_dict(), path)
  return net, path


def _config(data_dir, weights, **model):
  config = train_testlib.tiny_config("cnn", data_dir,
                                     name=f"facebias_synthetic_faces/{train_testlib.TINY_NAME}")
  config.model = {"name": "resnet18", "num_classes": 1, "conv_impl": "auto", "width": 0.125,
                  "small_inputs": False, "init_from": weights, "init_head": False, **model}
  config.data.normalize = "imagenet"
  config.data.image_size = 32
  return config


@pytest.mark.slow
def test_first_forward_equals_pytorch(data_dir, torch_net_and_file):
  net, path = torch_net_and_file
  config = _config(data_dir, path, init_head=True)
  model = runs.build_model(config)
  assert "torchvision weights" in init_lib.initialize_from(config, model)
  model.eval()
  x = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))[0]), expected, atol=1e-4)
  # Without init_head the backbone is torch's and the head stays the fresh one.
  fresh = runs.build_model(config)
  head_before = np.asarray(fresh.head.layers[0].kernel[...])
  init_lib.initialize_from(_config(data_dir, path), fresh)
  np.testing.assert_array_equal(np.asarray(fresh.head.layers[0].kernel[...]), head_before)
  np.testing.assert_allclose(np.asarray(fresh.conv1.kernel[...]),
                             net.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))


@pytest.mark.slow
def test_fine_tune_from_pth_then_from_a_run(data_dir, torch_net_and_file, tmp_path):
  _, path = torch_net_and_file
  config = _config(data_dir, path)
  config.train.optimizer, config.train.learning_rate = "sgd", 1e-2
  config.train.max_steps = 4
  first = loop.train_and_evaluate(config, str(tmp_path / "from_pth"))
  assert first["training"]["init_from"].startswith("torchvision weights")
  assert first["training"]["steps"] == 4
  # A second run starts from the first run's checkpoint, head included.
  second = _config(data_dir, str(tmp_path / "from_pth"), init_head=True)
  second.train.max_steps = 1
  model = runs.build_model(second)
  init_lib.initialize_from(second, model)
  trained, _ = runs.load_model(str(tmp_path / "from_pth"))
  np.testing.assert_array_equal(np.asarray(model.head.layers[0].kernel[...]),
                                np.asarray(trained.head.layers[0].kernel[...]))
  report = loop.train_and_evaluate(second, str(tmp_path / "from_run"))
  assert "step 4" in report["training"]["init_from"]


def test_options_that_do_not_fit_the_weights_are_clear_errors(data_dir, torch_net_and_file):
  _, path = torch_net_and_file
  with pytest.raises(ValueError, match="7x7.*set config.model.small_inputs=False"):
    config_lib.validate_config(_config(data_dir, path, small_inputs=True), num_devices=1)
  unit = _config(data_dir, path)
  unit.data.normalize = "unit"
  with pytest.raises(ValueError, match="config.data.normalize='imagenet'"):
    config_lib.validate_config(unit, num_devices=1)
  with pytest.raises(FileNotFoundError, match="neither a file"):
    config_lib.validate_config(_config(data_dir, path + ".missing"), num_devices=1)
  cnn = train_testlib.tiny_config("cnn", data_dir)
  cnn.model.init_from = path
  with pytest.raises(ValueError, match="only the ResNets take"):
    config_lib.validate_config(cnn, num_devices=1)
  two = _config(data_dir, path, num_classes=2, init_head=True)
  with pytest.raises(ValueError, match="init_head=False"):
    init_lib.initialize_from(two, runs.build_model(two))


@pytest.mark.slow
def test_frozen_backbone_trains_only_the_head(data_dir, torch_net_and_file, tmp_path):
  _, path = torch_net_and_file
  config = _config(data_dir, path)
  config.train.backbone_lr_scale = 0.0
  config.train.max_steps = 3
  config.eval.at_end = False
  loop.train_and_evaluate(config, str(tmp_path / "probe"))
  trained, _ = runs.load_model(str(tmp_path / "probe"))
  start = runs.build_model(config)
  init_lib.initialize_from(config, start)
  np.testing.assert_array_equal(np.asarray(trained.conv1.kernel[...]),
                                np.asarray(start.conv1.kernel[...]))
  assert not np.allclose(np.asarray(trained.head.layers[0].kernel[...]),
                         np.asarray(start.head.layers[0].kernel[...]))
  bad = train_testlib.tiny_config("cnn", data_dir, backbone_lr_scale=0.5)
  with pytest.raises(ValueError, match="backbone_lr_scale=0.5 needs a model with a linear head"):
    config_lib.validate_config(bad, num_devices=1)


@pytest.mark.parametrize("name,torch_cls,kwargs", [
    ("sgd", torch.optim.SGD, dict(momentum=0.9, weight_decay=1e-2)),
    ("adamw", torch.optim.AdamW, dict(weight_decay=1e-2)),
])
def test_optimizers_match_pytorch(name, torch_cls, kwargs):
  """Three updates of our SGD (momentum, L2 decay) / AdamW equal torch.optim's."""
  import jax
  from facebias_jax.train import steps
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(4, 3)).astype(np.float32)
  grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3)]
  tx = steps.make_optimizer(0.1, total_steps=10, optimizer=name, **kwargs)
  params = {"w": jnp.asarray(w0)}
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
  w = torch.nn.Parameter(torch.from_numpy(w0.copy()))
  opt = torch_cls([w], lr=0.1, **kwargs)
  for g in grads:
    w.grad = torch.from_numpy(g)
    opt.step()
  np.testing.assert_allclose(np.asarray(params["w"]), w.detach().numpy(), rtol=1e-5, atol=1e-6)
