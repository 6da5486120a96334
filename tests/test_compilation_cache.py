"""Tests of the persistent compilation cache (facebias_jax.compilation_cache)."""

import json
import os
import subprocess
import sys

import pytest

from facebias_jax import compilation_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_where_the_cache_lives(monkeypatch, tmp_path):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv(compilation_cache.ENV, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert compilation_cache.cache_dir() == str(tmp_path / "xdg" / "facebias_jax" /
                                              "jax_compilation")
  for off in ("off", "0", "False", ""):
    monkeypatch.setenv(compilation_cache.ENV, off)
    assert compilation_cache.cache_dir() is None
  monkeypatch.setenv(compilation_cache.ENV, "~/jaxcache")
  assert compilation_cache.cache_dir() == os.path.expanduser("~/jaxcache")
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/somewhere")  # JAX's own setting wins.
  assert compilation_cache.cache_dir() == "/somewhere"


def test_a_folder_that_cannot_be_created_turns_the_cache_off(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  assert compilation_cache.enable(str(blocker / "cache")) is None


_CHILD = r"""
import json, sys
import numpy as np
from facebias_jax import compilation_cache
compilation_cache.enable(sys.argv[1], min_compile_seconds=0.0)
import jax
from flax import nnx
from facebias_jax.models import get_model
from facebias_jax.ops import onednn
model = get_model("resnet18", 1, small_inputs=True, width=0.125, conv_impl="auto")
x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
out = nnx.jit(lambda m, x: m(x))(model, x)
out = out[0] if isinstance(out, tuple) else out
print(json.dumps({"onednn": onednn.available(), "out": np.asarray(out).tolist()}))
"""


@pytest.mark.slow
def test_a_second_process_loads_the_cached_program_and_computes_the_same(tmp_path):
  """With the oneDNN convolutions (FFI custom calls) in the program."""
  cache = str(tmp_path / "cache")

  def run():
    proc = subprocess.run([sys.executable, "-c", _CHILD, cache], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])

  first = run()
  entries = sorted(os.listdir(cache))
  assert entries  # The program was written.
  second = run()
  assert sorted(os.listdir(cache)) == entries  # Loaded, not compiled and written again.
  assert second["out"] == first["out"]
  assert first["onednn"] == second["onednn"]
