"""Annotation files of the real datasets: text tables and CSVs with line numbers kept.

Any of ``\\n``, ``\\r\\n`` or ``\\r``-only line endings, UTF-8 with or without BOM. A
malformed value is an :class:`~facebias_jax.data.builders.errors.AnnotationError` that
names the file and the 1-based line number. :func:`lookup` maps a label value through a
table of accepted spellings (case, ``_`` and ``-`` ignored).
"""

from __future__ import annotations

import csv
import io
import os
from typing import Mapping, Sequence

from etils import epath

from facebias_jax.data.builders.errors import AnnotationError


def _read_text(path: os.PathLike | str) -> str:
  # utf-8-sig drops the BOM some spreadsheet exports put in front of the header.
  return epath.Path(path).read_bytes().decode("utf-8-sig")


def read_text_lines(path: os.PathLike | str) -> list[tuple[int, str]]:
  """Non-blank lines of a text file with their 1-based line numbers.

  ``str.splitlines`` splits on ``\\n``, ``\\r\\n`` and ``\\r`` alike, so files saved on
  any platform parse the same.
  """
  return [(i, line) for i, line in enumerate(_read_text(path).splitlines(), start=1)
          if line.strip()]


def read_csv(path: os.PathLike | str) -> tuple[list[str], list[tuple[int, list[str]]]]:
  """Reads a CSV file: header and non-empty rows with their 1-based line numbers.

  Handles ``\\r``-only line endings (old Mac exports, e.g. some copies of PPB's
  metadata) as well as ``\\n`` / ``\\r\\n``, quoted fields and a UTF-8 BOM.

  Returns:
    ``(header, rows)``: the stripped header cells, then ``(line_no, cells)`` pairs.

  Raises:
    AnnotationError: the file is empty.
  """
  # newline="" keeps the terminators for csv, which splits on \r and \n itself.
  reader = csv.reader(io.StringIO(_read_text(path), newline=""))
  header: list[str] | None = None
  rows = []
  for cells in reader:
    if not any(c.strip() for c in cells):
      continue
    if header is None:
      header = [c.strip() for c in cells]
    else:
      rows.append((reader.line_num, [c.strip() for c in cells]))
  if header is None:
    raise AnnotationError(path, 1, "the CSV file is empty (no header line).")
  return header, rows


def normalize_name(name: str) -> str:
  """Lower case, ``_``/``-`` as spaces: how column names and label values are matched."""
  return name.strip().lower().replace("_", " ").replace("-", " ")


def resolve_columns(path: os.PathLike | str, header: Sequence[str],
                    columns: Mapping[str, Sequence[str]], *,
                    optional: Sequence[str] = ()) -> dict[str, int]:
  """Maps canonical column names to their index in ``header``.

  Matching goes through :func:`normalize_name`, so ``"skin color"``, ``"Skin_Color"``
  and ``"skin-color"`` are one column.

  Args:
    path: the CSV file (for the error message).
    header: header cells.
    columns: canonical name -> accepted spellings.
    optional: canonical names that may be absent (left out of the result).

  Returns:
    ``{canonical name: column index}``.

  Raises:
    AnnotationError: a required column is missing (line 1; lists the header).
  """
  index = {normalize_name(h): i for i, h in enumerate(header)}
  found = {}
  for canonical, spellings in columns.items():
    hit = next((index[normalize_name(s)] for s in spellings
                if normalize_name(s) in index), None)
    if hit is not None:
      found[canonical] = hit
    elif canonical not in optional:
      raise AnnotationError(
          path, 1, f"no column for {canonical!r} (accepted names: {list(spellings)}); "
          f"the header is {list(header)}.")
  return found


def parse_int(path: os.PathLike | str, line_no: int, value: str, what: str, *,
              valid: Sequence[int] | None = None) -> int:
  """``int(value)``, or an :class:`AnnotationError` naming file, line and field."""
  try:
    number = int(value)
  except ValueError:
    raise AnnotationError(path, line_no, f"{what} must be an integer, got {value!r}.") from None
  if valid is not None and number not in valid:
    raise AnnotationError(path, line_no, f"{what} must be one of {list(valid)}, got {number}.")
  return number


def lookup(path: os.PathLike | str, line_no: int, table: Mapping[str, int], value: str,
           what: str, *, expected: Sequence[str] | None = None) -> int:
  """``table[value]`` (keys compared by :func:`normalize_name`), or an AnnotationError.

  Args:
    path: the annotation file (for the error message).
    line_no: 1-based line of ``value``.
    table: normalised spelling -> code, e.g. ``{"male": 1, "female": 0}``.
    value: the cell as written in the file.
    what: the field, e.g. ``"gender"``.
    expected: the canonical values listed in the error (default: the table's keys).

  Returns:
    The code of ``value``.
  """
  key = normalize_name(value)
  if key not in table:
    valid = list(expected) if expected is not None else sorted(set(table))
    raise AnnotationError(path, line_no, f"unknown {what} {value!r}; expected one of {valid}.")
  return table[key]
