"""Errors of the dataset builders: each names the file (and line) and says how to fix it.

* :func:`missing_path_error` / :func:`require_path`: a file or folder the user must put
  under ``manual_dir`` is not there; the message names the path and the instructions.
* :class:`AnnotationError`: a malformed annotation line (file and 1-based line number).
* :class:`CorruptImageError`: an image that cannot be decoded completely (``strict``).
"""

from __future__ import annotations

import os
from typing import Sequence

from etils import epath

# Raised by ``imaging.decode_image``; builders raise it under ``strict``.
from facebias_jax.imaging import CorruptImageError  # noqa: F401

DOCS = "docs/datasets.md"


class AnnotationError(ValueError):
  """A malformed line in an annotation file (names the file and the line number)."""

  def __init__(self, path: os.PathLike | str, line_no: int, message: str):
    self.path = os.fspath(path)
    self.line_no = int(line_no)
    super().__init__(f"{self.path}, line {self.line_no}: {message}")



def missing_path_error(path: os.PathLike | str, *, dataset: str,
                       what: str) -> FileNotFoundError:
  """The error for a file or folder that the user must put under ``manual_dir``.

  Args:
    path: the expected path.
    dataset: builder name, e.g. ``"facebias_celeba"``.
    what: what should be there, e.g. ``"the attribute file list_attr_celeba.txt"``.

  Returns:
    A ``FileNotFoundError`` (to raise) naming the path and the instructions.
  """
  return FileNotFoundError(
      f"{dataset}: expected {what} at {os.fspath(path)}, but it does not exist. Put the "
      f"official files under the manual_dir you pass (--manual_dir=...) in the layout "
      f"given by {dataset}'s MANUAL_DOWNLOAD_INSTRUCTIONS (see {DOCS}).")


def require_path(path: os.PathLike | str, *, dataset: str, what: str,
                 is_dir: bool = False) -> epath.Path:
  """Returns ``path`` as an ``epath.Path``; raises :func:`missing_path_error` if absent."""
  path = epath.Path(path)
  if not (path.is_dir() if is_dir else path.is_file()):
    raise missing_path_error(path, dataset=dataset, what=what)
  return path


def first_existing(candidates: Sequence[os.PathLike | str]) -> epath.Path | None:
  """The first of ``candidates`` that exists (file or folder), else None."""
  for candidate in candidates:
    candidate = epath.Path(candidate)
    if candidate.exists():
      return candidate
  return None
