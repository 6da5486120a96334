"""Keep freed host memory in the process, so every CPU train step does not fault it in again.

Why: XLA:CPU allocates each execution's large buffers (a ResNet-18 step at batch 32 and
128 px: about 230 MB) from glibc's per-thread arenas, which hand requests above their
64 MB heaps to ``mmap`` and give the pages back to the kernel on ``free``. Every step
then takes ~58,500 page faults and ~150 ms of kernel CPU time to zero fresh pages
(measured with ``getrusage`` on a 2-core AMD EPYC; PyTorch's step takes ~32,000).

What: :func:`keep_freed_memory` sets three glibc ``mallopt`` options: one arena for all
threads (``M_ARENA_MAX=1``: the main heap, which grows without ``mmap``), no ``mmap`` for
large blocks (``M_MMAP_MAX=0``) and no trimming of the heap's top (``M_TRIM_THRESHOLD``
at its maximum). Freed blocks stay in the heap and the next step reuses them: 0 page
faults per step and ~6 ms of kernel time. The costs:

* the process keeps its peak heap until it exits (a free region at the heap's top is
  trimmed only beyond 2 GiB, the largest threshold glibc takes), which a training or
  evaluation process reaches anyway; a large one-off allocation stays resident;
* every thread allocates from one arena behind one lock. On 2 cores the standard CNN's
  small step (64 px, batch 32) took 15.6-16.7 ms against 15.2-15.8 ms with glibc's
  defaults (three alternating process pairs). Steps with large buffers gain far more:
  the standard CNN at batch 256 went from about 105 to 77 ms. Machines with many cores
  were not measured.

It must run before JAX starts its CPU client (threads keep the arena they picked on
their first allocation; a call after that only helps threads started later), so the
entry points call it first (``experiments/common.run``, the
benchmarks). ``FACEBIAS_KEEP_FREED_MEMORY=0`` (also ``off``, ``false``, ``no``) leaves
glibc's defaults; on a C library other than glibc it does nothing. In a notebook, call
``facebias_jax.host_memory.keep_freed_memory()`` before the first JAX operation.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

from absl import logging

ENV = "FACEBIAS_KEEP_FREED_MEMORY"
OFF = ("0", "off", "false", "no")
# glibc's <malloc.h> parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_INT_MAX = 2 ** 31 - 1


def wanted() -> bool:
  """Whether the environment allows the tuning (``$FACEBIAS_KEEP_FREED_MEMORY``)."""
  return os.environ.get(ENV, "1").strip().lower() not in OFF


@functools.cache
def keep_freed_memory() -> bool:
  """Applies the glibc settings above once per process; True when they took effect."""
  if not wanted():
    return False
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    logging.info("keep_freed_memory: not glibc (%s), nothing to tune", platform.libc_ver())
    return False
  mallopt = ctypes.CDLL(None).mallopt
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  results = [mallopt(M_ARENA_MAX, 1), mallopt(M_MMAP_MAX, 0),
             mallopt(M_TRIM_THRESHOLD, _INT_MAX)]
  if not all(results):
    logging.warning("keep_freed_memory: glibc refused mallopt %s", results)
  return all(results)
