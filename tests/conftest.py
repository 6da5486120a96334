"""Shared pytest setup: CPU-only JAX, quiet TensorFlow, headless matplotlib."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")
# TFDS must never try the network in tests; builders read only from disk.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
