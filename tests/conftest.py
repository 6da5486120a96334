"""Shared pytest setup: CPU-only JAX, quiet TensorFlow, headless matplotlib."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")
# TFDS must never try the network in tests; builders read only from disk.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
# The scripts' persistent compilation cache stays off in tests (none writes to ~/.cache);
# tests/test_compilation_cache.py turns it on in folders of its own.
os.environ.setdefault("FACEBIAS_JAX_COMPILATION_CACHE", "off")


import pytest  # noqa: E402  (after the environment above)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """A tiny untrained sex-classifier run (``demo_fixtures.tiny_checkpoint``), per module."""
  import demo_fixtures  # pylint: disable=g-import-not-at-top  (imports jax: after the env)
  return demo_fixtures.tiny_checkpoint(str(tmp_path_factory.mktemp("ckpt")))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A TFDS data_dir holding the default tiny synthetic set (``train_testlib``), per
  module; modules that need another set define their own ``data_dir``."""
  import train_testlib  # pylint: disable=g-import-not-at-top
  path = str(tmp_path_factory.mktemp("tfds"))
  train_testlib.prepare_tiny_dataset(path)
  return path
