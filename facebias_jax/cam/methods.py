"""Class Activation Maps and the Grad-CAM family as pure functions of arrays.

Every method turns the last conv feature map ``fmap_bhwc`` (and, for the gradient
methods, the gradient of the target score with respect to it) into one map per image.
No hooks: models expose ``feature_map(images)`` and ``logits_from_feature_map(fmap)``
(DESIGN.md), so Grad-CAM is ``jax.grad`` of the second with respect to its input.

Conventions (documented once here, relied on by the tests):

* **Target score.** Multi-class models: the logit of the target class. Single-logit
  binary models: target ``1`` is the positive class (score = logit), target ``0`` the
  negative class (score = -logit, the logit of ``1 - sigmoid``). The default target is
  the predicted class.
* **CAM bias.** ``cam`` is Zhou et al.'s ``M_k = sum_c w[c, k] * fmap[..., c]`` *without*
  the bias, so for GAP + linear heads ``mean_hw(M_k) + b_k == logit_k`` exactly at the
  feature-map resolution (``compute(..., upsample=False)``).
* **Raw maps.** ``compute`` returns un-normalised maps. Each method applies the ReLU
  its paper applies: ``cam`` and ``eigencam`` none (negative evidence is kept; use
  ``cam.normalize`` or clip for display); ``gradcam``, ``gradcam++``, ``hirescam``,
  ``xgradcam``, ``layercam`` and ``scorecam`` a final ReLU.
* **Eval mode.** ``compute`` runs a copy of the model in eval mode (BatchNorm running
  statistics, no dropout) and never changes the caller's model or its mode, so a map
  depends only on its own image.

For a GAP + linear head the gradient is ``w[:, k] / (h * w)`` at every pixel, hence
``gradcam == hirescam == xgradcam == relu(cam) / (h * w)`` there.

``maps_from_model`` is what the compiled entry points of ``cam.compute`` run on an
eval-mode model; ``cam.render`` scales maps for display (``normalize``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from facebias_jax import models

# Guards divisions by sums of activations/gradients (values of the reference code,
# pytorch-grad-cam, so maps agree with it).
_GRADCAM_PP_EPS = 1e-6
_XGRADCAM_EPS = 1e-7


# --------------------------------------------------------------------------- targets


def resolve_targets(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """Replaces ``-1`` entries of ``targets`` by the predicted class.

  Args:
    logits: ``[B, K]`` model outputs.
    targets: ``[B]`` int class indices, ``-1`` meaning "the predicted class".

  Returns:
    ``[B]`` int32 targets (for ``K == 1``: 1 if the logit is positive, else 0).
  """
  if logits.shape[-1] == 1:
    predicted = (logits[:, 0] > 0).astype(jnp.int32)
  else:
    predicted = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return jnp.where(targets < 0, predicted, targets).astype(jnp.int32)


def target_scores(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """The score each map explains: the target logit (negated for class 0 of one logit).

  Args:
    logits: ``[B, K]``.
    targets: ``[B]`` int class indices (``0``/``1`` when ``K == 1``).

  Returns:
    ``[B]`` float scores.
  """
  if logits.shape[-1] == 1:
    return jnp.where(targets == 1, logits[:, 0], -logits[:, 0])
  return jnp.take_along_axis(logits, targets[:, None].astype(jnp.int32), axis=-1)[:, 0]


def target_probabilities(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """Probability of the target class: sigmoid of the score for one logit, else softmax.

  Args:
    logits: ``[B, K]``.
    targets: ``[B]`` int class indices.

  Returns:
    ``[B]`` float probabilities.
  """
  if logits.shape[-1] == 1:
    return jax.nn.sigmoid(target_scores(logits, targets))
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(probs, targets[:, None].astype(jnp.int32), axis=-1)[:, 0]


def class_probabilities(logits: jnp.ndarray) -> jnp.ndarray:
  """``[B, C]`` probability of every class: ``[1 - p, p]`` for one logit, else softmax."""
  logits = logits.astype(jnp.float32)
  if logits.shape[-1] == 1:
    p = jax.nn.sigmoid(logits)
    return jnp.concatenate([1.0 - p, p], axis=-1)
  return jax.nn.softmax(logits, axis=-1)


# ----------------------------------------------------------------- map definitions


def class_weights(w_ck: jnp.ndarray, b_k: jnp.ndarray,
                  targets: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Per-image head weights and bias of the target class.

  Args:
    w_ck: ``[C, K]`` composed head weights (``model.linear_head()``).
    b_k: ``[K]`` composed head bias.
    targets: ``[B]`` int class indices.

  Returns:
    ``(weights [B, C], bias [B])``; for one logit, class 0 uses ``-w`` and ``-b``.
  """
  if w_ck.shape[-1] == 1:
    sign = jnp.where(targets == 1, 1.0, -1.0).astype(w_ck.dtype)
    return sign[:, None] * w_ck[:, 0][None, :], sign * b_k[0]
  return w_ck.T[targets], b_k[targets]


def cam_from_weights(fmap_bhwc: jnp.ndarray, weights_bc: jnp.ndarray) -> jnp.ndarray:
  """Channel-weighted sum of the feature map, ``sum_c weights[b, c] * fmap[b, ..., c]``.

  Args:
    fmap_bhwc: ``[B, h, w, C]`` feature map.
    weights_bc: ``[B, C]`` weight per image and channel.

  Returns:
    ``[B, h, w]`` maps (no ReLU: with head weights this is Zhou et al.'s CAM).
  """
  return jnp.einsum("bhwc,bc->bhw", fmap_bhwc, weights_bc.astype(fmap_bhwc.dtype))


# Gradient methods. Each takes the feature map ``fmap_bhwc`` ``[B, h, w, C]`` and
# ``grads_bhwc``, the gradient of the target score with respect to it
# (:func:`feature_map_gradients`), and returns ``[B, h, w]`` maps. They share the
# ``relu`` flag: ``True`` applies the final ReLU of the papers, ``False`` returns the
# signed map (negative evidence included).


def _relu_if(maps: jnp.ndarray, relu: bool) -> jnp.ndarray:
  return jax.nn.relu(maps) if relu else maps


def gradcam(fmap_bhwc: jnp.ndarray, grads_bhwc: jnp.ndarray, *, relu: bool = True) -> jnp.ndarray:
  """Grad-CAM (Selvaraju et al. 2017): channel weights = spatial mean of the gradient."""
  return _relu_if(cam_from_weights(fmap_bhwc, grads_bhwc.mean(axis=(1, 2))), relu)


def gradcam_plus_plus(fmap_bhwc: jnp.ndarray, grads_bhwc: jnp.ndarray, *,
                      relu: bool = True) -> jnp.ndarray:
  """Grad-CAM++ (Chattopadhay et al. 2018), closed form with the exponential score.

  Channel weights are ``sum_ij relu(g) * a_ij`` with
  ``a_ij = g^2 / (2 g^2 + sum_ij(A) g^3)``, as in the paper and pytorch-grad-cam.
  """
  g2 = grads_bhwc ** 2
  g3 = g2 * grads_bhwc
  sum_a = fmap_bhwc.sum(axis=(1, 2), keepdims=True)
  alpha = g2 / (2.0 * g2 + sum_a * g3 + _GRADCAM_PP_EPS)
  alpha = jnp.where(grads_bhwc != 0, alpha, 0.0)
  weights = (jax.nn.relu(grads_bhwc) * alpha).sum(axis=(1, 2))
  return _relu_if(cam_from_weights(fmap_bhwc, weights), relu)


def hirescam(fmap_bhwc: jnp.ndarray, grads_bhwc: jnp.ndarray, *, relu: bool = True) -> jnp.ndarray:
  """HiResCAM (Draelos & Carin 2020): element-wise gradient x activation, summed over C.

  Unlike Grad-CAM it keeps the gradient's spatial layout, so the map shows the
  locations the score actually depends on.
  """
  return _relu_if((grads_bhwc * fmap_bhwc).sum(axis=-1), relu)


def xgradcam(fmap_bhwc: jnp.ndarray, grads_bhwc: jnp.ndarray, *, relu: bool = True) -> jnp.ndarray:
  """XGrad-CAM (Fu et al. 2020): channel weights = ``sum(g * A) / sum(A)``."""
  sum_a = fmap_bhwc.sum(axis=(1, 2))
  weights = (grads_bhwc * fmap_bhwc).sum(axis=(1, 2)) / (sum_a + _XGRADCAM_EPS)
  return _relu_if(cam_from_weights(fmap_bhwc, weights), relu)


def layercam(fmap_bhwc: jnp.ndarray, grads_bhwc: jnp.ndarray, *, relu: bool = True) -> jnp.ndarray:
  """LayerCAM (Jiang et al. 2021): ``sum_c relu(g_c) * A_c`` per pixel.

  Only positive gradients count, pixel by pixel, which keeps fine detail when the
  method is applied to earlier (higher-resolution) layers.
  """
  return _relu_if((jax.nn.relu(grads_bhwc) * fmap_bhwc).sum(axis=-1), relu)


def eigencam(fmap_bhwc: jnp.ndarray) -> jnp.ndarray:
  """Eigen-CAM (Muhammad & Yeasin 2020): projection on the first principal component.

  The activations ``[h*w, C]`` of each image are centred over pixels and projected on
  their first right singular vector. The sign of a singular vector is arbitrary, so it
  is fixed to correlate positively with the channel-mean activation (the map then
  highlights where the features are strong, not where they are absent).

  Args:
    fmap_bhwc: ``[B, h, w, C]`` feature map.

  Returns:
    ``[B, h, w]`` signed maps (class-agnostic: no target, no ReLU).
  """
  b, h, w, c = fmap_bhwc.shape
  x = fmap_bhwc.reshape(b, h * w, c).astype(jnp.float32)
  centred = x - x.mean(axis=1, keepdims=True)
  _, _, vt = jnp.linalg.svd(centred, full_matrices=False)
  proj = jnp.einsum("bpc,bc->bp", centred, vt[:, 0, :])
  strength = x.mean(axis=-1)
  corr = ((proj - proj.mean(-1, keepdims=True))
          * (strength - strength.mean(-1, keepdims=True))).sum(-1)
  sign = jnp.where(corr < 0, -1.0, 1.0)
  return (proj * sign[:, None]).reshape(b, h, w)


# name -> fn(fmap_bhwc, grads_bhwc, *, relu=True) -> [B, h, w] maps (see above).
GRADIENT_METHODS: dict[str, Callable[..., jnp.ndarray]] = {
    "gradcam": gradcam,
    "gradcam++": gradcam_plus_plus,
    "hirescam": hirescam,
    "xgradcam": xgradcam,
    "layercam": layercam,
}
METHODS: tuple[str, ...] = ("cam", *GRADIENT_METHODS, "scorecam", "eigencam")


def check_method(method: str) -> str:
  """Returns ``method`` lower-cased or raises ValueError listing the valid methods."""
  name = str(method).lower()
  if name not in METHODS:
    raise ValueError(f"Unknown CAM method {method!r}; valid methods: {', '.join(METHODS)}")
  return name


# ------------------------------------------------------------------ model-level maps


def linear_head_of(model: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
  """``model.linear_head()``, with an error that names the fix when CAM cannot apply."""
  head = getattr(model, "linear_head", None)
  if head is None:
    raise ValueError(f"method='cam' needs model.linear_head(); {type(model).__name__} has "
                     "none. Use method='gradcam' (or another gradient method) instead.")
  try:
    w, b = head()
  except ValueError as e:
    hint = "" if "gradcam" in str(e) else " Use method='gradcam' instead."
    raise ValueError(f"method='cam' cannot be used with {type(model).__name__}: {e}{hint}") from e
  return jnp.asarray(w), jnp.asarray(b)


def feature_map_gradients(model: Any, fmap_bhwc: jnp.ndarray,
                          targets: jnp.ndarray) -> jnp.ndarray:
  """Gradient of each image's target score with respect to its feature map.

  One backward pass for the whole batch: the scores are summed, which gives each
  image its own gradient because eval-mode models treat images independently.

  Args:
    model: eval-mode model with ``logits_from_feature_map``.
    fmap_bhwc: ``[B, h, w, C]``.
    targets: ``[B]`` int class indices (no ``-1``).

  Returns:
    ``[B, h, w, C]`` gradients.
  """
  def total_score(fmap):
    return target_scores(model.logits_from_feature_map(fmap), targets).sum()

  return jax.grad(total_score)(fmap_bhwc)


def scorecam_maps(model: Any, images: jnp.ndarray, fmap_bhwc: jnp.ndarray,
                  targets: jnp.ndarray, *, chunk_size: int = 32) -> jnp.ndarray:
  """Score-CAM (Wang et al. 2020): channels weighted by the score of the masked input.

  Each channel is upsampled to the input size, min-max normalised per image, used to
  mask the input (``images * mask``: masked pixels become 0, i.e. the dataset mean for
  mean/std-normalised inputs), and weighted by the target-class probability of the
  masked image (softmax, or sigmoid for one logit). Channels go through the model in
  chunks of ``chunk_size`` (``chunk_size * B`` images per forward pass) to bound memory.

  Args:
    model: eval-mode model.
    images: ``[B, H, W, 3]`` model inputs.
    fmap_bhwc: ``[B, h, w, C]`` feature map of ``images``.
    targets: ``[B]`` int class indices (no ``-1``).
    chunk_size: channels per forward pass.

  Returns:
    ``[B, h, w]`` maps after the final ReLU.
  """
  b, h, w, c = fmap_bhwc.shape
  height, width = images.shape[1:3]
  chunk = max(1, min(int(chunk_size), c))
  n_chunks = -(-c // chunk)
  # Zero padding channels give constant masks -> zero after normalisation, and their
  # activations are zero, so they add nothing to the map.
  padded = jnp.pad(fmap_bhwc, ((0, 0), (0, 0), (0, 0), (0, n_chunks * chunk - c)))
  chunks = padded.transpose(3, 0, 1, 2).reshape(n_chunks, chunk, b, h, w)
  tiled_targets = jnp.tile(targets, chunk)

  def chunk_scores(acts):  # [chunk, B, h, w] -> [chunk, B]
    up = jax.image.resize(acts, (chunk, b, height, width), "bilinear")
    lo = up.min(axis=(2, 3), keepdims=True)
    hi = up.max(axis=(2, 3), keepdims=True)
    masks = jnp.where(hi > lo, (up - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.0)
    masked = (images[None] * masks[..., None]).reshape(chunk * b, height, width, -1)
    probs = target_probabilities(models.logits(model, masked), tiled_targets)
    return probs.reshape(chunk, b)

  scores = jax.lax.map(chunk_scores, chunks).reshape(n_chunks * chunk, b)[:c].T
  return jax.nn.relu(cam_from_weights(fmap_bhwc, scores))


def maps_from_model(model: Any, images: jnp.ndarray, targets: jnp.ndarray, *, method: str,
                    upsample: bool = True, chunk_size: int = 32
                    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Computes maps for a batch with an eval-mode model (the function ``compute`` jits).

  Args:
    model: model implementing the Models interface, already in eval mode.
    images: ``[B, H, W, 3]`` float inputs.
    targets: ``[B]`` int32, ``-1`` = predicted class.
    method: one of :data:`METHODS`.
    upsample: bilinearly resize maps to ``H x W``; ``False`` keeps the feature-map
      resolution ``h x w`` (where the CAM invariant holds exactly).
    chunk_size: Score-CAM channels per forward pass.

  Returns:
    ``(maps float32 [B, H, W] or [B, h, w], logits [B, K], targets [B])``.
  """
  method = check_method(method)
  fmap = model.feature_map(images)
  logits = model.logits_from_feature_map(fmap)
  targets = resolve_targets(logits, targets)
  if method == "cam":
    w, b = linear_head_of(model)
    weights, _ = class_weights(w, b, targets)
    maps = cam_from_weights(fmap, weights)
  elif method in GRADIENT_METHODS:
    grads = feature_map_gradients(model, fmap, targets)
    maps = GRADIENT_METHODS[method](fmap, grads)
  elif method == "scorecam":
    maps = scorecam_maps(model, images, fmap, targets, chunk_size=chunk_size)
  else:
    maps = eigencam(fmap)
  maps = maps.astype(jnp.float32)
  if upsample and maps.shape[1:] != images.shape[1:3]:
    maps = jax.image.resize(maps, (maps.shape[0], *images.shape[1:3]), "bilinear")
  return maps, logits, targets
