"""The DB-VAE's diagnostics after training: how its sampling probabilities fall on groups.

``dbvae_diagnostics`` takes what training computed over the training faces (the
sampling probabilities and the latent histograms) and reports, per demographic group,
its share of the faces against its share of the sampling mass, how uneven the
probabilities are, and two pictures: the latent histograms the DB-VAE resamples
against and the faces it up-weights most and least.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np
from absl import logging

from facebias_jax.data import groups as groups_lib
from facebias_jax.eval import plots

EXTREMES_SHOWN = 8


def dbvae_diagnostics(probabilities: np.ndarray, histograms: Any,
                      face_attributes: Mapping[str, np.ndarray], *, group_spec: str,
                      face_image: Callable[[int], np.ndarray], out_dir: str | None,
                      value_names: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Probability mass per group, with ``latent_histograms.png`` / ``extreme_samples.png``.

  Args:
    probabilities: ``[F]`` sampling probability of each training face (sums to 1).
    histograms: ``(densities [D, bins], edges [D, bins+1])`` of the latent means.
    face_attributes: attribute arrays ``[F]`` of the same faces.
    group_spec: groups to report, e.g. ``"skin,Male"``.
    face_image: ``i -> uint8 image`` of face ``i`` (for the extreme samples).
    out_dir: where the two pictures go (None: no pictures, e.g. not process 0).
    value_names: the dataset's names of attribute values (``sources.value_names``).

  Returns:
    ``{"probability_ratio_max_min", "effective_sample_fraction", "groups": {group:
    {"fraction_of_faces", "sampling_share"}}}`` (``groups`` left out when the faces
    have no such attributes).
  """
  p = np.asarray(probabilities, np.float64)
  result: dict[str, Any] = {"probability_ratio_max_min": float(p.max() / p.min()),
                            "effective_sample_fraction": float(1.0 / np.sum(p ** 2) / p.size)}
  try:
    group_ids = groups_lib.assign_groups(face_attributes, group_spec, value_names=value_names)
    result["groups"] = {str(g): {"fraction_of_faces": float(np.mean(group_ids == g)),
                                 "sampling_share": float(p[group_ids == g].sum())}
                        for g in np.unique(group_ids)}
  except (ValueError, KeyError) as err:
    logging.warning("No per-group sampling shares: %s", err)
  if out_dir is not None:
    plots.plot_latent_histograms(histograms, os.path.join(out_dir, "latent_histograms.png"))
    k = min(EXTREMES_SHOWN, p.size)
    order = np.argsort(p, kind="stable")
    low, high = order[:k], order[::-1][:k]
    images = lambda idx: np.stack([face_image(int(i)) for i in idx])
    plots.plot_extreme_samples(images(low), images(high),
                               os.path.join(out_dir, "extreme_samples.png"),
                               probs_low=p[low].tolist(), probs_high=p[high].tolist())
  return result
