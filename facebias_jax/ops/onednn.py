"""oneDNN convolutions on XLA:CPU through the XLA FFI (built on first use, cached).

Why: on the CPU, XLA runs convolutions with YNNPACK or Eigen, which are 1.3x to 3x
slower than oneDNN (what PyTorch runs) for ResNet layers and for most convolution
gradients (per-layer figures in docs/performance.md). ``csrc/onednn_conv.cc`` binds
oneDNN's forward, input-gradient and filter-gradient primitives as three XLA FFI
handlers; ``conv2d`` is a ``jax.custom_vjp`` over them, so a jitted train step calls
them like any other XLA operation, with no host round trip.

Build: the handlers are compiled with the system C++ compiler (``$CXX``, else ``g++``)
against jaxlib's FFI headers and the oneDNN wheel (``onednn-cpu-gomp`` and
``onednn-devel-cpu-gomp``, installed with the package). ``make install`` builds them
once (``onednn.main()``); otherwise the first use does (about 5 s). The library lands
in ``$FACEBIAS_NATIVE_DIR`` (default ``~/.cache/facebias_jax/native``) under a name
that hashes the source, the compiler flags and the jaxlib and oneDNN versions, so an
upgrade rebuilds it. If anything is missing, ``available()`` is False,
``unavailable_reason()`` says why, and ``facebias_jax.ops.conv`` keeps XLA's own
convolutions.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import logging
import os
import pathlib
import shutil
import site
import subprocess
import sys
import tempfile
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_CSRC = pathlib.Path(__file__).with_name("csrc")
# Compiled into one library (the header is in the cache key too).
_SOURCES = (_CSRC / "onednn_conv.cc", _CSRC / "onednn_norm.cc")
_HEADERS = (_CSRC / "onednn_common.h",)
_TARGETS = {"forward": "FacebiasOnednnConvForward",
            "input_grad": "FacebiasOnednnConvInputGrad",
            "filter_grad": "FacebiasOnednnConvFilterGrad",
            "norm_forward": "FacebiasOnednnNormForward",
            "norm_backward": "FacebiasOnednnNormBackward",
            "pool_forward": "FacebiasOnednnPoolForward",
            "pool_backward": "FacebiasOnednnPoolBackward"}
_FFI_PREFIX = "facebias_onednn_conv_"
# -fopenmp: the handlers pin the OpenMP team size (csrc/onednn_common.h).
_CXX_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-w")


class OnednnUnavailable(RuntimeError):
  """The oneDNN convolutions cannot be built or loaded here (the message says why)."""


def _prefixes() -> list[pathlib.Path]:
  """Where pip puts a wheel's data files (``lib/``, ``include/``), most likely first."""
  roots = [os.environ.get("FACEBIAS_ONEDNN_ROOT"), sys.prefix, site.getuserbase(),
           sys.base_prefix]
  return [pathlib.Path(r) for r in dict.fromkeys(r for r in roots if r)]


def _find_onednn() -> tuple[pathlib.Path, pathlib.Path]:
  """(include dir, lib dir) of the oneDNN installation, or OnednnUnavailable."""
  for root in _prefixes():
    include, lib = root / "include", root / "lib"
    if (include / "oneapi" / "dnnl" / "dnnl.hpp").is_file() and any(lib.glob("libdnnl.so*")):
      return include, lib
  raise OnednnUnavailable(
      "oneDNN headers and library not found under "
      f"{[str(p) for p in _prefixes()]}; install them with `pip install "
      "onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0` (part of "
      "`pip install -e .`) or point FACEBIAS_ONEDNN_ROOT at a prefix with "
      "include/oneapi/dnnl/dnnl.hpp and lib/libdnnl.so.")


def _version(dist: str) -> str:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def _cache_dir() -> pathlib.Path:
  default = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
  return pathlib.Path(os.environ.get("FACEBIAS_NATIVE_DIR", default / "facebias_jax" / "native"))


def _library_path(include: pathlib.Path, lib: pathlib.Path) -> pathlib.Path:
  """Where the library for this source, compiler flags and versions is cached."""
  key = "\n".join([*(f.read_text() for f in (*_SOURCES, *_HEADERS)), " ".join(_CXX_FLAGS),
                   str(include), str(lib), _version("jaxlib"), _version("onednn-cpu-gomp")])
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  return _cache_dir() / f"facebias_onednn_conv_{digest}.so"


def build() -> pathlib.Path:
  """Compiles ``csrc/*.cc`` into one library unless it is cached; returns its path.

  Raises:
    OnednnUnavailable: no compiler, no oneDNN, or the compiler failed (its output is
      in the message).
  """
  include, lib = _find_onednn()
  target = _library_path(include, lib)
  if target.is_file():
    return target
  cxx = os.environ.get("CXX", "g++")
  if shutil.which(cxx) is None:
    raise OnednnUnavailable(f"C++ compiler {cxx!r} not found (set CXX or install g++).")
  try:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name and rename: concurrent builds (pytest workers) never
    # load a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
  except OSError as e:
    raise OnednnUnavailable(f"cannot write the library to {target.parent} ({e}); set "
                            "FACEBIAS_NATIVE_DIR to a writable directory.") from e
  os.close(fd)
  logging.info("Building the oneDNN convolutions (once): %s", target)
  cmd = [cxx, *_CXX_FLAGS, f"-I{include}", f"-I{jax.ffi.include_dir()}",
         *(str(f) for f in _SOURCES),
         f"-L{lib}", "-ldnnl", f"-Wl,-rpath,{lib}", "-o", tmp]
  result = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if result.returncode != 0:
    os.unlink(tmp)
    raise OnednnUnavailable(f"building {_CSRC} failed ({' '.join(cmd)}):\n"
                            f"{result.stderr[-4000:]}")
  os.replace(tmp, target)
  return target


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
  """Builds if needed, loads and registers the handlers: ``(library, None)`` on success,
  else ``(None, why not)``."""
  try:
    library = ctypes.cdll.LoadLibrary(str(build()))
  except (OnednnUnavailable, OSError) as e:
    return None, str(e)
  for name, symbol in _TARGETS.items():
    jax.ffi.register_ffi_target(_FFI_PREFIX + name, jax.ffi.pycapsule(getattr(library, symbol)),
                                platform="cpu")
  for symbol in ("FacebiasOnednnNormWorkspaceBytes", "FacebiasOnednnPoolWorkspaceBytes"):
    getattr(library, symbol).restype = ctypes.c_int64
  return library, None


def _library() -> ctypes.CDLL:
  library, reason = _load()
  if library is None:
    raise OnednnUnavailable(reason)
  return library


def available() -> bool:
  """Whether the oneDNN convolutions are built (building them if needed) and loaded."""
  reason = _load()[1]
  if reason is not None:
    _warn_once(reason)
  return reason is None


def unavailable_reason() -> str | None:
  """Why ``available()`` is False (None when it is True)."""
  return _load()[1]


@functools.cache
def _warn_once(reason: str) -> None:
  logging.warning("oneDNN convolutions unavailable, using XLA's: %s", reason)


def window_attrs(strides: Sequence[int], padding: Sequence[tuple[int, int]]) -> dict:
  """The ``strides`` and ``padding`` (top, bottom, left, right) attributes of the
  convolution and pooling handlers."""
  (top, bottom), (left, right) = padding
  return {"strides": np.asarray(strides, np.int64),
          "padding": np.asarray([top, bottom, left, right], np.int64)}


def call(target: str, results, *operands: jax.Array, **attrs) -> jax.Array:
  """Calls the handler ``target`` (a key of ``_TARGETS``) on ``operands``.

  Args:
    target: e.g. ``"forward"``, ``"norm_backward"``.
    results: a ``jax.ShapeDtypeStruct`` or a tuple of them.
    *operands: the handler's buffers, in its order.
    **attrs: its attributes (numpy scalars and int64 arrays).
  """
  _library()
  # "sequential": the handlers take exactly one NHWC batch, so vmap loops over them.
  return jax.ffi.ffi_call(_FFI_PREFIX + target, results, vmap_method="sequential")(
      *operands, **attrs)


def _int64s(values: Sequence[int]):
  return (ctypes.c_int64 * len(values))(*values)


def norm_workspace_bytes(shape: Sequence[int], epsilon: float, relu: bool) -> int:
  """Bytes of the workspace a fused BatchNorm + ReLU leaves for its backward pass."""
  n, h, w, c = (int(d) for d in shape)
  return int(_library().FacebiasOnednnNormWorkspaceBytes(
      ctypes.c_int64(n), ctypes.c_int64(h), ctypes.c_int64(w), ctypes.c_int64(c),
      ctypes.c_float(epsilon), ctypes.c_int(int(relu))))


def pool_workspace_bytes(shape: Sequence[int], window: Sequence[int],
                         strides: Sequence[int], padding: Sequence[int]) -> int:
  """Bytes of the workspace (each window's argmax) a max-pool leaves for its backward."""
  return int(_library().FacebiasOnednnPoolWorkspaceBytes(
      _int64s(shape), _int64s(window), _int64s(strides), _int64s(padding)))


def _conv_call(pass_name: str, out_shape: Sequence[int], a: jax.Array, b: jax.Array,
               strides, padding) -> jax.Array:
  return call(pass_name, jax.ShapeDtypeStruct(tuple(out_shape), jnp.float32), a, b,
              **window_attrs(strides, padding))


def out_shape(x_shape, window: Sequence[int], strides, padding,
              channels: int) -> tuple[int, ...]:
  """NHWC output shape of a ``window``-sized convolution or pool with explicit padding."""
  spatial = [(size + lo + hi - k) // s + 1
             for size, k, s, (lo, hi) in zip(x_shape[1:3], window, strides, padding)]
  return (x_shape[0], *spatial, channels)


def _out_shape(x_shape, w_shape, strides, padding) -> tuple[int, ...]:
  return out_shape(x_shape, w_shape[:2], strides, padding, w_shape[3])


def supports(x: jax.Array, w: jax.Array, strides: Sequence[int],
             padding: Sequence[tuple[int, int]]) -> bool:
  """Whether ``conv2d`` handles this convolution (float32, non-negative padding, output
  at least one pixel)."""
  return (x.ndim == 4 and w.ndim == 4 and x.dtype == jnp.float32 and w.dtype == jnp.float32
          and all(lo >= 0 and hi >= 0 for lo, hi in padding)
          and min(_out_shape(x.shape, w.shape, strides, padding)) > 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, w: jax.Array, strides: tuple[int, int],
           padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """``lax.conv_general_dilated(x, w, strides, padding)`` for NHWC ``x``, HWIO ``w``.

  Args:
    x: ``[N, H, W, I]`` float32.
    w: ``[KH, KW, I, O]`` float32.
    strides: ``(sh, sw)``.
    padding: explicit ``((top, bottom), (left, right))``, non-negative.

  Returns:
    ``[N, OH, OW, O]``; its VJP runs oneDNN's input- and filter-gradient primitives
    (XLA drops the one a caller does not use).
  """
  return _conv_call("forward", _out_shape(x.shape, w.shape, strides, padding), x, w, strides,
               padding)


def _conv2d_fwd(x, w, strides, padding):
  return conv2d(x, w, strides, padding), (x, w)


def _conv2d_bwd(strides, padding, residuals, g):
  x, w = residuals
  dx = _conv_call("input_grad", x.shape, g, w, strides, padding)
  dw = _conv_call("filter_grad", w.shape, x, g, strides, padding)
  return dx, dw


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def use_onednn(impl: str) -> bool:
  """Whether convolutions traced now with the choice ``impl`` go to oneDNN.

  "auto" uses it only on a single CPU device: its FFI calls have no sharding rule, so
  XLA would gather a batch sharded over several devices onto each of them.
  """
  if impl == "onednn":
    if jax.default_backend() != "cpu":
      raise ValueError(f"conv impl 'onednn' runs on the CPU backend only, but JAX's default "
                       f"backend is {jax.default_backend()!r}; use conv_impl='auto' (config.model.conv_impl).")
    if not available():
      raise OnednnUnavailable(
          f"conv impl 'onednn' was asked for but {unavailable_reason()} (or use "
          "conv_impl='auto' to fall back to XLA's convolutions).")
    return True
  return (impl == "auto" and jax.default_backend() == "cpu" and jax.device_count() == 1
          and available())


def strided_conv(x: jax.Array, w: jax.Array, strides: Sequence[int],
                  padding: Sequence[tuple[int, int]], impl: str) -> jax.Array:
  """A plain NHWC/HWIO convolution: oneDNN's when ``use_onednn(impl)`` and it takes
  this shape, else XLA's (what the phase forms of ``ops.phase`` are made of)."""
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if use_onednn(impl) and supports(x, w, strides, padding):
    return conv2d(x, w, strides, padding)
  return lax.conv_general_dilated(x, w, strides, padding,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))



def main() -> int:
  """Builds (or finds) the library and says where, or why not (``make install``)."""
  try:
    path = build()
  except OnednnUnavailable as e:
    print(f"oneDNN convolutions not built: {e}", file=sys.stderr)
    print("facebias_jax will use XLA's own convolutions.", file=sys.stderr)
    return 0
  print(f"oneDNN convolutions: {path}")
  return 0

