"""CAMs per second: batched, jit-compiled ``cam.compute`` vs a per-image loop.

The reference is the loop of the original CAM scripts: one forward pass per image
(here the same jit-compiled ``model.feature_map``, at batch 1), then a NumPy dot of
the head weights with the feature map and ``cv2.resize`` to the input size; for the
standard CNN (no linear head) the loop runs a jit-compiled per-image Grad-CAM gradient
and the same NumPy weighting + resize. Both sides therefore use identical XLA feature
extraction and differ only in batching and in where the map is built and resized.

A second comparison isolates the CAM stage on precomputed feature maps (jit-compiled
weighting + bilinear resize of the whole batch vs the NumPy/OpenCV loop).

Run: ``python -m benchmarks.bench_cam [--quick]``; writes ``benchmarks/results/cam.json``.
"""

from __future__ import annotations

import argparse
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import print_table, time_call, write_results
from facebias_jax import cam
from facebias_jax.cam import methods
from facebias_jax.models import eval_fn, get_model


def _random_model(name: str, **kwargs) -> nnx.Module:
  """The model with NumPy random weights: eager init would compile once per shape."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: get_model(name, **kwargs)))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    if any(k in str(path[-2:]) for k in ("var", "scale")):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) if leaf.ndim > 1 else 1
    return (rng.normal(0.0, 1.0, leaf.shape) * np.sqrt(2.0 / fan_in)).astype(leaf.dtype)

  model = nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))
  model.eval()
  return model


def _loop_cam(feature_fn, w_ck: np.ndarray, images: np.ndarray, size: int) -> np.ndarray:
  """Original-script style: per image forward, ``fmap @ w``, cv2.resize."""
  out = np.empty((len(images), size, size), np.float32)
  for i, image in enumerate(images):
    fmap = np.asarray(feature_fn(image[None]))[0]             # [h, w, C]
    h, w, c = fmap.shape
    raw = fmap.reshape(h * w, c).dot(w_ck[:, 0]).reshape(h, w)
    out[i] = cv2.resize(raw, (size, size), interpolation=cv2.INTER_LINEAR)
  return out


def _loop_gradcam(grad_fn, images: np.ndarray, size: int) -> np.ndarray:
  """Per-image Grad-CAM: jit-compiled (batch 1) feature map + gradient, NumPy rest."""
  out = np.empty((len(images), size, size), np.float32)
  for i, image in enumerate(images):
    fmap, grads = (np.asarray(a)[0] for a in grad_fn(image[None]))
    weights = grads.mean(axis=(0, 1))
    raw = np.maximum(fmap.dot(weights), 0.0)
    out[i] = cv2.resize(raw, (size, size), interpolation=cv2.INTER_LINEAR)
  return out


def _relative_diff(ours: np.ndarray, reference: np.ndarray) -> float:
  """Largest absolute difference, relative to the reference maps' largest magnitude."""
  return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-12))


def _features(model, x):
  return model.feature_map(x)


def _features_and_grads(model, x):
  fmap = model.feature_map(x)
  targets = jnp.ones((x.shape[0],), jnp.int32)
  return fmap, methods.feature_map_gradients(model, fmap, targets)


def _jitted_model_fns(model):
  """The reference loop's compiled pieces: feature maps, and maps with their gradients."""
  return eval_fn(model, _features), eval_fn(model, _features_and_grads)


def bench_model(name: str, method: str, size: int, batch: int, repeats: int,
                **model_kwargs) -> list[dict]:
  """Times one model/method both ways; returns table rows."""
  model = _random_model(name, num_classes=1, **model_kwargs)
  images = np.random.default_rng(1).uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
  features, features_and_grads = _jitted_model_fns(model)
  timing = dict(warmup=1, repeats=repeats, min_seconds=0.5)

  def batched():
    return cam.compute(model, images, method, 1)

  if method == "cam":
    w_ck = np.asarray(model.linear_head()[0])

    def loop():
      return _loop_cam(features, w_ck, images, size)
  else:
    def loop():
      return _loop_gradcam(features_and_grads, images, size)

  agreement = _relative_diff(batched(), loop())
  t_batched = time_call(batched, **timing)
  t_loop = time_call(loop, **timing)
  base = dict(model=name, method=method, image_size=size, batch=batch,
              max_rel_diff=agreement)
  rows = [
      dict(base, variant="jax batched compute (forward + map)", seconds=t_batched,
           cams_per_s=batch / t_batched, speedup=t_loop / t_batched),
      dict(base, variant="per-image loop (forward + numpy + cv2)", seconds=t_loop,
           cams_per_s=batch / t_loop, speedup=1.0),
  ]
  if method == "cam":
    rows += _bench_cam_stage(model, features, w_ck, images, size, base, timing)
  return rows


def _bench_cam_stage(model, features, w_ck, images, size, base, timing) -> list[dict]:
  """CAM stage alone, on feature maps computed beforehand by both sides alike."""
  fmap = jax.block_until_ready(features(images))
  fmap_np = np.asarray(fmap)
  batch = len(images)
  w = jnp.asarray(w_ck[:, 0])

  @jax.jit
  def stage(f):
    maps = methods.cam_from_weights(f, jnp.broadcast_to(w, (f.shape[0], w.shape[0])))
    return jax.image.resize(maps, (f.shape[0], size, size), "bilinear")

  def jax_stage():
    return np.asarray(stage(fmap))

  def numpy_stage():
    h, ww, c = fmap_np.shape[1:]
    return np.stack([cv2.resize(f.reshape(h * ww, c).dot(w_ck[:, 0]).reshape(h, ww),
                                (size, size), interpolation=cv2.INTER_LINEAR)
                     for f in fmap_np])

  diff = _relative_diff(jax_stage(), numpy_stage())
  t_jax, t_np = time_call(jax_stage, **timing), time_call(numpy_stage, **timing)
  base = dict(base, max_rel_diff=diff)
  return [
      dict(base, variant="CAM stage only: jax jit (batch)", seconds=t_jax,
           cams_per_s=batch / t_jax, speedup=t_np / t_jax),
      dict(base, variant="CAM stage only: numpy dot + cv2.resize loop", seconds=t_np,
           cams_per_s=batch / t_np, speedup=1.0),
  ]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
  parser.add_argument("--batch", type=int, default=None, help="images per batch (default 64)")
  args = parser.parse_args()
  batch = args.batch or (16 if args.quick else 64)
  if batch <= 0:
    parser.error(f"--batch must be positive, got {batch}")
  repeats = 2 if args.quick else 5
  rows = bench_model("resnet18", "cam", 128, batch, repeats)
  rows += bench_model("standard_cnn", "gradcam", 64, batch, repeats, image_size=64)
  columns = ["model", "method", "image_size", "batch", "variant", "cams_per_s", "speedup",
             "max_rel_diff"]
  print_table(rows, columns)
  path = write_results("cam", rows, extra={
      "quick": args.quick,
      "note": ("speedup = loop seconds / variant seconds in the same run; both sides use "
               "the same jit-compiled feature extraction (loop: batch 1 per image). "
               f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"),
  })
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
