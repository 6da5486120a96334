"""Number formatting shared by the report tables (``eval.report``) and plots (``eval.plots``).

Metric values come from ``group_metrics`` dicts or their JSON, where a missing value
(an undefined rate) is ``None`` or NaN; every helper shows it as ``n/a`` (or an empty
CSV cell).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence


def as_float(x: Any) -> float:
  """A value from a metrics dict (float, None for null) as float (NaN for missing)."""
  return math.nan if x is None else float(x)


def fmt(x: Any, digits: int = 3) -> str:
  """``x`` with ``digits`` decimals, or ``n/a`` for a missing value."""
  x = as_float(x)
  return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def fmt_ci(value: Any, ci: Sequence[Any] | None, digits: int = 3) -> str:
  """``value [lo, hi]``, or the value alone when the interval is missing."""
  if ci is None or any(math.isnan(as_float(c)) for c in ci):
    return fmt(value, digits)
  return f"{fmt(value, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  """A Markdown table."""
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def describe(obj: Any) -> str:
  """One line for a dataset/model description (a dict or a string)."""
  if isinstance(obj, Mapping):
    return ", ".join(f"{k}={v}" for k, v in obj.items() if v not in (None, "", {}))
  return str(obj)


def csv_value(x: Any) -> Any:
  """A CSV cell: empty for a missing value."""
  if isinstance(x, float) and math.isnan(x):
    return ""
  return "" if x is None else x
