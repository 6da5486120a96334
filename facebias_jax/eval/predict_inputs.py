"""The inputs of ``facebias_jax.eval.predict``: image folders, videos, dataset splits.

Each reader returns :class:`Inputs`: a stream of :class:`Item` (name, RGB pixels, label
and group when known), the number of items when it is known (for the progress bar),
and the files that could not be read, with the reason (skipped, never fatal). Labels
for a folder come from a CSV (:func:`read_labels`).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from facebias_jax import imaging
from facebias_jax.data import sources


@dataclasses.dataclass
class Item:
  """One input image: its name, RGB pixels and what is known about it."""
  name: str
  image: np.ndarray
  label: int | None = None
  group: str | None = None


@dataclasses.dataclass
class Inputs:
  """The items of an input, the files that could not be read (name, reason) and, for a
  folder with a labels CSV, the CSV's files that are not in the folder."""
  items: Iterable[Item]
  total: int | None
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  labels_without_image: list[str] = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------------------- inputs


def parse_label(value: str, class_names: Sequence[str], where: str) -> int:
  """A class index from a class name (any case) or an integer string."""
  text = value.strip()
  lowered = [n.lower() for n in class_names]
  if text.lower() in lowered:
    return lowered.index(text.lower())
  if text.lstrip("-").isdigit() and 0 <= int(text) < len(class_names):
    return int(text)
  raise ValueError(f"{where}: label {value!r} is neither a class name ({', '.join(class_names)})"
                   f" nor an index 0-{len(class_names) - 1}")


def read_labels(path: str, class_names: Sequence[str]) -> dict[str, tuple[int | None, str | None]]:
  """``file -> (label, group)`` from a CSV with a ``file`` column and optional ``label``
  and ``group`` columns.

  Raises:
    FileNotFoundError: no such file.
    ValueError: no ``file`` column, or a label that is no class (names file and line).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config.labels={path}: no such file")
  # utf-8-sig: spreadsheets save UTF-8 CSVs with a byte-order mark.
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    fields = [c.strip().lower() for c in reader.fieldnames or []]
    if "file" not in fields:
      raise ValueError(f"{path}: needs a 'file' column (and optionally 'label' and 'group'); "
                       f"found columns {', '.join(reader.fieldnames or []) or 'none'}")
    out = {}
    for line, row in enumerate(reader, start=2):
      row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
      label = (parse_label(row["label"], class_names, f"{path}:{line}")
               if row.get("label") else None)
      out[os.path.normpath(row["file"])] = (label, row.get("group") or None)
  return out


def folder_inputs(folder: str, labels: Mapping[str, tuple[int | None, str | None]] | None = None
                  ) -> Inputs:
  """Every ``.jpg``/``.jpeg``/``.png`` under ``folder``; files that cannot be decoded
  completely (truncated too) are skipped and listed."""
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"--config.images={folder}: no such folder")
  names = [os.path.relpath(str(p), folder) for p in imaging.list_images(folder)]
  if not names:
    raise ValueError(f"--config.images={folder}: no .jpg/.jpeg/.png file in this folder or "
                     "below it")
  inputs = Inputs(items=[], total=len(names), labels_without_image=sorted(
      set(labels or {}) - {os.path.normpath(n) for n in names}))

  def items() -> Iterator[Item]:
    for name, image, why in imaging.folder_images(folder, names):
      if image is None:
        inputs.skipped.append((name, why))
        continue
      label, group = (labels or {}).get(os.path.normpath(name), (None, None))
      yield Item(name, image, label, group)

  inputs.items = items()
  return inputs


def video_inputs(path: str, *, every: int = 1, max_frames: int = 0) -> Inputs:
  """Frames of a video (every ``every``-th, at most ``max_frames``), named ``clip#000012``."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config.video={path}: no such file")
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    raise ValueError(f"--config.video={path}: OpenCV cannot read this file (not a video, "
                     "corrupt, or a codec FFmpeg in opencv-python lacks)")
  count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
  total = -(-count // every) if count > 0 else None
  if total is not None and max_frames:
    total = min(total, max_frames)
  base = os.path.basename(path)

  def items() -> Iterator[Item]:
    index = kept = 0
    try:
      while not max_frames or kept < max_frames:
        ok, frame = capture.read()
        if not ok:
          break
        if index % every == 0:
          kept += 1
          yield Item(f"{base}#{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    finally:
      capture.release()
    if index == 0:
      raise ValueError(f"--config.video={path}: no frame could be read")

  return Inputs(items(), total)


def split_inputs(source: Sequence[Any], *, split: str, label_key: str | None,
                 group_names: np.ndarray | None, max_images: int = 0) -> Inputs:
  """Records of a prepared dataset split, named by their ``filename`` feature if any."""
  n = len(source) if not max_images else min(max_images, len(source))

  def items() -> Iterator[Item]:
    for index in range(n):
      record = source[index]
      name = record.get("filename")
      name = (name.decode() if isinstance(name, bytes) else str(name)) if name is not None \
          else f"{split}/{index:06d}"
      label = int(record[label_key]) if label_key and label_key in record else None
      group = str(group_names[index]) if group_names is not None else None
      yield Item(name, sources.as_rgb(np.asarray(record["image"])), label, group)

  return Inputs(items(), n)
