"""Demographic groups: readable group names from per-example attributes.

A group spec is a comma-separated list of attribute names, e.g. ``"skin,Male"`` or
``"Male,Pale_Skin,Young"``; each example's group is the ``_``-joined value names in
spec order (``"darker_female"``, ``"male_pale_young"``). Value names:

* ``skin``: ``lighter`` / ``darker``, derived from ``skin_type`` (Fitzpatrick 1-3
  lighter, 4-6 darker), else a ``skin`` attribute (0 lighter, 1 darker), else
  ``Pale_Skin`` (1 lighter, 0 darker: a coarse proxy, the only one CelebA has);
* ``Male``: ``male`` / ``female``; ``Young``: ``young`` / ``old``;
  ``Pale_Skin``: ``pale`` / ``not_pale``;
* any other 0/1 attribute ``X``: ``x`` / ``not_x``; other values ``x_<value>``.

An example whose attribute is unknown (-1, or an empty string) is in group
``"unknown"`` (e.g. non-face images of the synthetic set).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

UNKNOWN = "unknown"
_SKIN_SOURCES = ("skin_type", "skin", "Pale_Skin")
_BINARY_NAMES = {"Male": ("female", "male"), "Young": ("old", "young"),
                 "Pale_Skin": ("not_pale", "pale"), "skin": ("lighter", "darker")}


def _available(attributes: Iterable[str]) -> list[str]:
  names = list(attributes)
  if any(source in names for source in _SKIN_SOURCES) and "skin" not in names:
    names.append("skin")
  return names


def parse_group_spec(spec: str | Sequence[str],
                     attributes: Mapping[str, object] | Iterable[str] | None = None) -> list[str]:
  """Validates a group spec and returns its attribute names in order.

  Args:
    spec: ``"skin,Male"`` or ``["skin", "Male"]``.
    attributes: optional attribute names (or a dict keyed by them) to check the
      spec against; names then match case-insensitively (``"male"`` -> ``"Male"``).

  Returns:
    The list of attribute names.

  Raises:
    ValueError: empty spec, empty or repeated names, or (with ``attributes``) a
      name that is not available; the message lists the available names.
  """
  if isinstance(spec, str):
    names = [part.strip() for part in spec.split(",")]
  elif isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec):
    names = [s.strip() for s in spec]
  else:
    raise ValueError(
        f"Group spec must be a string like 'skin,Male' or a list of names, got {spec!r}")
  if not names or any(not n for n in names):
    raise ValueError(f"Group spec {spec!r} has an empty attribute name; write e.g. 'skin,Male'")
  if attributes is not None:
    available = _available(attributes)
    by_lower = {a.lower(): a for a in available}
    resolved = []
    for name in names:
      if name in available:
        resolved.append(name)
      elif name.lower() in by_lower:
        resolved.append(by_lower[name.lower()])
      else:
        raise ValueError(f"Unknown group attribute {name!r} in spec {spec!r}; available: "
                         f"{', '.join(sorted(available))}")
    names = resolved
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"Group spec {spec!r} repeats {', '.join(repeated)}; name each "
                     "attribute once")
  return names


def _skin_values(attributes: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """``(darker 0/1, known bool)`` from the best available skin attribute."""
  if "skin_type" in attributes:
    t = np.asarray(attributes["skin_type"]).astype(np.int64)
    return (t >= 4).astype(np.int64), (t >= 1) & (t <= 6)
  if "skin" in attributes:
    s = np.asarray(attributes["skin"]).astype(np.int64)
    return s, (s == 0) | (s == 1)
  pale = np.asarray(attributes["Pale_Skin"]).astype(np.int64)
  return 1 - pale, (pale == 0) | (pale == 1)


def _value_names(name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Readable value names (object array) and a known-mask for one attribute."""
  values = np.asarray(values)
  if values.dtype.kind in "USO":
    text = np.array([str(v).strip().lower().replace(" ", "_") for v in values], dtype=object)
    known = np.array([t not in ("", "-1", "none", "nan") for t in text], bool)
    return text, known
  values = values.astype(np.int64)
  known = values != -1
  neg, pos = _BINARY_NAMES.get(name, (f"not_{name.lower()}", name.lower()))
  out = np.full(len(values), "", dtype=object)
  out[values == 0] = neg
  out[values == 1] = pos
  other = known & (values != 0) & (values != 1)
  for v in np.unique(values[other]):
    out[values == v] = f"{name.lower()}_{v}"
  return out, known


def num_examples(attributes: Mapping[str, np.ndarray]) -> int:
  """The common length of the attribute arrays (0 for no attributes).

  Raises:
    ValueError: the arrays differ in length (the message gives each one's length).
  """
  length_of = {name: len(np.asarray(values)) for name, values in attributes.items()}
  lengths = set(length_of.values())
  if len(lengths) > 1:
    raise ValueError(f"Attributes have different lengths {length_of}; every attribute "
                     "needs one value per example")
  return lengths.pop() if lengths else 0


def assign_groups(attributes: Mapping[str, np.ndarray], spec: str | Sequence[str]) -> np.ndarray:
  """Group name of every example, e.g. ``"darker_female"`` for spec ``"skin,Male"``.

  Args:
    attributes: attribute name -> array [N] (ints; -1 = unknown), as returned by
      ``synthetic.generate`` or ``pipeline.read_attributes``.
    spec: group spec (see ``parse_group_spec``).

  Returns:
    ``np.ndarray`` of str [N]; ``"unknown"`` where any spec attribute is unknown.
  """
  names = parse_group_spec(spec, attributes)
  n = num_examples(attributes)
  groups = np.full(n, "", dtype=object)
  known = np.ones(n, bool)
  for i, name in enumerate(names):
    if name == "skin":
      darker, skin_known = _skin_values(attributes)
      values, ok = _value_names("skin", np.where(skin_known, darker, -1))
    else:
      values, ok = _value_names(name, attributes[name])
    known &= ok
    groups = values if i == 0 else groups + "_" + values
  groups = np.where(known, groups, UNKNOWN)
  return groups.astype(str)
