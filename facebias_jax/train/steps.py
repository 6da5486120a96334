"""Pure jit-compiled train/eval steps for the classifiers and the DB-VAE.

An NNX model is split once into a static ``graphdef`` and arrays: ``params``
(``nnx.Param``) and ``model_state`` (everything else: BatchNorm statistics).
Training mode and evaluation mode are separate graphdefs (``model.train()`` /
``model.eval()`` set static attributes), so one jitted function never switches
mode at run time. The step functions are pure: ``(TrainState, batch) ->
(TrainState, metrics)``, with the state buffers donated and the per-step random
key ``jax.random.fold_in(state.rng, state.step)``, which makes a resumed run
draw exactly the keys of an uninterrupted one.

Batches given to the steps are flat dicts of arrays: ``image`` float32
[B,H,W,3], ``label`` int32 [B], ``mask`` bool [B] (False = padding), optionally
``weight`` float32 [B] (per-example loss weights, 0 on padding; default ``mask``)
and ``group`` int32 [B] (training group codes, for Group DRO), and for the DB-VAE
``vae_mask`` bool [B] (True = a face whose VAE loss counts).

The loss is the weighted mean of the per-example losses, or with ``GroupDRO`` the
group-weighted loss of Sagawa et al. (2020) whose weights ``q`` live in the state
(``TrainState.group_weights``), so they are checkpointed and a resumed run continues
with the same ``q``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from facebias_jax.models import precision
from facebias_jax.train import losses

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
MODEL_KINDS = ("classifier", "dbvae")


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes (a pytree; what is checkpointed).

  Attributes:
    step: int32 scalar, number of steps taken.
    params: ``nnx.State`` of the ``nnx.Param`` variables.
    model_state: ``nnx.State`` of the other variables (BatchNorm statistics).
    opt_state: the optax optimizer state.
    rng: base PRNG key (uint32 [2]); step keys are ``fold_in(rng, step)``.
    group_weights: float32 [G], Group DRO's weights over the training groups (uniform
      and unused by the other methods, G = 1 for them).
  """

  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array
  group_weights: jax.Array


@dataclasses.dataclass(frozen=True)
class ModelDef:
  """The static halves of a split model: training- and evaluation-mode graphdefs."""

  train: Any
  eval: Any

  def merge(self, state: TrainState, *, train: bool = False) -> nnx.Module:
    """A model object with the state's arrays (eval mode unless ``train``)."""
    return nnx.merge(self.train if train else self.eval, state.params, state.model_state,
                     copy=True)


def split_model(model: nnx.Module, *, compute_dtype: str = "float32"
                ) -> tuple[ModelDef, Any, Any]:
  """Splits ``model`` into ``(ModelDef, params, model_state)``.

  The training graph computes in ``compute_dtype`` (``models.precision``; bfloat16 =
  mixed precision), the evaluation graph always in float32, so validation metrics and
  everything built from a checkpoint see full-precision activations.
  """
  model.eval()
  eval_def, params, model_state = nnx.split(model, nnx.Param, ...)
  model.train()
  precision.set_compute_dtype(model, compute_dtype)
  train_def, _, _ = nnx.split(model, nnx.Param, ...)
  precision.set_compute_dtype(model, "float32")
  return ModelDef(train=train_def, eval=eval_def), params, model_state


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation,
                       rng: jax.Array, *, num_groups: int = 1,
                       compute_dtype: str = "float32") -> tuple[ModelDef, TrainState]:
  """Initial training state of ``model`` (its current weights) and ``tx``.

  Args:
    model: a freshly built model.
    tx: the optimizer.
    rng: base PRNG key (raw uint32 [2], e.g. ``jax.random.PRNGKey(seed)``).
    num_groups: training groups (Group DRO's weights start uniform over them).
    compute_dtype: what the training graph computes in (``split_model``).

  Returns:
    ``(model_def, state)``.
  """
  model_def, params, model_state = split_model(model, compute_dtype=compute_dtype)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     model_state=model_state, opt_state=tx.init(params),
                     rng=jnp.asarray(rng, jnp.uint32),
                     group_weights=jnp.full((int(num_groups),), 1.0 / int(num_groups),
                                            jnp.float32))
  return model_def, state


@dataclasses.dataclass(frozen=True)
class GroupDRO:
  """Group DRO's online objective (Sagawa et al., ICLR 2020, Alg. 1).

  Every step: the batch's mean loss per group ``l_g``; ``q_g <- q_g exp(eta (l_g +
  adjustment_g))`` normalised; the loss minimised is ``sum_g q_g l_g`` with ``q``
  held constant (``losses.group_dro_update``).

  Attributes:
    eta: the weights' step size.
    adjustment: ``C / sqrt(n_g)`` per group (``methods.dro_adjustment``); its length is
      the number of groups G.
  """

  eta: float
  adjustment: tuple[float, ...]

  @property
  def num_groups(self) -> int:
    return len(self.adjustment)


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "warmup_cosine")
HEAD = "head"  # The ResNets' linear head (``ResNet.head``); the rest is the backbone.


def is_head_path(path: tuple) -> bool:
  """Whether a variable path (strings, or pytree keys) lies in the model's head."""
  return bool(path) and str(getattr(path[0], "key", path[0])) == HEAD


def backbone_labels(params: Any) -> Any:
  """``"head"`` / ``"backbone"`` for every leaf of a parameter pytree."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: HEAD if is_head_path(path) else "backbone", params)


def make_optimizer(learning_rate: float, *, total_steps: int, optimizer: str = "adam",
                   schedule: str = "constant", warmup_steps: int = 0,
                   grad_clip_norm: float = 0.0, weight_decay: float = 0.0,
                   momentum: float = 0.9, nesterov: bool = False,
                   backbone_lr_scale: float = 1.0) -> optax.GradientTransformation:
  """The optimizer of a run, with an optional warmup-cosine schedule and clipping.

  Args:
    learning_rate: peak learning rate (the MIT lab uses Adam at 5e-4; the CelebA
      worst-group protocols SGD at 1e-3 to 1e-5).
    total_steps: length of the run, for the cosine decay.
    optimizer: ``"adam"`` (Adam; AdamW when ``weight_decay`` > 0), ``"adamw"``
      (decoupled weight decay) or ``"sgd"`` (heavy-ball momentum, L2 weight decay added
      to the gradient as torch.optim.SGD does).
    schedule: ``"constant"`` or ``"warmup_cosine"`` (linear warmup to the peak, cosine
      decay to 0 at ``total_steps``).
    warmup_steps: linear warmup steps of ``warmup_cosine``.
    grad_clip_norm: clip gradients to this global norm first (0 = off).
    weight_decay: weight decay (0 = none).
    momentum: SGD momentum.
    nesterov: Nesterov momentum for SGD.
    backbone_lr_scale: the backbone's learning rate as a fraction of the head's: 1 trains
      all alike, 0 freezes the backbone (a linear probe; BatchNorm statistics still
      follow the data in train mode), in between fine-tunes it more gently. Needs a
      model with a ``head`` (the ResNets).

  Returns:
    An optax transformation.
  """
  if schedule == "constant":
    lr = learning_rate
  elif schedule == "warmup_cosine":
    lr = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=learning_rate, warmup_steps=min(warmup_steps, total_steps),
        decay_steps=max(total_steps, 1), end_value=0.0)
  else:
    raise ValueError(f"learning rate schedule must be one of {SCHEDULES}, got {schedule!r}")
  if optimizer == "sgd":
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    opt = optax.chain(*parts, optax.sgd(lr, momentum=momentum or None, nesterov=nesterov))
  elif optimizer in ("adam", "adamw"):
    opt = (optax.adamw(lr, weight_decay=weight_decay) if weight_decay or optimizer == "adamw"
           else optax.adam(lr))
  else:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
  if backbone_lr_scale != 1.0:
    backbone = (optax.set_to_zero() if backbone_lr_scale == 0.0
                else optax.chain(opt, optax.scale(backbone_lr_scale)))
    opt = optax.multi_transform({HEAD: opt, "backbone": backbone}, backbone_labels)
  if grad_clip_norm:
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), opt)
  return opt


def _forward_loss(model: nnx.Module, batch: Batch, key: jax.Array | None, *, kind: str,
                  kl_weight: float, reconstruction_loss: str,
                  group_dro: GroupDRO | None = None, group_weights: jax.Array | None = None
                  ) -> tuple[jax.Array, Metrics]:
  """The batch loss and metrics; with ``group_dro`` also the updated weights
  (``metrics["group_weights"]``). ``accuracy`` always counts every real example once,
  whatever the loss weights."""
  weights = batch.get("weight", batch["mask"])
  if kind == "dbvae":
    # Losses in float32 whatever the model computed in (bfloat16 training).
    logits, aux = precision.to_float32(model(batch["image"], rngs=key))
    loss, metrics = losses.dbvae_loss(
        logits, batch["label"], batch["image"], aux, vae_mask=batch["vae_mask"],
        weights=weights, kl_weight=kl_weight, reconstruction_loss=reconstruction_loss)
  else:
    logits = precision.to_float32(model(batch["image"])[0])
    per_example = losses.classification_per_example(logits, batch["label"])
    if group_dro is None:
      loss, metrics = losses.classification_loss(logits, batch["label"], weights)
    else:
      group_loss, _ = losses.group_means(per_example, batch["group"], batch["mask"],
                                         group_dro.num_groups)
      q = losses.group_dro_update(group_weights, group_loss, eta=group_dro.eta,
                                  adjustment=jnp.asarray(group_dro.adjustment,
                                                         per_example.dtype))
      loss = jnp.dot(q, group_loss)
      metrics = {"loss": loss, "group_weights": q,
                 "average_loss": losses.classification_loss(logits, batch["label"],
                                                            batch["mask"])[0]}
  correct = losses.correct_predictions(logits, batch["label"])
  mask = jnp.asarray(batch["mask"], correct.dtype)
  metrics["accuracy"] = jnp.sum(correct * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return loss, metrics


def _check_kind(kind: str) -> None:
  if kind not in MODEL_KINDS:
    raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")


def make_train_step(model_def: ModelDef, tx: optax.GradientTransformation, *,
                    kind: str = "classifier", kl_weight: float = 0.0005,
                    reconstruction_loss: str = "l1", group_dro: GroupDRO | None = None
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """Builds the jitted training step.

  Args:
    model_def: from ``create_train_state``.
    tx: the optimizer the state was created with.
    kind: ``"classifier"`` or ``"dbvae"``.
    kl_weight: DB-VAE KL weight.
    reconstruction_loss: DB-VAE reconstruction error, ``"l1"`` or ``"l2"``.
    group_dro: Group DRO's objective (classifiers; batches then need ``group`` and the
      state ``num_groups`` weights), or None for the weighted mean loss.

  Returns:
    ``train_step(state, batch) -> (new_state, metrics)``; ``state`` is donated
    (do not reuse it after the call). Metrics: ``loss``, ``accuracy``,
    ``grad_norm``, ``finite`` (bool: loss and updated parameters all finite), for the
    DB-VAE ``class_loss``, ``vae_loss``, ``kl``, ``recon``, and for Group DRO
    ``average_loss`` (the plain mean) and ``max_group_weight``.
  """
  _check_kind(kind)
  if group_dro is not None and kind != "classifier":
    raise ValueError("Group DRO trains classifiers; the DB-VAE has its own objective")
  forward = functools.partial(_forward_loss, kind=kind, kl_weight=kl_weight,
                              reconstruction_loss=reconstruction_loss, group_dro=group_dro)

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    key = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params, model_state):
      # The BatchNorm statistics enter as an argument (not a closure) so their
      # variables are created inside this trace and may be updated in place.
      # copy=True: fresh Variables owned by this trace (flax >= 0.11.2 reuses the
      # State's Variables by default, which jax.grad then refuses to mutate).
      model = nnx.merge(model_def.train, params, model_state, copy=True)
      loss, metrics = forward(model, batch, key, group_weights=state.group_weights)
      # BatchNorm updated its running statistics in train mode: carry them out.
      _, _, model_state = nnx.split(model, nnx.Param, ...)
      return loss, (metrics, model_state)

    grads, (metrics, model_state) = jax.grad(loss_fn, has_aux=True)(state.params,
                                                                      state.model_state)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # One flag for "this step left a usable state": the loop refuses to
    # checkpoint (and stops) when the loss or any updated parameter is NaN/inf.
    finite = jnp.isfinite(metrics["loss"])
    for leaf in jax.tree.leaves(params):
      finite &= jnp.all(jnp.isfinite(leaf))
    metrics = dict(metrics, grad_norm=optax.global_norm(grads), finite=finite)
    group_weights = metrics.pop("group_weights", state.group_weights)
    if group_dro is not None:
      metrics["max_group_weight"] = jnp.max(group_weights)
    new_state = state.replace(step=state.step + 1, params=params, model_state=model_state,
                              opt_state=opt_state, group_weights=group_weights)
    return new_state, metrics

  return jax.jit(train_step, donate_argnums=0)


def make_eval_step(model_def: ModelDef, *, kind: str = "classifier",
                   kl_weight: float = 0.0005, reconstruction_loss: str = "l1"
                   ) -> Callable[[TrainState, Batch], Metrics]:
  """Builds the jitted evaluation step (eval mode, ``z = mu`` for the DB-VAE).

  Returns:
    ``eval_step(state, batch) -> metrics`` (the training metrics without
    ``grad_norm``), padding excluded through ``batch["mask"]``.
  """
  _check_kind(kind)

  def eval_step(state: TrainState, batch: Batch) -> Metrics:
    model = model_def.merge(state)
    return _forward_loss(model, batch, None, kind=kind, kl_weight=kl_weight,
                         reconstruction_loss=reconstruction_loss)[1]

  return jax.jit(eval_step)


def make_encode_step(model_def: ModelDef, out_sharding=None
                     ) -> Callable[[TrainState, jax.Array], jax.Array]:
  """Builds a jitted ``encode(state, images) -> mu`` for a DB-VAE (eval mode).

  Args:
    model_def: the DB-VAE's ``ModelDef``.
    out_sharding: sharding of the result; pass a replicated sharding so every
      host can read all of ``mu`` in multi-host runs.
  """

  def encode(state: TrainState, images: jax.Array) -> jax.Array:
    return model_def.merge(state).encode(images)[1]

  return jax.jit(encode, out_shardings=out_sharding)
