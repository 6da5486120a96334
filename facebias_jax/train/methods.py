"""Training methods: what each ``config.train.method`` changes in the one training loop.

All methods share the loop, the pipeline, validation and model selection; they differ
in three places only, each a pure function here or in ``train.plan``:

* **the epoch's plan** (which examples, how often; ``plan.epoch_plan``):
  ``erm`` a permutation of the training split; ``subsample`` (SUBG, Idrissi et al.
  2022) one fixed random subset with every group cut to the smallest, reshuffled every
  epoch; ``oversample`` every group repeated up to the largest, redrawn every epoch;
  ``reweight`` with ``reweight_by="sampling"`` and ``group_dro`` with
  ``group_dro.balanced_batches`` draw N examples with replacement, each with
  probability proportional to ``1 / n_g`` (BalancingGroups' RWG sampler); ``jtt`` stage
  2 repeats stage 1's error set ``jtt.upweight`` times; ``dbvae`` draws faces by the
  DB-VAE's probabilities.
* **per-example loss weights** (``example_weights``): ``reweight`` with
  ``reweight_by="loss"`` weighs example i by ``N / (G n_g(i))``, so every group carries
  the same total weight; the batch loss is the weighted mean ``sum w l / sum w`` (the
  convention of a weighted cross-entropy).
* **the objective**: ``group_dro``'s online group weights (``losses.group_dro_update``).

JTT (``train.jtt``) and DFR (``train.dfr``) add stages before or after the loop.

Groups: ``config.train.groups`` (default ``config.eval.groups``), e.g.
``"Blond_Hair,Male"``; the methods in ``GROUP_METHODS`` need those attributes in the
training split (DFR: in the validation split) and fail with the attributes the dataset
has otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from facebias_jax.data import groups as groups_lib

METHODS = ("erm", "subsample", "oversample", "reweight", "group_dro", "jtt", "dfr", "dbvae")
# Methods that read group labels of the training split.
GROUP_METHODS = ("subsample", "oversample", "reweight", "group_dro")
# Methods that replace the plain mean of the classification loss (classifiers only).
CLASSIFIER_ONLY = ("group_dro", "jtt", "dfr")
REWEIGHT_BY = ("loss", "sampling")
# The config sections a method reads besides model/data/train/eval.
SECTIONS = {"group_dro": ("group_dro",), "jtt": ("jtt",), "dfr": ("dfr",),
            "dbvae": ("debias",)}


def group_spec(config: Any) -> str:
  """The groups the method balances or weights: ``train.groups``, else ``eval.groups``."""
  return str(config.train.get("groups") or config.eval.groups)


@dataclasses.dataclass(frozen=True)
class Groups:
  """The training groups of a split, as integer codes.

  Attributes:
    names: group name of each code, sorted (e.g. ``("blond_female", ...)``).
    codes: int32 [N], the group of every example.
    counts: int64 [G], examples per group.
  """

  names: tuple[str, ...]
  codes: np.ndarray
  counts: np.ndarray

  def by_name(self, values: Sequence[Any]) -> dict[str, Any]:
    """``{group name: value}`` for one value per group."""
    return {name: value for name, value in zip(self.names, values)}


def assign(attributes: Mapping[str, np.ndarray], spec: str, *,
           value_names: Mapping[str, Sequence[str]] | None = None,
           method: str = "", split: str = "train") -> Groups:
  """Integer group codes of a split from ``spec`` (see ``data.groups``).

  Raises:
    ValueError: the split lacks an attribute ``spec`` names; the message says which
      method needed it and which attributes there are.
  """
  try:
    labels = groups_lib.assign_groups(attributes, spec, value_names=value_names)
  except ValueError as err:
    who = f"config.train.method={method!r} needs" if method else "need"
    raise ValueError(f"{who} group labels of the {split} split from config.train.groups="
                     f"{spec!r} (default: config.eval.groups): {err}") from None
  names, codes, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
  return Groups(tuple(str(n) for n in names), codes.astype(np.int32), counts.astype(np.int64))


def single_group(n: int) -> Groups:
  """Every example in one group (methods that use no group labels)."""
  return Groups(("all",), np.zeros(n, np.int32), np.asarray([n], np.int64))


def example_weights(groups: Groups) -> np.ndarray:
  """``N / (G n_g)`` for every example: each group's weights sum to ``N / G``.

  Returns:
    float32 [N], mean 1 over the split.
  """
  n, g = groups.codes.size, groups.counts.size
  per_group = n / (g * groups.counts.astype(np.float64))
  return per_group[groups.codes].astype(np.float32)


def inverse_frequency(groups: Groups) -> np.ndarray:
  """Sampling probabilities proportional to ``1 / n_g`` (float64 [N], summing to 1):
  every group is drawn equally often in expectation."""
  p = 1.0 / groups.counts[groups.codes].astype(np.float64)
  return p / p.sum()


def dro_adjustment(groups: Groups, c: float) -> tuple[float, ...]:
  """Group DRO's generalisation adjustment ``C / sqrt(n_g)`` per group (Sagawa et al.
  2020, Sec. 5): small groups, whose training loss underestimates their test loss,
  get a head start in the weight update."""
  return tuple(float(c) / np.sqrt(groups.counts.astype(np.float64)))


def jtt_repeats(num_examples: int, error_set: np.ndarray, upweight: int) -> np.ndarray:
  """How often JTT's stage 2 sees each example in an epoch: ``upweight`` times for the
  error set (stage 1's mistakes), once otherwise (Liu et al. 2021, Alg. 1).

  Returns:
    int64 [num_examples].
  """
  repeats = np.ones(num_examples, np.int64)
  repeats[np.asarray(error_set, np.int64)] = int(upweight)
  return repeats
