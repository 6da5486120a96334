"""Tests of facebias_jax.host_memory: freed host memory stays in the process, so a
jitted CPU computation with a large temporary stops faulting in fresh pages."""

import json
import os
import platform
import subprocess
import sys

import pytest

from facebias_jax import host_memory

_CHILD = r"""
import json, resource, sys
from facebias_jax import host_memory
applied = host_memory.keep_freed_memory()
import jax, jax.numpy as jnp
x = jnp.ones((16, 1024, 1024))  # 64 MiB; sorting needs a temporary of that size.
f = jax.jit(lambda x: jnp.sort(x * 2, axis=1)[:, :1].sum())
def faults_of_one_call():
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
# The heap settles after a few calls (4 on an idle machine; the threads' order of
# allocation moves it), then stays: the fewest faults of a call from then on.
faults = min(faults_of_one_call() for _ in range(12))
print(json.dumps({"applied": applied, "faults": faults}))
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


def _faults_per_call(setting: str) -> dict:
  env = dict(os.environ, **{host_memory.ENV: setting})
  out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                       text=True, check=True, timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_freed_memory_is_reused_instead_of_faulted_in_again():
  tuned, default = _faults_per_call("1"), _faults_per_call("0")
  assert tuned["applied"] and not default["applied"]
  pages = 64 * 2 ** 20 // os.sysconf("SC_PAGE_SIZE")
  assert default["faults"] > 0.9 * pages, default  # glibc's defaults: fresh pages per call.
  assert tuned["faults"] < 0.05 * pages, tuned


@pytest.mark.parametrize("value,expected", [("0", False), ("off", False), ("False", False),
                                            ("no", False), ("1", True), ("yes", True)])
def test_environment_switch(monkeypatch, value, expected):
  monkeypatch.setenv(host_memory.ENV, value)
  assert host_memory.wanted() is expected
  monkeypatch.delenv(host_memory.ENV)
  assert host_memory.wanted()
