"""Shared test helpers: a tiny prepared synthetic dataset and tiny training configs.

The dataset is the real ``facebias_synthetic_faces`` TFDS builder with a custom
config (16 px, a few dozen examples), prepared in a temporary ``data_dir`` and
read back by name, exactly as training runs read the default benchmark.
"""

from __future__ import annotations

import os

import ml_collections

TINY_NAME = "tiny_fnf_16"
TINY_SIZE = 16


def prepare_tiny_dataset(data_dir: str, *, name: str = TINY_NAME, task: str = "faces_vs_nonfaces",
                         train: int = 64, validation: int = 16, test: int = 32) -> str:
  """Prepares a tiny synthetic set in ``data_dir``; returns its TFDS name.

  Shared by every test that needs prepared data (pipeline, analysis, training,
  evaluation), so they all read it the way real runs read the default benchmark.
  """
  from facebias_jax.data import sources
  from facebias_jax.data.builders.synthetic_faces import SyntheticFacesConfig

  config = SyntheticFacesConfig(name=name, task=task, image_size=TINY_SIZE,
                                sizes={"train": train, "validation": validation, "test": test},
                                chunk_size=64, num_workers=1)
  sources.load_source("facebias_synthetic_faces", split="train", data_dir=data_dir,
                       builder_kwargs={"config": config})
  return f"facebias_synthetic_faces/{name}"


def tiny_config(kind: str, data_dir: str, name: str = f"facebias_synthetic_faces/{TINY_NAME}",
                **train_overrides) -> ml_collections.ConfigDict:
  """A default classifier (``kind="cnn"``) or DB-VAE (``"dbvae"``) config made tiny."""
  from experiments.configs import classifier, dbvae

  config = (dbvae if kind == "dbvae" else classifier).get_config()
  config.data.name = name
  config.data.data_dir = os.fspath(data_dir)
  config.data.image_size = TINY_SIZE
  config.data.num_threads = 0
  config.model.filters = 2
  config.model.hidden_dim = 8
  if kind == "dbvae":
    config.model.latent_dim = 4
  config.train.batch_size = 8
  config.train.num_epochs = 1
  config.train.log_every_steps = 2
  config.train.checkpoint_every_steps = 4
  config.train.progress_bar = False
  config.eval.n_boot = 20
  config.eval.batch_size = 16
  # No validation unless a test asks for it (the tiny validation split has 16 examples).
  config.train.select_by = "last"
  config.eval.every_epochs = 0
  config.eval.min_group_size = 0  # Groups of a few examples: still in the summary.
  for key, value in train_overrides.items():
    config.train[key] = value
  return config


def multidevice_config(data_dir: str) -> ml_collections.ConfigDict:
  """The DB-VAE run that 1 and 4 devices (or 2 processes) must train alike: SGD with
  momentum (see test_multidevice.py for why not Adam), plain XLA convolutions on every
  side (oneDNN runs on one device only, and kernels are not what is compared)."""
  config = tiny_config("dbvae", data_dir, max_steps=6, optimizer="sgd", learning_rate=0.05)
  config.model.conv_impl = "xla"
  config.eval.at_end = False
  return config


# Kinds of run the SIGKILL resume test covers: the DB-VAE, an ERM fine-tune, and every
# other training method on the tiny set (JTT is killed in its second stage, DFR while
# its base run trains).
METHOD_RUNS = ("subsample", "oversample", "reweight", "group_dro", "jtt", "dfr")
RESUME_RUNS = ("dbvae", "finetune") + METHOD_RUNS


def resume_config(kind: str, data_dir: str, max_steps: int,
                  weights: str | None = None) -> ml_collections.ConfigDict:
  """A run the resume tests kill and restart: a checkpoint and a validation every 3
  steps, the checkpoint selected by worst-group validation accuracy.

  ``kind``: ``"dbvae"`` (debiased sampling: a plan per epoch from the weights),
  ``"finetune"`` (a ResNet-18 from torchvision ``weights``, SGD, random crops), or a
  training method of ``METHOD_RUNS`` (the standard CNN, groups by sex).
  """
  if kind == "finetune":
    config = tiny_config("cnn", data_dir, max_steps=max_steps, optimizer="sgd",
                         learning_rate=1e-2)
    config.model = ml_collections.ConfigDict({
        "name": "resnet18", "num_classes": 1, "conv_impl": "auto", "width": 0.125,
        "small_inputs": False, "init_from": weights, "init_head": False})
    config.data.normalize = "imagenet"
    config.data.image_size = 32
    config.data.random_crop = True
  elif kind in METHOD_RUNS:
    config = tiny_config("cnn", data_dir, max_steps=max_steps, method=kind, groups="Male")
    config.jtt.upweight = 3
    config.dfr.num_retrains = 2
  else:
    config = tiny_config(kind, data_dir, max_steps=max_steps)
  config.train.checkpoint_every_steps = 3
  config.train.keep_checkpoints = 1
  config.train.select_by = "worst_group_accuracy"
  config.eval.every_steps = 3
  config.eval.at_end = False
  return config
