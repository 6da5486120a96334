"""Tests of train/debias.py against a direct per-dimension loop (the MIT lab's code)."""

import numpy as np
import pytest

from facebias_jax.train import debias


def _latents(n=500, d=6, seed=0):
  rng = np.random.default_rng(seed)
  mu = rng.normal(size=(n, d))
  mu[:, 1] = np.round(mu[:, 1] * 2) / 2  # Many values exactly on bin edges.
  mu[:, 2] = 3.0                          # A constant dimension (degenerate range).
  mu[:, 3] = rng.exponential(size=n)      # Skewed.
  return mu.astype(np.float32)


@pytest.mark.parametrize("combine", ["max", "product"])
@pytest.mark.parametrize("bins,smoothing", [(10, 0.001), (5, 0.1), (20, 0.0)])
def test_matches_direct_loop(combine, bins, smoothing):
  mu = _latents()
  p = debias.sample_probabilities(mu, bins=bins, smoothing=smoothing, combine=combine)
  assert p.dtype == np.float64 and p.shape == (500,)
  np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12)
  reference = debias.sample_probabilities_loop(mu, bins=bins, smoothing=smoothing,
                                               combine=combine)
  np.testing.assert_allclose(p, reference, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("combine", ["max", "product"])
def test_rare_latent_values_get_higher_probability(combine):
  rng = np.random.default_rng(1)
  mu = rng.normal(scale=0.1, size=(1000, 4))
  mu[:10, 0] += 5.0  # A rare cluster in dimension 0.
  p = debias.sample_probabilities(mu, combine=combine)
  assert p[:10].min() > 10 * np.median(p[10:])


def test_large_smoothing_tends_to_uniform():
  mu = _latents()
  p = debias.sample_probabilities(mu, smoothing=1e6)
  np.testing.assert_allclose(p, np.full(500, 1 / 500), rtol=1e-4)


def test_latent_histograms_equal_numpy_histogram():
  mu = _latents()
  density, edges = debias.latent_histograms(mu, bins=7)
  assert density.shape == (6, 7) and edges.shape == (6, 8)
  for i in range(6):
    d_ref, e_ref = np.histogram(mu[:, i].astype(np.float64), bins=7, density=True)
    np.testing.assert_array_equal(edges[i], e_ref)
    np.testing.assert_allclose(density[i], d_ref, rtol=1e-12)


def test_bad_inputs_raise_clear_errors():
  mu = _latents()
  with pytest.raises(ValueError, match="combine"):
    debias.sample_probabilities(mu, combine="mean")
  with pytest.raises(ValueError, match="bins"):
    debias.sample_probabilities(mu, bins=0)
  with pytest.raises(ValueError, match="smoothing"):
    debias.sample_probabilities(mu, smoothing=-1.0)
  with pytest.raises(ValueError, match="latent_dim"):
    debias.sample_probabilities(mu[:, 0])
  bad = mu.copy()
  bad[3, 2] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    debias.sample_probabilities(bad)
