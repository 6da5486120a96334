"""The training split and each epoch's plan: which examples, in which order.

* :class:`TrainData`: the training split's source, labels, attributes, which
  examples are faces, and the training groups of methods that use them (read once,
  without decoding images).
* :func:`epoch_plan`: the ordered example indices of one epoch for
  ``config.train.method`` (``train.methods`` says what each does; the DB-VAE's
  per-face probabilities and JTT's repeats come in as arguments / data) and the MIT
  lab's half-face / half-non-face batches (``config.train.face_nonface_batches``). A
  pure function of the config, the data, the epoch and the probabilities, so a resumed
  run rebuilds what it was following (the loop also checkpoints the plan itself).
* :func:`batches`: the pipeline's batches of a plan with the config's input settings.
* :func:`encode_faces` / :func:`dbvae_probabilities`: the DB-VAE's latent means of all
  training faces and the sampling probabilities they give.
"""

from __future__ import annotations

from typing import Mapping

import ml_collections
import numpy as np
from tqdm import tqdm

from facebias_jax.data import pipeline, sampling, sources
from facebias_jax.train import debias, methods, sharding


def face_flags(attributes: Mapping[str, np.ndarray], labels: np.ndarray,
               face_key: str) -> np.ndarray:
  """Which examples are faces (their VAE loss counts; DB-VAE resamples them).

  Args:
    attributes: attribute arrays [N].
    labels: labels [N].
    face_key: ``"label"`` (label 1 = face), or an attribute name (1 = face, e.g.
      the synthetic set's ``is_face``); when the dataset has no such attribute
      every example is a face (e.g. CelebA for the ``Male`` task).

  Returns:
    bool [N].
  """
  if face_key == "label":
    return np.asarray(labels) == 1
  if face_key in attributes:
    return np.asarray(attributes[face_key]) == 1
  return np.ones(len(labels), bool)


class TrainData:
  """The training split: source, labels, attributes, faces and training groups.

  Attributes:
    groups: ``methods.Groups`` of ``config.train.groups`` for the methods that use
      groups (``methods.GROUP_METHODS``), else one group of everything.
    weights: float32 [N] per-example loss weights (``reweight`` by loss), else None.
    repeats: JTT's stage-2 repeats per example (set by the loop), else None.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    d = config.data
    self.source = sources.load_source(d.name, split=d.train_split, data_dir=d.data_dir,
                                      manual_dir=d.manual_dir)
    self.size = len(self.source)
    if self.size == 0:
      raise ValueError(f"split {d.train_split!r} of {d.name!r} is empty")
    self.labels = sources.read_column(self.source, d.label_key)
    self.attributes = sources.read_attributes(self.source)
    self.value_names = sources.value_names(self.source)
    self.face_key = config.debias.face_key
    self.is_face = face_flags(self.attributes, self.labels, self.face_key)
    self.faces = np.flatnonzero(self.is_face).astype(np.int64)
    self.nonfaces = np.flatnonzero(~self.is_face).astype(np.int64)
    method = config.train.method
    self.groups = (methods.assign(self.attributes, methods.group_spec(config),
                                  value_names=self.value_names, method=method,
                                  split=d.train_split)
                   if method in methods.GROUP_METHODS else methods.single_group(self.size))
    self.weights = (methods.example_weights(self.groups)
                    if method == "reweight" and config.train.reweight_by == "loss" else None)
    self.repeats: np.ndarray | None = None


def _inverse_frequency_sampling(config: ml_collections.ConfigDict) -> bool:
  t = config.train
  return ((t.method == "reweight" and t.reweight_by == "sampling")
          or (t.method == "group_dro" and bool(config.group_dro.balanced_batches)))


def epoch_length(config: ml_collections.ConfigDict, data: TrainData) -> int:
  """Examples in one epoch's plan (the same for every epoch of a run)."""
  t = config.train
  if t.face_nonface_batches:
    return (data.size // int(t.batch_size)) * int(t.batch_size)
  counts = data.groups.counts
  if t.method == "subsample":
    return int(counts.min()) * counts.size
  if t.method == "oversample":
    return int(counts.max()) * counts.size
  if t.method == "jtt":
    if data.repeats is None:
      raise ValueError("JTT's stage 2 needs the error set of stage 1 (data.repeats)")
    return int(data.repeats.sum())
  return data.size


def epoch_plan(config: ml_collections.ConfigDict, data: TrainData, epoch: int, *,
               face_probabilities: np.ndarray | None = None) -> np.ndarray:
  """The ordered example indices of one epoch.

  Args:
    config: the training config.
    data: the training split.
    epoch: epoch number.
    face_probabilities: [num faces] DB-VAE sampling probabilities of
      ``data.faces`` (``method="dbvae"``), else None.

  Returns:
    int64 [epoch_length(config, data)].
  """
  t, seed = config.train, int(config.seed)
  if t.face_nonface_batches:
    bs = int(t.batch_size)
    return sampling.face_nonface_indices(
        data.faces, data.nonfaces, batch_size=bs, num_batches=data.size // bs, seed=seed,
        epoch=epoch, face_probabilities=face_probabilities)
  if t.method == "subsample":
    return sampling.subsample_indices(data.groups.codes, seed=seed, epoch=epoch)
  if t.method == "oversample":
    return sampling.balanced_indices(data.groups.codes, seed=seed, epoch=epoch,
                                     mode="oversample")
  if _inverse_frequency_sampling(config):
    return sampling.weighted_indices(methods.inverse_frequency(data.groups), data.size,
                                     seed=seed, epoch=epoch)
  if t.method == "jtt":
    return sampling.repeated_indices(data.repeats, seed=seed, epoch=epoch)
  if t.method == "dbvae":
    faces = data.faces[sampling.weighted_indices(face_probabilities, data.faces.size,
                                                 seed=seed, epoch=epoch)]
    # Non-faces (if any) are seen once each; the whole mix is shuffled.
    plan = np.concatenate([faces, data.nonfaces])
    return plan[sampling.uniform_indices(plan.size, seed=seed, epoch=epoch)]
  return sampling.uniform_indices(data.size, seed=seed, epoch=epoch)


def batches(config: ml_collections.ConfigDict, source, indices: np.ndarray, *, train: bool,
            epoch: int = 0, start_batch: int = 0, batch_size: int | None = None):
  """``pipeline.batches`` of ``indices`` with the config's input settings."""
  d = config.data
  crop = ((tuple(d.crop_scale), tuple(d.crop_ratio)) if train and d.get("random_crop", False)
          else None)
  return pipeline.batches(
      source, indices, batch_size=int(batch_size or config.train.batch_size),
      image_size=int(d.image_size), train=train, seed=int(config.seed), epoch=epoch,
      start_batch=start_batch, normalize=d.normalize, flip=d.flip if train else False,
      random_crop=crop, label_key=d.label_key, num_threads=int(d.num_threads),
      face_masks=False, cache_mb=float(d.get("cache_mb", 0)))


def eval_batches(config: ml_collections.ConfigDict, source):
  """Every example of ``source`` once, in order, as evaluation sees it (no augmentation,
  ``config.eval.batch_size``, padded last batch), read whole by every process: what
  validation, JTT's error set and DFR's embeddings run over."""
  d = config.data
  return pipeline.batches(source, np.arange(len(source)), batch_size=int(config.eval.batch_size),
                          image_size=int(d.image_size), train=False, normalize=d.normalize,
                          label_key=d.label_key, process_index=0, process_count=1,
                          num_threads=int(d.num_threads), face_masks=False,
                          cache_mb=float(d.get("cache_mb", 0)))


def encode_faces(config: ml_collections.ConfigDict, data: TrainData, encode_fn, state,
                 mesh, *, progress: bool = False) -> np.ndarray:
  """Latent means [num faces, latent] of every training face, in ``data.faces`` order.

  Args:
    config: the training config.
    data: the training split.
    encode_fn: ``steps.make_encode_step``'s function.
    state: the current ``TrainState``.
    mesh: the device mesh batches are sharded over.
    progress: show a progress bar.
  """
  bs = int(config.train.batch_size)
  total = pipeline.num_batches(data.faces.size, bs, train=False)
  parts = []
  for batch in tqdm(batches(config, data.source, data.faces, train=False), total=total,
                    desc="DB-VAE: latent means of the training faces", leave=False,
                    disable=not progress):
    images = sharding.shard_batch({"image": batch["image"]}, mesh)["image"]
    parts.append(np.asarray(encode_fn(state, images)))
  return np.concatenate(parts)[:data.faces.size]


def dbvae_probabilities(config: ml_collections.ConfigDict, mu: np.ndarray) -> np.ndarray:
  """The faces' sampling probabilities from their latent means (``config.debias``)."""
  b = config.debias
  return debias.sample_probabilities(mu, bins=int(b.bins), smoothing=float(b.smoothing),
                                     combine=b.combine)
