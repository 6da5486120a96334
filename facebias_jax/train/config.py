"""A training config's checks and what it builds: the model options and the optimizer.

``validate_config`` refuses a config before anything is written or trained, with a
message that names the field and the fix. ``optimizer_kwargs`` /
``make_optimizer_from_config`` turn ``config.train`` into the optax transformation
(``steps.make_optimizer``); the model comes from ``runs.build_model``.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

from facebias_jax import imaging
from facebias_jax.models import MODELS, RESNETS, precision
from facebias_jax.ops import conv as conv_lib
from facebias_jax.train import debias, methods, steps as steps_lib
from facebias_jax.train import init as init_lib
from facebias_jax.train.selection import SELECT_BY

RECONSTRUCTION_LOSSES = ("l1", "l2")
SECTIONS = ("model", "data", "train", "debias", "eval")


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(f"invalid config: {message}")


def _check_model_data(m: Any, d: Any) -> None:
  _check(m.name in MODELS, f"config.model.name={m.name!r} is not one of {sorted(MODELS)}")
  _check(int(m.get("num_classes", 1)) >= 1, "config.model.num_classes must be >= 1")
  _check(m.get("conv_impl", "auto") in conv_lib.CONV_IMPLS,
         f"config.model.conv_impl={m.get('conv_impl')!r} is not one of "
         f"{conv_lib.CONV_IMPLS}")
  _check(bool(d.name), "config.data.name must name a TFDS dataset, e.g. "
         "'facebias_synthetic_faces/faces_vs_nonfaces_64'")
  _check(d.image_size is not None and int(d.image_size) > 0,
         f"config.data.image_size must be positive, got {d.image_size!r}")
  _check(float(d.get("cache_mb", 0)) >= 0,
         f"config.data.cache_mb must be >= 0 (0 = no in-memory image cache), got "
         f"{d.get('cache_mb')}")
  _check(d.normalize in imaging.NORMALIZATIONS,
         f"config.data.normalize={d.normalize!r} is not one of {imaging.NORMALIZATIONS}")


def _check_train(m: Any, t: Any) -> None:
  _check(int(t.batch_size) > 0, f"config.train.batch_size must be positive, got {t.batch_size}")
  _check(int(t.max_steps) > 0 or int(t.num_epochs) > 0,
         "set config.train.num_epochs > 0 or config.train.max_steps > 0")
  _check(float(t.learning_rate) > 0, f"config.train.learning_rate must be > 0, got "
         f"{t.learning_rate}")
  _check(t.get("optimizer", "adam") in steps_lib.OPTIMIZERS,
         f"config.train.optimizer={t.get('optimizer')!r} is not one of {steps_lib.OPTIMIZERS}")
  _check(t.get("schedule", "constant") in steps_lib.SCHEDULES,
         f"config.train.schedule={t.get('schedule')!r} is not one of {steps_lib.SCHEDULES}")
  # Negative values would not fail: clipping to -1 flips the gradient's sign and the
  # run trains uphill; a negative decay grows the weights.
  for field in ("grad_clip_norm", "weight_decay", "warmup_steps"):
    _check(float(t.get(field, 0)) >= 0, f"config.train.{field} must be >= 0, got {t.get(field)}")
  _check(0.0 <= float(t.get("momentum", 0.9)) < 1.0,
         f"config.train.momentum must be in [0, 1), got {t.get('momentum')}")
  scale = float(t.get("backbone_lr_scale", 1.0))
  _check(0.0 <= scale <= 1.0, f"config.train.backbone_lr_scale must be in [0, 1], got {scale}")
  _check(scale == 1.0 or m.name in RESNETS,
         f"config.train.backbone_lr_scale={scale} needs a model with a linear head over a "
         f"backbone (the ResNets), got config.model.name={m.name!r}")
  _check(t.get("dtype", "float32") in precision.COMPUTE_DTYPES,
         f"config.train.dtype={t.get('dtype')!r} is not one of {precision.COMPUTE_DTYPES} "
         "(bfloat16: mixed precision, float32 parameters and optimizer state)")
  for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    _check(int(t[field]) > 0, f"config.train.{field} must be positive, got {t[field]}")
  _check_method(m, t)
  if t.face_nonface_batches:
    _check(int(t.batch_size) % 2 == 0, "config.train.face_nonface_batches needs an even "
           f"batch size, got {t.batch_size}")


def _check_method(m: Any, t: Any) -> None:
  method = t.get("method", "erm")
  _check(method in methods.METHODS,
         f"config.train.method={method!r} is not one of {methods.METHODS}")
  if method == "dbvae":
    _check(m.name == "dbvae", "config.train.method='dbvae' needs config.model.name='dbvae' "
           f"(the probabilities come from its latent space), got {m.name!r}")
  if method in methods.CLASSIFIER_ONLY:
    _check(m.name != "dbvae", f"config.train.method={method!r} trains classifiers; the "
           "DB-VAE takes 'erm', 'subsample', 'oversample', 'reweight' or 'dbvae'")
  _check(t.get("reweight_by", "loss") in methods.REWEIGHT_BY,
         f"config.train.reweight_by={t.get('reweight_by')!r} is not one of "
         f"{methods.REWEIGHT_BY}")
  if t.face_nonface_batches:
    _check(method in ("erm", "dbvae"), "config.train.face_nonface_batches makes its own "
           f"batches; it works with method 'erm' or 'dbvae', not {method!r}")


def _check_method_sections(config: Any) -> None:
  """The settings of the method the config trains with."""
  method = config.train.get("method", "erm")
  if method == "group_dro":
    g = config.group_dro
    _check(float(g.eta) > 0, f"config.group_dro.eta must be > 0, got {g.eta}")
    _check(float(g.adjustment) >= 0,
           f"config.group_dro.adjustment must be >= 0, got {g.adjustment}")
  if method == "jtt":
    j = config.jtt
    _check(int(j.identify_epochs) >= 1,
           f"config.jtt.identify_epochs must be >= 1, got {j.identify_epochs}")
    _check(int(j.upweight) >= 1, f"config.jtt.upweight must be >= 1, got {j.upweight}")
  if method == "dfr":
    f = config.dfr
    grid = tuple(f.c_grid)
    _check(len(grid) > 0 and all(float(c) > 0 for c in grid),
           f"config.dfr.c_grid must be positive inverse regularisation strengths, got {grid}")
    for field in ("tune_retrains", "num_retrains"):
      _check(int(f[field]) >= 1, f"config.dfr.{field} must be >= 1, got {f[field]}")
    _check(config.model.name in ("standard_cnn", *RESNETS),
           f"config.train.method='dfr' retrains the last Linear layer of the standard CNN or a "
           f"ResNet, got config.model.name={config.model.name!r}")
    _check(not tuple(config.model.get("head_dims", ())), "config.train.method='dfr' retrains "
           "one Linear layer over the pooled features: set config.model.head_dims=()")


def _check_validation(t: Any, d: Any, e: Any) -> None:
  _check(t.get("select_by", "last") in SELECT_BY,
         f"config.train.select_by={t.get('select_by')!r} is not one of {SELECT_BY}")
  for section, field in (("train", "patience"), ("eval", "every_epochs"),
                         ("eval", "every_steps"), ("eval", "min_group_size")):
    value = (t if section == "train" else e).get(field, 0)
    _check(int(value) >= 0, f"config.{section}.{field} must be >= 0, got {value}")
  if t.get("select_by", "last") != "last" or int(t.get("patience", 0)):
    _check(int(e.get("every_epochs", 0)) or int(e.get("every_steps", 0)),
           f"config.train.select_by={t.get('select_by')!r} (or patience) needs validations: "
           "set config.eval.every_epochs or config.eval.every_steps > 0")
  if d.get("random_crop", False):
    (s0, s1), (r0, r1) = d.crop_scale, d.crop_ratio
    _check(0 < float(s0) <= float(s1) <= 1, f"config.data.crop_scale={tuple(d.crop_scale)} "
           "must be (min, max) with 0 < min <= max <= 1, e.g. (0.7, 1.0)")
    _check(0 < float(r0) <= float(r1), f"config.data.crop_ratio={tuple(d.crop_ratio)} must be "
           "(min, max) aspect ratios w/h with 0 < min <= max, e.g. (1.0, 4/3)")


def validates(config: ml_collections.ConfigDict) -> bool:
  """Whether training validates on ``config.data.validation_split``."""
  e = config.eval
  return bool(int(e.get("every_epochs", 0)) or int(e.get("every_steps", 0)))


def _check_debias(m: Any, d: Any, b: Any) -> None:
  _check(int(b.bins) >= 1, f"config.debias.bins must be >= 1, got {b.bins}")
  _check(float(b.smoothing) >= 0, f"config.debias.smoothing must be >= 0, got {b.smoothing}")
  _check(b.combine in debias.COMBINE_MODES,
         f"config.debias.combine={b.combine!r} is not one of {debias.COMBINE_MODES}")
  _check(float(b.kl_weight) >= 0, f"config.debias.kl_weight must be >= 0, got {b.kl_weight}")
  _check(b.reconstruction_loss in RECONSTRUCTION_LOSSES,
         f"config.debias.reconstruction_loss={b.reconstruction_loss!r} is not one of "
         f"{RECONSTRUCTION_LOSSES}")
  if m.name == "dbvae":
    _check(d.normalize == "unit", "the DB-VAE reconstructs [0, 1] images: use "
           "config.data.normalize='unit'")


def validate_config(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Checks a training config; raises ValueError naming the field and the fix.

  Args:
    config: the training config (sections model, data, train, debias, eval).
    num_devices: devices the batch is split over (default ``jax.device_count()``).
  """
  for section in SECTIONS:
    _check(section in config, f"missing section config.{section}")
  m, d, t, b, e = (config[s] for s in SECTIONS)
  _check_model_data(m, d)
  _check_train(m, t)
  _check_validation(t, d, e)
  _check_debias(m, d, b)
  for section in methods.SECTIONS.get(t.get("method", "erm"), ()):
    _check(section in config, f"config.train.method={t.method!r} needs the section "
           f"config.{section} (see experiments/configs/classifier.py)")
  _check_method_sections(config)
  init_lib.check_init_from(config)
  _check(int(e.batch_size) > 0, f"config.eval.batch_size must be positive, got {e.batch_size}")
  num_devices = jax.device_count() if num_devices is None else num_devices
  _check(int(t.batch_size) % num_devices == 0,
         f"config.train.batch_size={t.batch_size} does not divide across {num_devices} "
         f"devices; use a multiple of {num_devices}")


def optimizer_kwargs(config: Any, *, total_steps: int) -> dict:
  """Keyword arguments of ``steps.make_optimizer`` from ``config.train``."""
  t = config.train
  return {"learning_rate": float(t.learning_rate), "total_steps": int(total_steps),
          "optimizer": t.get("optimizer", "adam"),
          "schedule": t.get("schedule", "constant"),
          "warmup_steps": int(t.get("warmup_steps", 0)),
          "grad_clip_norm": float(t.get("grad_clip_norm", 0.0)),
          "weight_decay": float(t.get("weight_decay", 0.0)),
          "momentum": float(t.get("momentum", 0.9)),
          "nesterov": bool(t.get("nesterov", False)),
          "backbone_lr_scale": float(t.get("backbone_lr_scale", 1.0))}


def make_optimizer_from_config(config: Any, *, total_steps: int) -> optax.GradientTransformation:
  """The optimizer ``config.train`` describes (see ``steps.make_optimizer``)."""
  kwargs = optimizer_kwargs(config, total_steps=total_steps)
  return steps_lib.make_optimizer(kwargs.pop("learning_rate"), **kwargs)
