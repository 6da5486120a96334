"""DB-VAE debiasing: sampling probabilities from the density of the latent space.

Amini et al. (AIES 2019) estimate the distribution of the training faces in the
DB-VAE's latent space with one histogram per latent dimension and sample each
face with probability inversely proportional to its density, so faces with rare
features (under-represented skin tones, poses, accessories) are seen more often.

Two ways to combine the dimensions are provided:

* ``"max"`` -- the MIT 6.S191 lab: per dimension the smoothed density
  ``Q + smoothing`` is normalised to sum 1 over the bins, inverted, normalised
  over the examples, and the element-wise maximum over dimensions is taken.
* ``"product"`` -- the paper's ``W(x) ∝ Π_i 1 / (Q_i(z_i(x)) + smoothing)``,
  computed as a sum of logs (a product of 100 factors over/underflows float64).

Histograms use ``np.histogram(..., density=True)`` semantics per dimension (own
range ``[min, max]``, equal-width bins, the last bin closed), reproduced without a
Python loop over dimensions so 200,000 x 100 latents take well under a second.
"""

from __future__ import annotations

import numpy as np

COMBINE_MODES = ("max", "product")


def _as_latents(mu) -> np.ndarray:
  mu = np.asarray(mu)
  if mu.ndim != 2 or mu.shape[0] == 0 or mu.shape[1] == 0:
    raise ValueError(f"mu must be a non-empty [num_examples, latent_dim] array, got shape "
                     f"{mu.shape}")
  mu = np.ascontiguousarray(mu, dtype=np.float64)
  if not np.isfinite(mu.min(axis=0)).all() or not np.isfinite(mu.max(axis=0)).all():
    raise ValueError("mu contains NaN or inf: the encoder diverged; lower the learning "
                     "rate or check the inputs")
  return mu


def _histogram_bins(mu_nd: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-dimension bin edges [D, bins+1] and flat bin ids [N, D] of every value.

  Reproduces numpy's equal-width fast path of ``np.histogram`` (including its
  correction of indices at the bin edges) for all dimensions at once. The ids
  index the flattened ``[D, bins]`` table: ``d * bins + bin``, which is what
  ``np.bincount`` and the density look-ups need. Works on the ``[N, D]`` layout
  directly: transposing 200,000 x 100 values costs more than the whole rest.
  """
  d = mu_nd.shape[1]
  lo = mu_nd.min(axis=0)
  hi = mu_nd.max(axis=0)
  # np.histogram widens a degenerate range by 0.5 on each side.
  flat = lo == hi
  lo = np.where(flat, lo - 0.5, lo)
  hi = np.where(flat, hi + 0.5, hi)
  edges = np.linspace(lo, hi, bins + 1, axis=1)  # Same arithmetic as np.histogram.
  scaled = mu_nd - lo
  scaled /= hi - lo
  scaled *= bins
  index = scaled.astype(np.intp)
  del scaled
  np.minimum(index, bins - 1, out=index)  # The maximum lands in the last (closed) bin.
  # Floating point can put a value one bin off near an edge: compare against the
  # actual edges, as np.histogram does. Edge k of dim j sits at j*(bins+1)+k.
  flat_edges = edges.ravel()
  edge_offsets = np.arange(d, dtype=np.intp) * (bins + 1)
  index += edge_offsets
  index -= mu_nd < flat_edges.take(index)
  index += 1
  above = mu_nd >= flat_edges.take(index)
  index -= 1
  index -= edge_offsets
  above &= index != bins - 1
  index += above
  index += np.arange(d, dtype=np.intp) * bins
  return edges, index


def _counts(ids_nd: np.ndarray, bins: int) -> np.ndarray:
  """Histogram counts [D, bins] from flat bin ids [N, D]."""
  d = ids_nd.shape[1]
  return np.bincount(ids_nd.ravel(), minlength=d * bins).reshape(d, bins)


def _density(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """``np.histogram(..., density=True)`` values from counts [D, bins] and edges."""
  return counts / np.diff(edges, axis=1) / counts.sum(axis=1, keepdims=True)


def latent_histograms(mu, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
  """Per-dimension density histograms of latent means (for plots and analysis).

  Args:
    mu: [N, D] latent means of the training faces.
    bins: number of equal-width bins per dimension.

  Returns:
    ``(density [D, bins], edges [D, bins+1])``, equal to
    ``np.histogram(mu[:, d], bins=bins, density=True)`` for every dimension ``d``.
  """
  _check_bins(bins)
  edges, ids = _histogram_bins(_as_latents(mu), bins)
  return _density(_counts(ids, bins), edges), edges


def _check_bins(bins: int) -> None:
  if int(bins) != bins or bins < 1:
    raise ValueError(f"bins must be a positive integer, got {bins!r}")


def sample_probabilities(mu, *, bins: int = 10, smoothing: float = 0.001,
                         combine: str = "max") -> np.ndarray:
  """Sampling probability of each training face, inverse to its latent density.

  Args:
    mu: [N, D] latent means of the training faces (encoder output, eval mode).
    bins: histogram bins per latent dimension.
    smoothing: added to the density (the paper's alpha); larger values flatten
      the probabilities towards uniform.
    combine: ``"max"`` (MIT lab) or ``"product"`` (paper); see the module docstring.

  Returns:
    float64 [N], non-negative, summing to 1.
  """
  _check_bins(bins)
  if combine not in COMBINE_MODES:
    raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
  if not smoothing >= 0:
    raise ValueError(f"smoothing must be >= 0, got {smoothing!r}")
  edges, ids = _histogram_bins(_as_latents(mu), bins)
  counts = _counts(ids, bins)
  smoothed = _density(counts, edges) + smoothing  # [D, bins]
  if combine == "max":
    smoothed /= smoothed.sum(axis=1, keepdims=True)
    # Empty bins (density 0 when smoothing is 0) are never looked up: give them 0.
    inverse = np.divide(1.0, smoothed, out=np.zeros_like(smoothed), where=counts > 0)
    # The lab normalises each dimension's inverse densities over the examples;
    # that sum is count-weighted over the bins, so it needs no pass over N.
    inverse /= (counts * inverse).sum(axis=1, keepdims=True)
    p = inverse.ravel().take(ids).max(axis=1)
  else:
    # Bins are only looked up where data falls, so every looked-up density is > 0
    # even with smoothing 0: the logs are finite.
    log_density = np.log(smoothed, out=np.zeros_like(smoothed), where=counts > 0)
    log_w = -log_density.ravel().take(ids).sum(axis=1)
    p = np.exp(log_w - log_w.max())
  return p / p.sum()


def sample_probabilities_loop(mu, *, bins: int = 10, smoothing: float = 0.001,
                              combine: str = "max") -> np.ndarray:
  """The same probabilities, one latent dimension at a time, as the MIT lab writes them.

  ``np.histogram`` + ``np.digitize`` per dimension: slow but obviously right, so it
  is the reference that ``sample_probabilities`` is tested and benchmarked against.
  Arguments and result as ``sample_probabilities``.
  """
  mu = _as_latents(mu)
  _check_bins(bins)
  if combine not in COMBINE_MODES:
    raise ValueError(f"combine={combine!r} is not one of {COMBINE_MODES}")
  n, d = mu.shape
  p_max, log_w = np.zeros(n), np.zeros(n)
  for i in range(d):
    density, edges = np.histogram(mu[:, i], density=True, bins=bins)
    edges[0], edges[-1] = -np.inf, np.inf
    idx = np.digitize(mu[:, i], edges) - 1
    smoothed = density + smoothing
    with np.errstate(divide="ignore"):  # Empty bins (log 0) are never looked up.
      log_w -= np.log(smoothed)[idx]
    smoothed = smoothed / smoothed.sum()
    p = 1.0 / smoothed[idx]
    p_max = np.maximum(p_max, p / p.sum())
  if combine == "max":
    return p_max / p_max.sum()
  w = np.exp(log_w - log_w.max())
  return w / w.sum()
