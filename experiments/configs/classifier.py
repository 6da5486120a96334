r"""Default classifier config: the MIT lab's standard CNN, faces vs non-faces.

Trains on the synthetic benchmark's imbalanced train split (few darker faces,
skewed sex ratios) and evaluates per group (skin x sex) on its balanced test
split::

  python -m experiments.train_classifier \
      --config=experiments/configs/classifier.py --workdir=workdirs/cnn

Every field can be overridden, e.g. ``--config.train.batch_size=64`` or
``--config.model.name=resnet18``. Sections: ``model`` (``get_model`` name and
options), ``data`` (TFDS dataset and input), ``train`` (optimizer, method,
run length, logging, checkpoints, selection), ``group_dro`` / ``jtt`` / ``dfr`` (those
methods' settings), ``debias`` (DB-VAE loss and resampling; unused by plain
classifiers), ``eval`` (validation per group and the final evaluation).
"""

import ml_collections


def model_section(name: str, **options) -> ml_collections.ConfigDict:
  """``config.model``: a ``get_model`` name, one logit, the convolution choice, options.

  Variants replace the whole section with their own model (``dbvae.py``,
  ``resnet18_sex.py``), so the fields every model takes are set here once.
  """
  # conv_impl: the convolution kernels (facebias_jax.ops.conv): "auto" (oneDNN on one
  # CPU device, else XLA's), "onednn", "fast" or "xla"; values and checkpoints do not
  # depend on it.
  return ml_collections.ConfigDict({"name": name, "num_classes": 1, "conv_impl": "auto",
                                    **options})


def get_config() -> ml_collections.ConfigDict:
  """The default classifier config (see the module docstring)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # standard CNN: the lab's 12-24-48-72 channels and 512-unit hidden layer.
  config.model = model_section("standard_cnn", filters=12, hidden_dim=512)
  # First weights: "" (fresh, from config.seed), a torchvision state dict (.pth or
  # .safetensors; ResNets with small_inputs=False, data.normalize="imagenet"), or another
  # run's workdir. The head is re-initialised unless init_head and its shapes match.
  config.model.init_from = ""
  config.model.init_head = False

  config.data = ml_collections.ConfigDict()
  config.data.name = "facebias_synthetic_faces/faces_vs_nonfaces_64"
  config.data.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS default.
  config.data.manual_dir = ml_collections.FieldReference(None, field_type=str)  # Raw files.
  config.data.train_split = "train"
  config.data.validation_split = "validation"  # Per-group validation, model selection.
  config.data.eval_split = "test"   # Balanced over skin x sex (PPB-like).
  config.data.image_size = 64
  config.data.normalize = "unit"    # "imagenet" for torchvision-initialised ResNets.
  config.data.label_key = "label"   # "Male" for CelebA sex classifiers.
  config.data.flip = True
  # RandomResizedCrop before the flip (the CelebA protocols: scale 0.7-1, aspect
  # 1-4/3), drawn per (seed, epoch, position) so resumed runs see the same crops.
  config.data.random_crop = False
  config.data.crop_scale = (0.7, 1.0)
  config.data.crop_ratio = (1.0, 4.0 / 3.0)
  config.data.num_threads = 2
  # Decoded images, resized to image_size, stay in memory between epochs when the split
  # fits in this many MiB (the demo's 20k images at 32 px: 59 MiB; CelebA at 224 px
  # does not fit); random crops re-read every epoch. 0 = read every epoch.
  config.data.cache_mb = 1024

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32
  config.train.num_epochs = 2
  config.train.max_steps = 0        # > 0 overrides num_epochs.
  config.train.optimizer = "adam"     # "adam" (AdamW if weight_decay), "adamw" or "sgd".
  config.train.learning_rate = 5e-4
  config.train.schedule = "constant"  # or "warmup_cosine".
  config.train.warmup_steps = 0
  config.train.grad_clip_norm = 0.0
  config.train.weight_decay = 0.0
  config.train.momentum = 0.9         # sgd only.
  config.train.nesterov = False       # sgd only.
  # Backbone learning rate / head's (ResNets): 1 trains all alike, 0 freezes the
  # backbone (linear probe).
  config.train.backbone_lr_scale = 1.0
  # What the training step computes in: "float32", or "bfloat16" (mixed precision for
  # GPUs and TPUs: bf16 activations, float32 parameters, optimizer state, BatchNorm
  # statistics and loss; evaluation and CAM stay float32). CPUs run bf16 slowly.
  config.train.dtype = "float32"
  # Which checkpoint the final report evaluates: the best validated one by
  # "worst_group_accuracy" (the group-robustness protocols), "accuracy" or "loss",
  # or the "last". patience > 0 stops after that many validations without improvement.
  config.train.select_by = "worst_group_accuracy"
  config.train.patience = 0
  # The training method (facebias_jax.train.methods, docs/methods.md): "erm",
  # "subsample", "oversample", "reweight", "group_dro", "jtt", "dfr" or "dbvae". Those
  # that use group labels take them from train.groups ("" = eval.groups).
  config.train.method = "erm"
  config.train.groups = ""
  config.train.reweight_by = "loss"   # reweight: "loss" weights or "sampling" probabilities.
  config.train.face_nonface_batches = False  # Lab-style half faces, half non-faces.
  config.train.log_every_steps = 50
  config.train.checkpoint_every_steps = 500
  config.train.keep_checkpoints = 3
  config.train.progress_bar = True

  # Group DRO (Sagawa et al. 2020): eta, the group weights' step size; adjustment C in
  # C / sqrt(n_g); balanced_batches draws groups equally often (the authors' runs).
  config.group_dro = ml_collections.ConfigDict(
      {"eta": 0.01, "adjustment": 0.0, "balanced_batches": True})
  # JTT (Liu et al. 2021): stage 1 ERM epochs T, and lambda, how often stage 2 repeats
  # every example stage 1 got wrong (paper, CelebA: T=1, lambda=50).
  config.jtt = ml_collections.ConfigDict({"identify_epochs": 1, "upweight": 50})
  # DFR (Kirichenko et al. 2022): the ERM run whose last layer is refit ("" = train one
  # into <workdir>/dfr_base), the C grid, the half splits C is tuned on, the refits
  # averaged.
  config.dfr = ml_collections.ConfigDict({
      "base_run": "", "c_grid": (3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003),
      "tune_retrains": 1, "num_retrains": 20})

  config.debias = ml_collections.ConfigDict()
  config.debias.bins = 10
  config.debias.smoothing = 0.001
  config.debias.combine = "max"     # "max" (MIT lab) or "product" (paper).
  config.debias.kl_weight = 0.0005
  config.debias.reconstruction_loss = "l1"
  config.debias.face_key = "is_face"  # Attribute marking faces; "label" = label 1.

  config.eval = ml_collections.ConfigDict()
  config.eval.every_epochs = 1        # Validate per group every N epochs (0: off) ...
  config.eval.every_steps = 0         # ... or every N steps.
  config.eval.val_n_boot = 0          # Bootstrap resamples of validation CIs (0: none).
  config.eval.at_end = True
  config.eval.groups = "skin,Male"
  config.eval.batch_size = 128
  config.eval.n_boot = 1000
  # Groups with fewer examples are reported with their counts but left out of the
  # fairness summary (a worst group of n=1 says nothing).
  config.eval.min_group_size = 20
  return config
