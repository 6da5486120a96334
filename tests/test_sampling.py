"""Tests of data/sampling.py: group counts, determinism, probabilities respected."""

import numpy as np
import pytest

from facebias_jax.data import sampling


def test_uniform_is_a_deterministic_permutation_per_epoch():
  a = sampling.uniform_indices(100, seed=3, epoch=0)
  assert sorted(a.tolist()) == list(range(100)) and a.dtype == np.int64
  np.testing.assert_array_equal(a, sampling.uniform_indices(100, seed=3, epoch=0))
  assert not np.array_equal(a, sampling.uniform_indices(100, seed=3, epoch=1))
  assert not np.array_equal(a, sampling.uniform_indices(100, seed=4, epoch=0))


def _groups():
  return np.array(["lighter_female"] * 50 + ["lighter_male"] * 30 + ["darker_female"] * 7
                  + ["darker_male"] * 3)


def test_balanced_oversample_counts_and_coverage():
  groups = _groups()
  plan = sampling.balanced_indices(groups, seed=0, epoch=0, mode="oversample")
  names, counts = np.unique(groups[plan], return_counts=True)
  assert counts.tolist() == [50, 50, 50, 50]
  # Every example of every group appears (small groups are repeated, none dropped).
  assert set(plan.tolist()) == set(range(90))
  np.testing.assert_array_equal(plan, sampling.balanced_indices(groups, seed=0, epoch=0))


def test_balanced_undersample_counts_and_epochs_differ():
  groups = _groups()
  plan = sampling.balanced_indices(groups, seed=0, epoch=0, mode="undersample")
  _, counts = np.unique(groups[plan], return_counts=True)
  assert counts.tolist() == [3, 3, 3, 3] and len(set(plan.tolist())) == 12
  other = sampling.balanced_indices(groups, seed=0, epoch=1, mode="undersample")
  assert set(plan.tolist()) != set(other.tolist())
  with pytest.raises(ValueError, match="oversample"):
    sampling.balanced_indices(groups, seed=0, epoch=0, mode="both")


def test_weighted_indices_follow_the_probabilities():
  p = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
  draws = sampling.weighted_indices(p, 200_000, seed=0, epoch=0)
  freq = np.bincount(draws, minlength=5) / draws.size
  np.testing.assert_allclose(freq, p, atol=0.005)
  assert freq[4] == 0
  np.testing.assert_array_equal(draws[:50], sampling.weighted_indices(p, 200_000, seed=0,
                                                                      epoch=0)[:50])
  with pytest.raises(ValueError, match="non-negative"):
    sampling.weighted_indices([0.5, -0.1], 3, seed=0, epoch=0)


def test_face_nonface_batches_are_half_and_half():
  faces = np.arange(0, 40)
  nonfaces = np.arange(100, 130)
  p = np.zeros(40)
  p[:10] = 1.0  # Only the first ten faces may be drawn.
  plan = sampling.face_nonface_indices(faces, nonfaces, batch_size=8, num_batches=50, seed=0,
                                       epoch=2, face_probabilities=p)
  batches = plan.reshape(50, 8)
  assert np.all(batches[:, :4] < 10) and np.all(batches[:, 4:] >= 100)
  assert all(len(set(b[:4])) == 4 and len(set(b[4:])) == 4 for b in batches)
  np.testing.assert_array_equal(plan, sampling.face_nonface_indices(
      faces, nonfaces, batch_size=8, num_batches=50, seed=0, epoch=2, face_probabilities=p))
  uniform = sampling.face_nonface_indices(faces, nonfaces, batch_size=8, num_batches=200,
                                          seed=0, epoch=0)
  assert len(set(uniform.reshape(200, 8)[:, :4].ravel().tolist())) == 40
  with pytest.raises(ValueError, match="even"):
    sampling.face_nonface_indices(faces, nonfaces, batch_size=7, num_batches=1, seed=0, epoch=0)
