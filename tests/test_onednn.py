"""Tests of facebias_jax.ops.onednn and the "auto"/"onednn" conv choices that use it."""

import functools
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from conv_testlib import (DN, RTOL, STRIDED, TINY_MODELS, assert_model_trains_like_xla,
                          assert_strided_conv_matches_lax, rel_err, values_and_grads)
from facebias_jax.models import get_model
from facebias_jax.ops import conv, onednn

# oneDNN comes with the package's dependencies; only a missing compiler may skip these.
pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="no C++ compiler to build the oneDNN handlers")


ONEDNN = functools.partial(conv.fast_conv_general_dilated, impl="onednn")


@pytest.fixture(autouse=True)
def _onednn_built():
  assert onednn.available(), onednn.unavailable_reason()


def _random(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _ffi_calls(fn, *args) -> int:
  return str(jax.make_jaxpr(fn)(*args)).count("ffi_call")


@pytest.mark.parametrize("x_shape,w_shape,strides,padding", STRIDED + [
    ((3, 8, 8, 16), (3, 3, 16, 24), (1, 1), "SAME"),          # stride 1
    ((1, 6, 5, 2), (2, 3, 2, 3), (1, 1), ((0, 1), (2, 0))),   # uneven padding
])
def test_values_and_gradients_match_lax(x_shape, w_shape, strides, padding):
  x, w = _random(x_shape, 0), _random(w_shape, 1)
  assert_strided_conv_matches_lax(x, w, strides, padding, "onednn")
  # Forward, input gradient and filter gradient are the three oneDNN calls.
  grad_fn = jax.grad(lambda x, w: jnp.sum(ONEDNN(x, w, strides, padding,
                                                 dimension_numbers=DN)), (0, 1))
  assert _ffi_calls(grad_fn, x, w) == 3


def test_transposed_conv_runs_its_strided_convolutions_on_onednn():
  x, w = _random((2, 5, 5, 6), 2), _random((3, 3, 6, 4), 3)
  dilation, padding = (2, 2), ((1, 2), (1, 2))
  ref = values_and_grads(lax.conv_general_dilated, x, w, (1, 1), padding, dilation)
  new = values_and_grads(ONEDNN, x, w, (1, 1), padding, dilation)
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(new)):
    assert a.shape == b.shape and rel_err(a, b) < RTOL
  assert _ffi_calls(lambda x, w: ONEDNN(x, w, (1, 1), padding, lhs_dilation=dilation,
                                        dimension_numbers=DN), x, w) == 1


def test_negative_padding_falls_back_to_xla():
  x, w = _random((2, 9, 9, 3), 4), _random((3, 3, 3, 4), 5)
  padding = ((-1, 0), (1, 1))
  assert not onednn.supports(x, w, (1, 1), padding)
  fn = lambda x, w: ONEDNN(x, w, (1, 1), padding, dimension_numbers=DN)
  assert _ffi_calls(fn, x, w) == 0
  assert rel_err(lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=DN),
                 fn(x, w)) < RTOL


def test_vmap_loops_over_the_handlers():
  x, w = _random((3, 2, 8, 8, 4), 6), _random((3, 3, 4, 5), 7)
  pads = ((1, 1), (1, 1))
  out = jax.vmap(lambda v: onednn.conv2d(v, w, (2, 2), pads))(x)
  ref = jax.vmap(lambda v: lax.conv_general_dilated(v, w, (2, 2), pads,
                                                    dimension_numbers=DN))(x)
  assert rel_err(ref, out) < RTOL


def test_auto_uses_onednn_on_one_cpu_device_and_fast_never():
  x, w = _random((4, 8, 8, 12), 8), _random((3, 3, 12, 24), 9)
  for impl, calls in (("auto", 1), ("fast", 0), ("xla", 0)):  # One CPU device (conftest).
    fn = lambda x, w: conv.fast_conv_general_dilated(x, w, (2, 2), "SAME",
                                                     dimension_numbers=DN, impl=impl)
    assert _ffi_calls(fn, x, w) == calls, impl


@pytest.mark.slow
def test_two_models_with_different_choices_run_their_own_kernels():
  """The choice is the models' own: built and compiled in one process, in either order,
  each keeps its kernels (no process-global switch, no shared jit cache entry)."""
  images = _random((2, 16, 16, 3), 14)
  forward = nnx.jit(lambda model, x: model(x)[0])
  outputs = {}
  for impl in ("onednn", "xla", "onednn"):
    model = get_model("standard_cnn", image_size=16, filters=2, hidden_dim=8, conv_impl=impl)
    model.eval()
    calls = str(jax.make_jaxpr(lambda x: model(x)[0])(images)).count("ffi_call")
    assert calls == (4 if impl == "onednn" else 0), impl
    outputs.setdefault(impl, np.asarray(forward(model, images)))
  assert rel_err(outputs["xla"], outputs["onednn"]) < RTOL


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs", TINY_MODELS)
def test_models_train_identically_on_onednn(name, kwargs):
  """Loss and every parameter gradient on oneDNN equal plain XLA's."""
  assert_model_trains_like_xla(name, kwargs, "onednn")


def test_asking_for_onednn_where_it_is_missing_says_why(monkeypatch):
  monkeypatch.setattr(onednn, "available", lambda: False)
  monkeypatch.setattr(onednn, "unavailable_reason", lambda: "no oneDNN here")
  x, w = _random((2, 8, 8, 3), 10), _random((3, 3, 3, 4), 11)
  with pytest.raises(onednn.OnednnUnavailable, match="no oneDNN here.*conv_impl='auto'"):
    ONEDNN(x, w, (1, 1), "SAME", dimension_numbers=DN)
  # "auto" falls back to XLA's convolutions.
  fn = lambda x, w: conv.fast_conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN,
                                                   impl="auto")
  assert _ffi_calls(fn, x, w) == 0


def test_missing_headers_name_the_packages_and_the_override(monkeypatch, tmp_path):
  monkeypatch.setattr(onednn, "_prefixes", lambda: [tmp_path])
  with pytest.raises(onednn.OnednnUnavailable,
                     match="onednn-devel-cpu-gomp.*FACEBIAS_ONEDNN_ROOT"):
    onednn.build()


@pytest.mark.slow
def test_build_reuses_the_cached_library_and_rebuilds_into_a_new_dir(monkeypatch, tmp_path):
  cached = onednn.build()
  stamp = cached.stat().st_mtime_ns
  assert onednn.build() == cached and cached.stat().st_mtime_ns == stamp
  monkeypatch.setenv("FACEBIAS_NATIVE_DIR", str(tmp_path))
  fresh = onednn.build()
  assert fresh.parent == tmp_path and fresh.name == cached.name and fresh.is_file()
  assert list(pathlib.Path(tmp_path).iterdir()) == [fresh]  # No temporary left behind.


def test_unwritable_cache_dir_names_the_override(monkeypatch, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  monkeypatch.setenv("FACEBIAS_NATIVE_DIR", str(blocker / "native"))
  with pytest.raises(onednn.OnednnUnavailable, match="FACEBIAS_NATIVE_DIR"):
    onednn.build()


def test_asking_for_onednn_off_the_cpu_is_a_clear_error(monkeypatch):
  monkeypatch.setattr(onednn.jax, "default_backend", lambda: "gpu")
  x, w = _random((2, 8, 8, 3), 12), _random((3, 3, 3, 4), 13)
  with pytest.raises(ValueError, match="CPU backend only.*'gpu'"):
    ONEDNN(x, w, (1, 1), "SAME", dimension_numbers=DN)
