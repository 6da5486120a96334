"""Demographic groups: readable, honest group names from per-example attributes.

A group spec is a comma-separated list of attribute names, e.g. ``"skin,Male"`` or
``"Male,Pale_Skin,Young"``; each example's group is the ``_``-joined value names in
spec order (``"darker_female"``, ``"male_pale_young"``). Value names say what the
attribute is, never more:

* ``skin``: ``lighter`` / ``darker`` from a *labelled* skin type only: Fitzpatrick
  ``skin_type`` (1-3 lighter, 4-6 darker; the synthetic set) or PPB's ``skin`` label.
  CelebA has no skin-type label: its ``Pale_Skin`` is a different attribute (``pale`` /
  ``not_pale``), and asking for ``skin`` there is an error that says so.
* ``ita_band`` / ``ita_tone``: skin tone *estimated* from the pixels (``skin_ita``, the
  Individual Typology Angle stored at preparation, ``imaging.ita_degrees``): the six
  standard bands (``very_light`` > 55 > ``light`` > 41 > ``intermediate`` > 28 > ``tan``
  > 10 > ``brown`` > -30 > ``dark``), or the two-way cut ``ita_lighter`` (ITA > 28) /
  ``ita_darker``.
* ``Male``: ``male`` / ``female``; ``Young``: ``young`` / ``old``;
  ``Pale_Skin``: ``pale`` / ``not_pale``;
* any other 0/1 attribute ``X``: ``x`` / ``not_x``; an attribute with more values uses
  the dataset's own class names when the prepared data stores them (``value_names``:
  UTKFace and FairFace ``race``, FairFace ``age_bin``), else ``x_<value>`` for every
  value; text attributes (e.g. an image folder's ``category``) use their text.

An example whose attribute is unknown (-1, NaN, or an empty string) is in group
``"unknown"`` (e.g. non-face images of the synthetic set). :func:`describe` gives the
sentence a report prints for each attribute of a spec.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

import numpy as np

UNKNOWN = "unknown"
# Labelled skin-type attributes the derived `skin` reads, best first.
_SKIN_SOURCES = ("skin_type", "skin")
_ITA_SOURCE = "skin_ita"
# (lower bound in degrees, name), lightest first: Chardon et al. 1991's bands.
ITA_BANDS = ((55.0, "very_light"), (41.0, "light"), (28.0, "intermediate"), (10.0, "tan"),
             (-30.0, "brown"), (-np.inf, "dark"))
ITA_TONE_CUT = 28.0  # ITA above: "ita_lighter" (very light, light, intermediate).
_DERIVED = {"skin": _SKIN_SOURCES, "ita_band": (_ITA_SOURCE,), "ita_tone": (_ITA_SOURCE,)}
_BINARY_NAMES = {"Male": ("female", "male"), "Young": ("old", "young"),
                 "Pale_Skin": ("not_pale", "pale"), "skin": ("lighter", "darker"),
                 "ita_tone": ("ita_darker", "ita_lighter")}
_DESCRIPTIONS = {
    "skin": "labelled skin type: Fitzpatrick types 1-3 = lighter, 4-6 = darker "
            "(skin_type), or PPB's lighter/darker label (skin)",
    "Pale_Skin": "CelebA's Pale_Skin annotation (pale / not_pale): an annotator's "
                 "impression, not a skin-type label",
    "ita_band": "skin tone estimated from the pixels: Individual Typology Angle bands "
                "(very_light > 55 > light > 41 > intermediate > 28 > tan > 10 > brown > "
                "-30 > dark degrees)",
    "ita_tone": "skin tone estimated from the pixels: Individual Typology Angle above "
                "28 degrees (ita_lighter) or not (ita_darker)",
    "Male": "annotated sex (male / female)",
    "Young": "annotated age: young / old",
}


def available(attributes: Iterable[str]) -> list[str]:
  """Attribute names a spec may use: the dataset's own and the derived ones it allows."""
  names = list(attributes)
  for derived, sources in _DERIVED.items():
    if derived not in names and any(s in names for s in sources):
      names.append(derived)
  return names


def _unknown_name_error(name: str, spec: str | Sequence[str], names: list[str]) -> ValueError:
  hint = ""
  if name.lower() == "skin":
    hint = (" This dataset has no labelled skin type (skin_type or skin)."
            + (" Pale_Skin is CelebA's pale / not_pale annotation, a different attribute."
               if "Pale_Skin" in names else "")
            + (" ita_band / ita_tone are skin tone estimated from the pixels."
               if "ita_band" in names else ""))
  return ValueError(f"Unknown group attribute {name!r} in spec {spec!r}.{hint} Available: "
                    f"{', '.join(sorted(names))}")


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
    allowed = available(attributes)
    by_lower = {a.lower(): a for a in allowed}
    resolved = []
    for name in names:
      if name in allowed:
        resolved.append(name)
      elif name.lower() in by_lower:
        resolved.append(by_lower[name.lower()])
      else:
        raise _unknown_name_error(name, spec, allowed)
    names = resolved
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"Group spec {spec!r} repeats {', '.join(repeated)}; name each "
                     "attribute once")
  return names


def _skin_values(attributes: Mapping[str, np.ndarray]) -> np.ndarray:
  """darker 0/1 (-1 unknown) from the best labelled skin attribute."""
  if "skin_type" in attributes:
    t = np.asarray(attributes["skin_type"]).astype(np.int64)
    return np.where((t >= 1) & (t <= 6), (t >= 4).astype(np.int64), -1)
  s = np.asarray(attributes["skin"]).astype(np.int64)
  return np.where((s == 0) | (s == 1), s, -1)


def ita_band(ita_degrees: np.ndarray) -> np.ndarray:
  """Band name of each ITA value (object array; ``""`` where unknown)."""
  ita = np.asarray(ita_degrees, np.float64)
  out = np.full(ita.shape, "", dtype=object)
  remaining = np.isfinite(ita)
  for lower, name in ITA_BANDS:  # Lightest first: each value takes the first band above.
    hit = remaining & (ita > lower)
    out[hit] = name
    remaining &= ~hit
  return out


def _slug(text: str) -> str:
  return re.sub(r"[^a-z0-9_.+-]+", "_", str(text).strip().lower()).strip("_")


def _value_names(name: str, values: np.ndarray, names_of_values: Sequence[str] | None
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Readable value names (object array) and a known-mask for one attribute."""
  values = np.asarray(values)
  if values.dtype.kind in "USO":
    text = np.array([_slug(v) for v in values], dtype=object)
    known = np.array([t not in ("", "-1", "none", "nan") for t in text], bool)
    return text, known
  if values.dtype.kind == "f":
    raise ValueError(f"Attribute {name!r} holds real numbers; group by a derived "
                     f"attribute instead (e.g. ita_band or ita_tone for skin_ita)")
  values = values.astype(np.int64)
  known = values != -1
  out = np.full(len(values), "", dtype=object)
  if names_of_values is not None:
    labels = [_slug(n) for n in names_of_values]
    for v in np.unique(values[known]):
      if not 0 <= v < len(labels):
        raise ValueError(f"Attribute {name!r} has value {v}, but the dataset names only "
                         f"{len(labels)} values ({list(names_of_values)})")
      # A name that starts with a digit (an age bin "0-2") reads better prefixed.
      label = labels[v] if not labels[v][:1].isdigit() else f"{name.lower()}_{labels[v]}"
      out[values == v] = label
    return out, known
  if np.isin(values[known], (0, 1)).all():
    neg, pos = _BINARY_NAMES.get(name, (f"not_{name.lower()}", name.lower()))
    out[values == 0] = neg
    out[values == 1] = pos
    return out, known
  # More than two values and no names for them: never "x" / "not_x" (that would call
  # value 0 "not race" and value 1 "race"); each value is named by its number.
  for v in np.unique(values[known]):
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


def _attribute_names(attributes: Mapping[str, np.ndarray], name: str,
                     value_names: Mapping[str, Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
  """Value names and known-mask of one (possibly derived) spec attribute."""
  if name == "skin":
    return _value_names("skin", _skin_values(attributes), None)
  if name == "ita_band":
    bands = ita_band(attributes[_ITA_SOURCE])
    return bands, bands != ""
  if name == "ita_tone":
    ita = np.asarray(attributes[_ITA_SOURCE], np.float64)
    tone = np.where(np.isfinite(ita), (ita > ITA_TONE_CUT).astype(np.int64), -1)
    return _value_names("ita_tone", tone, None)
  return _value_names(name, attributes[name], value_names.get(name))


def assign_groups(attributes: Mapping[str, np.ndarray], spec: str | Sequence[str], *,
                  value_names: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
  """Group name of every example, e.g. ``"darker_female"`` for spec ``"skin,Male"``.

  Args:
    attributes: attribute name -> array [N] (ints, -1 = unknown; floats such as
      ``skin_ita``, NaN = unknown; or text), as returned by ``synthetic.generate`` or
      ``sources.read_attributes``.
    spec: group spec (see ``parse_group_spec``).
    value_names: attribute -> the dataset's names of its values (index = value), e.g.
      ``sources.value_names(source)``.

  Returns:
    ``np.ndarray`` of str [N]; ``"unknown"`` where any spec attribute is unknown.
  """
  names = parse_group_spec(spec, attributes)
  n = num_examples(attributes)
  groups = np.full(n, "", dtype=object)
  known = np.ones(n, bool)
  for i, name in enumerate(names):
    values, ok = _attribute_names(attributes, name, dict(value_names or {}))
    known &= ok
    groups = values if i == 0 else groups + "_" + values
  groups = np.where(known, groups, UNKNOWN)
  return groups.astype(str)


def describe(spec: str | Sequence[str], attributes: Mapping[str, object] | Iterable[str] | None = None
             ) -> dict[str, str]:
  """What each attribute of a spec is, one sentence each (for reports)."""
  out = {}
  for name in parse_group_spec(spec, attributes):
    out[name] = _DESCRIPTIONS.get(name, f"the dataset's {name} attribute")
  return out
