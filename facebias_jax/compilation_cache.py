"""JAX's persistent compilation cache, on by default for the entry points.

Every ``train_*``, ``evaluate``, ``export_cam``, ``predict`` and demo process compiles
the same train and inference steps again; with the cache the second process loads the
compiled executables from disk instead (``benchmarks/bench_startup.py`` measures
the first step cold and warm). Where it lives, in order:

* ``JAX_COMPILATION_CACHE_DIR`` when set (JAX's own setting: left alone);
* ``FACEBIAS_JAX_COMPILATION_CACHE``: a folder, or ``off`` (also ``0``, ``false``, empty)
  to disable the cache;
* else ``$XDG_CACHE_HOME/facebias_jax/jax_compilation`` (``~/.cache/...``).

Safe with the oneDNN convolutions (``facebias_jax.ops.onednn``): an executable refers
to its FFI kernels by name, and they are registered while the step is traced, before
JAX looks the executable up; the cache key covers the lowered program, the jax/jaxlib
versions, the backend and its flags. Only programs that took at least
``MIN_COMPILE_SECONDS`` to compile are written, so small helpers do not fill the disk.
A cache folder that cannot be created only disables the cache (with a warning).

In a notebook: ``facebias_jax.compilation_cache.enable()``.
"""

from __future__ import annotations

import os

from absl import logging

ENV = "FACEBIAS_JAX_COMPILATION_CACHE"
OFF = ("off", "0", "false", "no", "")
MIN_COMPILE_SECONDS = 1.0


def default_dir() -> str:
  """``$XDG_CACHE_HOME/facebias_jax/jax_compilation`` (``~/.cache`` when unset)."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "facebias_jax", "jax_compilation")


def cache_dir() -> str | None:
  """The folder the cache should use under the environment above, or None (off)."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  value = os.environ.get(ENV)
  if value is not None:
    return None if value.strip().lower() in OFF else os.path.expanduser(value)
  return default_dir()


def enable(path: str | None = None, *, min_compile_seconds: float = MIN_COMPILE_SECONDS
           ) -> str | None:
  """Turns the persistent cache on (``path``, else :func:`cache_dir`); returns the folder
  used, or None when it is off or the folder cannot be created."""
  import jax  # pylint: disable=g-import-not-at-top  (scripts set XLA flags before jax)
  path = path or cache_dir()
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as err:
    logging.warning("Compilation cache disabled: cannot create %s (%s); set %s to another "
                    "folder or to off", path, err, ENV)
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
  return path
