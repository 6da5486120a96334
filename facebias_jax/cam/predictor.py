"""Predictions with their maps, for CAM export, prediction on folders and the live demo.

* :func:`make_predictor`: one compiled call returning the predicted class, its
  probability and its class activation map for a batch (the demo runs it per frame,
  the export per batch of a dataset split).
* :func:`pad_batch` / :func:`predict_in_batches`: fixed-size batches of uint8 images
  (the last padded), so the predictor compiles once;
* :func:`prediction_label`: a readable caption ("male 0.93").
* :func:`energy_markdown` / :func:`plot_energy`: the per-group share of CAM energy
  inside the face region (``aggregate.group_energy``) as a table and a bar plot.

Dataset access lives in ``facebias_jax.eval.cam_export`` and class names of a run in
``facebias_jax.runs`` (``cam`` never imports ``data``, DESIGN.md).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from facebias_jax import imaging, models
from facebias_jax.cam import compute, methods


def _predict_maps(model, images, targets, *, method: str):
  maps, logits, used = methods.maps_from_model(model, images, targets, method=method)
  return (used, methods.target_probabilities(logits, used), maps,
          methods.class_probabilities(logits))


def resolve_method(model: Any, method: str) -> str:
  """``auto`` -> ``cam`` when the model has a GAP + linear head, else ``gradcam``.

  Other names are validated; ``cam`` on a model without a linear head raises the
  ValueError of :func:`methods.linear_head_of` (it suggests ``gradcam``).
  """
  if method == "auto":
    try:
      methods.linear_head_of(model)
      return "cam"
    except ValueError:
      return "gradcam"
  method = methods.check_method(method)
  if method == "cam":
    methods.linear_head_of(model)
  return method


def make_predictor(model: Any, method: str = "cam", *, target: int | None = None
                   ) -> Callable[[Any], tuple[np.ndarray, ...]]:
  """A function ``images -> (class, probability, maps, probabilities)`` compiled once per
  batch shape.

  The model is split once here (not per call) and run as an eval-mode copy
  (``models.eval_fn``).

  Args:
    model: a facebias_jax model.
    method: CAM method (see ``methods.METHODS``) or ``"auto"``.
    target: class whose map and probability are returned; ``None`` = predicted class.

  Returns:
    ``predict(images float32 [B, H, W, 3]) -> (class int32 [B], probability of that
    class float32 [B], maps float32 [B, H, W], probability of every class float32
    [B, C])`` as numpy arrays (``C`` = 2 for a one-logit model); ``predict.method`` is
    the resolved method.
  """
  method = resolve_method(model, method)
  run = models.eval_fn(model, _predict_maps, method=method)

  def predict(images: Any) -> tuple[np.ndarray, ...]:
    images = compute.as_model_images(images)
    targets = compute.as_targets(target, len(images))
    cls, prob, maps, probs = jax.device_get(run(jnp.asarray(images), jnp.asarray(targets)))
    return (np.asarray(cls, np.int32), np.asarray(prob, np.float32),
            np.asarray(maps, np.float32), np.asarray(probs, np.float32))

  predict.method = method
  return predict


def pad_batch(images: np.ndarray, batch_size: int) -> np.ndarray:
  """``images`` zero-padded to ``batch_size`` rows: one batch shape, one compilation."""
  if len(images) > batch_size:
    raise ValueError(f"{len(images)} images do not fit a batch of {batch_size}")
  out = np.zeros((batch_size, *images.shape[1:]), images.dtype)
  out[:len(images)] = images
  return out


def predict_in_batches(predict: Callable, images_uint8: np.ndarray, *, batch_size: int,
                       normalize: str) -> tuple[np.ndarray, ...]:
  """:func:`make_predictor`'s outputs for any number of uint8 images, in fixed-size
  batches (the last one padded, the padding dropped)."""
  parts = []
  for start in range(0, len(images_uint8), batch_size):
    chunk = images_uint8[start:start + batch_size]
    out = predict(imaging.normalize_images(pad_batch(chunk, batch_size), normalize))
    parts.append([a[:len(chunk)] for a in out])
  return tuple(np.concatenate(column) for column in zip(*parts))


def prediction_label(names: Sequence[str], predicted: int, probability: float) -> str:
  """``"male 0.93"``: the predicted class name and its probability."""
  name = names[predicted] if 0 <= predicted < len(names) else f"class {predicted}"
  return f"{name} {probability:.2f}"


def energy_markdown(energy: Mapping[Hashable, Mapping[str, float]], *, method: str,
                    region: str) -> str:
  """Markdown table of ``aggregate.group_energy`` output (mean, std, sem, n per group)."""
  lines = [f"# Share of {method} energy inside the face region ({region})", "",
           "Share of the positive map mass inside the face region, mean over the "
           "group's images (1 = all attention on the face).", "",
           "| group | n | mean | std | sem |", "|---|---|---|---|---|"]
  for group, row in energy.items():
    lines.append(f"| {group} | {row['n']} | {row['mean']:.3f} | {row['std']:.3f} | "
                 f"{row['sem']:.3f} |")
  return "\n".join(lines) + "\n"


def plot_energy(energy: Mapping[Hashable, Mapping[str, float]], path: str, *,
                title: str = "") -> str:
  """Bar plot (mean +- sem per group) of the face-region energy share; returns ``path``."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  groups = [str(g) for g in energy]
  means = [energy[g]["mean"] for g in energy]
  sems = [energy[g]["sem"] for g in energy]
  fig = Figure(figsize=(max(4.0, 1.1 * len(groups) + 1.5), 3.6), tight_layout=True)
  ax = fig.add_subplot()
  ax.bar(groups, means, yerr=sems, capsize=4, color="tab:blue", alpha=0.8)
  for i, (m, g) in enumerate(zip(means, energy)):
    ax.text(i, min(m + 0.03, 1.02), f"{m:.2f}\nn={energy[g]['n']}", ha="center",
            va="bottom", fontsize=8)
  ax.set_ylim(0, 1.15)
  ax.set_ylabel("CAM energy in face region")
  ax.set_title(title, fontsize=10)
  ax.tick_params(axis="x", labelrotation=20)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  return path
