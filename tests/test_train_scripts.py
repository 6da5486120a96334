"""End-to-end tests of experiments/train_classifier.py and train_dbvae.py, and of
every flagfile in experiments/flags (parsed and validated, not run)."""

import glob
import importlib
import json
import os
import subprocess
import sys

import pytest

import train_testlib
from facebias_jax.studies import compare_methods
from facebias_jax.train import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = sorted(os.path.basename(p)[:-len(".flags")]
                   for p in glob.glob(os.path.join(ROOT, "experiments", "flags", "*.flags")))
# Config module of a flagfile -> the flags its script defines besides --config.*.
SCRIPT_FLAGS = {
    "classifier": {"workdir"}, "dbvae": {"workdir"}, "dbvae_synthetic": {"workdir", "alphas",
                                                                         "seeds"},
    "resnet18_sex": {"workdir"}, "celeba_cam_study": {"workdir"}, "celeba_blond": {"workdir"},
    "synthetic_blond": {"workdir"},
    "evaluate": {"workdir", "run", "checkpoint", "compare", "labels"},
    "export_cam": {"workdir", "run", "checkpoint"},
    "analyze": {"workdir"},
    "compare_methods": {"workdir"},
}
TRAINING_CONFIGS = ("classifier", "dbvae", "dbvae_synthetic", "resnet18_sex",
                    "celeba_cam_study", "celeba_blond", "synthetic_blond")


def _run(script, flagfile, workdir, data_dir, *extra):
  tiny = [f"--config.data.name=facebias_synthetic_faces/{train_testlib.TINY_NAME}",
          f"--config.data.data_dir={data_dir}", "--config.data.image_size=16",
          "--config.data.num_threads=0", "--config.model.filters=2",
          "--config.model.hidden_dim=8", "--config.train.batch_size=8",
          "--config.train.max_steps=3", "--config.train.log_every_steps=1",
          "--config.eval.n_boot=10", "--config.train.progress_bar=False"]
  cmd = [sys.executable, "-m", f"experiments.{script}", f"--flagfile={flagfile}",
         f"--workdir={workdir}", *tiny, *extra]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script,flagfile,extra", [
    ("train_classifier", "experiments/flags/cnn_synthetic.flags", ()),
    ("train_dbvae", "experiments/flags/dbvae_synthetic.flags", ("--config.model.latent_dim=4",)),
])
@pytest.mark.slow
def test_script_end_to_end(script, flagfile, extra, data_dir, tmp_path):
  workdir = str(tmp_path / script)
  result = _run(script, flagfile, workdir, data_dir, *extra)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "worst group" in result.stdout
  with open(os.path.join(workdir, "report.json")) as f:
    report = json.load(f)
  assert report["training"]["steps"] == 3
  assert report["config"]["data"]["image_size"] == 16  # Overrides after the flagfile win.
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "3"))


@pytest.mark.slow
def test_bad_flag_value_is_a_clear_error(data_dir, tmp_path):
  result = _run("train_classifier", "experiments/flags/cnn_synthetic.flags",
                str(tmp_path / "bad"), data_dir, "--config.train.method=sometimes")
  assert result.returncode != 0
  assert "config.train.method='sometimes' is not one of" in result.stderr


def _read_flagfile(path):
  """``--name=value`` pairs of a flagfile, nested ``--flagfile=`` lines expanded."""
  pairs = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      name, _, value = line.lstrip("-").partition("=")
      if name == "flagfile":
        pairs.extend(_read_flagfile(os.path.join(ROOT, value)))
      else:
        pairs.append((name, value))
  return pairs


def _load_config(path):
  """``(config module name, config)`` that config_flags builds from a flagfile (absl
  only overrides through the global FLAGS, so this test applies the overrides itself,
  with the same typing); every other flag must be one its script defines."""
  pairs = _read_flagfile(path)
  config_files = [v for k, v in pairs if k == "config"]
  assert len(config_files) == 1, f"{path} must name one --config"
  module = os.path.basename(config_files[0])[:-3]
  config = importlib.import_module("experiments.configs." + module).get_config()
  for name, value in pairs:
    if not name.startswith("config."):
      assert name == "config" or name in SCRIPT_FLAGS[module], f"{path}: unknown flag --{name}"
      continue
    *sections, field = name.split(".")[1:]
    node = config
    for section in sections:
      node = node[section]
    assert field in node, f"{path}: unknown config field {name}"
    current = node[field]
    if isinstance(current, bool):
      assert value in ("True", "False", "true", "false"), f"{path}: {name}={value}"
      node[field] = value.lower() == "true"
    elif current is None:
      node[field] = value
    else:
      node[field] = type(current)(value)
  return module, config


@pytest.mark.parametrize("name", FLAGFILES)
def test_flagfiles_parse_and_validate(name):
  module, config = _load_config(os.path.join(ROOT, "experiments", "flags", f"{name}.flags"))
  if module == "compare_methods":
    # Every method's run config of the comparison is a valid training config.
    chosen, _ = compare_methods.check(config)
    for method in chosen:
      config_lib.validate_config(compare_methods.method_config(config, method, 0, "/tmp/x",
                                                               num_train=1000), num_devices=1)
    return
  if module not in TRAINING_CONFIGS:
    return  # Entry-point flagfiles: every field and flag checked while loading.
  config_lib.validate_config(config, num_devices=1)
  assert config.data.name.startswith("facebias_")
  if "balanced" in name:
    assert config.train.method in ("subsample", "oversample")
  if "celeba" in name:
    assert "celeba" in config.data.name
    # CelebA labels no skin type: its groups never ask for "skin".
    assert "skin" not in config.eval.groups.split(",")
  if "dbvae" in name:
    assert config.model.name == "dbvae" and config.train.method == "dbvae"


def test_every_flagfile_is_checked():
  assert len(FLAGFILES) >= 11 and "cnn_synthetic" in FLAGFILES and "evaluate_synthetic" in FLAGFILES
