"""Samplers: the ordered example indices of one training epoch.

Every sampler is a pure function of its inputs and ``(seed, epoch)``, so a
resumed run rebuilds exactly the plan it was following (the training loop also
checkpoints the plan itself, because DB-VAE probabilities depend on the weights
at the start of the epoch).

* ``uniform_indices`` -- a permutation of all examples.
* ``balanced_indices`` -- equal counts per group (e.g. skin x sex), by
  over-sampling the small groups or under-sampling the large ones, redrawn every epoch.
* ``subsample_indices`` -- one fixed group-balanced subset (every group cut to the
  smallest, drawn once per seed, as SUBG does), reshuffled every epoch.
* ``repeated_indices`` -- every example a given number of times (JTT's upsampled error
  set), shuffled.
* ``weighted_indices`` -- draws with replacement by given probabilities (the
  DB-VAE's debiasing probabilities, or any reweighting).
* ``face_nonface_indices`` -- the MIT lab's detection batches: every batch is
  half faces (drawn by the given probabilities, distinct within a batch) and
  half non-faces (uniform, distinct within a batch).
"""

from __future__ import annotations

import numpy as np

BALANCE_MODES = ("oversample", "undersample")

# Distinct streams per sampler so e.g. the uniform and balanced plans of the same
# (seed, epoch) are not correlated.
_SALT = {"uniform": 0, "balanced": 1, "weighted": 2, "face_nonface": 3, "subset": 4,
         "repeated": 5}


def _rng(seed: int, epoch: int, sampler: str) -> np.random.Generator:
  if seed < 0 or epoch < 0:
    raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
  return np.random.default_rng([int(seed), int(epoch), _SALT[sampler]])


def uniform_indices(n: int, *, seed: int, epoch: int) -> np.ndarray:
  """A random permutation of ``range(n)`` (int64), fixed by ``(seed, epoch)``."""
  if n <= 0:
    raise ValueError(f"cannot sample from an empty dataset (n={n})")
  return _rng(seed, epoch, "uniform").permutation(n).astype(np.int64)


def balanced_indices(group_ids, *, seed: int, epoch: int,
                     mode: str = "oversample") -> np.ndarray:
  """Indices with the same number of examples from every group, shuffled.

  Args:
    group_ids: [N] group of each example (strings from
      ``facebias_jax.data.groups.assign_groups`` or integers). Every distinct
      value is a group, including ``"unknown"``; pass only the examples to
      balance and map the result back if some must be left out.
    seed: random seed.
    epoch: epoch number (a new draw every epoch).
    mode: ``"oversample"`` -- every group gets as many examples as the largest
      (each member repeated ``target // size`` times plus a random distinct
      subset for the rest, so no example of a small group is left out);
      ``"undersample"`` -- every group gets as many as the smallest (a random
      distinct subset, different every epoch).

  Returns:
    int64 [num_groups * target] example indices.
  """
  if mode not in BALANCE_MODES:
    raise ValueError(f"balance mode must be one of {BALANCE_MODES}, got {mode!r}")
  group_ids = np.asarray(group_ids)
  if group_ids.ndim != 1 or group_ids.size == 0:
    raise ValueError(f"group_ids must be a non-empty 1-D array, got shape {group_ids.shape}")
  rng = _rng(seed, epoch, "balanced")
  _, inverse, sizes = np.unique(group_ids, return_inverse=True, return_counts=True)
  target = int(sizes.max() if mode == "oversample" else sizes.min())
  # Stable sort groups examples in index order, so the plan does not depend on
  # how np.unique happens to order equal keys.
  order = np.argsort(inverse, kind="stable")
  members = np.split(order, np.cumsum(sizes)[:-1])
  picks = []
  for group in members:
    repeats, rest = divmod(target, group.size)
    picks.append(np.tile(group, repeats))
    picks.append(rng.choice(group, size=rest, replace=False))
  plan = np.concatenate(picks).astype(np.int64)
  return plan[rng.permutation(plan.size)]


def subsample_indices(group_ids, *, seed: int, epoch: int) -> np.ndarray:
  """A group-balanced subset drawn once per ``seed``, in a new order every epoch.

  SUBG (Idrissi et al., CLeaR 2022) trains on one random subset in which every group
  has as many examples as the smallest; unlike ``balanced_indices(mode="undersample")``
  the subset stays the same across epochs.

  Args:
    group_ids: [N] group of each example.
    seed: random seed (fixes the subset).
    epoch: epoch number (fixes the order).

  Returns:
    int64 [num_groups * smallest group size].
  """
  subset = balanced_indices(group_ids, seed=seed, epoch=0, mode="undersample")
  return subset[_rng(seed, epoch, "subset").permutation(subset.size)]


def repeated_indices(repeats, *, seed: int, epoch: int) -> np.ndarray:
  """Example ``i`` ``repeats[i]`` times, shuffled (JTT's upsampled epochs).

  Args:
    repeats: [N] non-negative integer counts, not all zero.
    seed: random seed.
    epoch: epoch number.

  Returns:
    int64 [sum(repeats)].
  """
  repeats = np.asarray(repeats)
  if repeats.ndim != 1 or np.any(repeats < 0) or repeats.sum() <= 0:
    raise ValueError("repeats must be a 1-D array of non-negative counts, not all zero")
  plan = np.repeat(np.arange(repeats.size, dtype=np.int64), repeats.astype(np.int64))
  return plan[_rng(seed, epoch, "repeated").permutation(plan.size)]


def _check_probabilities(probabilities, n: int | None = None) -> np.ndarray:
  p = np.asarray(probabilities, dtype=np.float64)
  if p.ndim != 1 or p.size == 0:
    raise ValueError(f"probabilities must be a non-empty 1-D array, got shape {p.shape}")
  if n is not None and p.size != n:
    raise ValueError(f"got {p.size} probabilities for {n} examples")
  if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
    raise ValueError("probabilities must be finite, non-negative and not all zero")
  return p / p.sum()


def weighted_indices(probabilities, num: int, *, seed: int, epoch: int) -> np.ndarray:
  """``num`` indices drawn with replacement, index ``i`` with ``probabilities[i]``.

  Args:
    probabilities: [N] non-negative weights (normalised here).
    num: number of indices to draw.
    seed: random seed.
    epoch: epoch number.

  Returns:
    int64 [num].
  """
  if num <= 0:
    raise ValueError(f"num must be positive, got {num}")
  p = _check_probabilities(probabilities)
  return _rng(seed, epoch, "weighted").choice(p.size, size=num, replace=True,
                                              p=p).astype(np.int64)


def face_nonface_indices(face_indices, nonface_indices, *, batch_size: int,
                         num_batches: int, seed: int, epoch: int,
                         face_probabilities=None) -> np.ndarray:
  """Batches of half faces and half non-faces, as in the MIT 6.S191 lab.

  Args:
    face_indices: [F] dataset indices of the face examples.
    nonface_indices: [G] dataset indices of the non-face examples.
    batch_size: global batch size, even.
    num_batches: batches in the epoch.
    seed: random seed.
    epoch: epoch number.
    face_probabilities: optional [F] sampling probabilities of the faces (the
      DB-VAE's); uniform when None.

  Returns:
    int64 [num_batches * batch_size]; batch ``b`` is
    ``result[b * batch_size:(b + 1) * batch_size]``, faces first then non-faces
    (the order inside a batch does not matter to a training step).
  """
  if batch_size <= 0 or batch_size % 2:
    raise ValueError(f"face/non-face batches need an even positive batch size, got "
                     f"{batch_size}")
  if num_batches <= 0:
    raise ValueError(f"num_batches must be positive, got {num_batches}")
  faces = np.asarray(face_indices, dtype=np.int64)
  nonfaces = np.asarray(nonface_indices, dtype=np.int64)
  half = batch_size // 2
  for name, pool in (("face", faces), ("non-face", nonfaces)):
    if pool.size < half:
      raise ValueError(f"need at least {half} {name} examples for batches of {batch_size}, "
                       f"got {pool.size}")
  p = None if face_probabilities is None else _check_probabilities(face_probabilities,
                                                                   faces.size)
  if p is not None and np.count_nonzero(p) < half:
    raise ValueError(f"fewer than {half} faces have a non-zero probability")
  rng = _rng(seed, epoch, "face_nonface")
  plan = np.empty((num_batches, batch_size), dtype=np.int64)
  for b in range(num_batches):
    plan[b, :half] = faces[rng.choice(faces.size, size=half, replace=False, p=p)]
    plan[b, half:] = nonfaces[rng.choice(nonfaces.size, size=half, replace=False)]
  return plan.reshape(-1)
