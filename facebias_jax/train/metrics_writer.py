"""``metrics.jsonl`` and TensorBoard scalars of a training run (written by process 0).

One JSON object per logged step (means over the logging interval), the same values
as TensorBoard scalars under ``<prefix>/<name>``. A run killed after logging past its
last checkpoint has those lines dropped when it resumes (:func:`truncate`), so the
file holds every step at most once.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import jax
import numpy as np

from facebias_jax import runs
from facebias_jax.train import tb_events, workdir as workdir_lib


def _jsonable(v: Any) -> Any:
  if isinstance(v, Mapping):
    return {str(k): _jsonable(x) for k, x in v.items()}
  if isinstance(v, (np.floating, float)):
    return float(v) if math.isfinite(v) else None
  if isinstance(v, (np.integer,)):
    return int(v)
  return v


def _scalars(record: Mapping[str, Any], prefix: str = ""):
  """``(name, number)`` pairs of a record, nested dicts as ``name/key`` (TensorBoard)."""
  for k, v in record.items():
    if isinstance(v, Mapping):
      yield from _scalars(v, f"{prefix}{k}/")
    elif (isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
          and k != "epoch" and math.isfinite(v)):
      yield f"{prefix}{k}", float(v)


class MetricsWriter:
  """Appends records to ``workdir/metrics.jsonl`` and TensorBoard (process 0 only)."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, runs.METRICS_FILE)
    self.writer = (tb_events.ScalarWriter(os.path.join(workdir, runs.TENSORBOARD_DIR))
                   if self.enabled else None)

  def write(self, step: int, record: Mapping[str, Any], prefix: str = "train") -> None:
    """One record of ``step``; numeric values also go to TensorBoard as scalars."""
    if not self.enabled:
      return
    line = {"step": int(step), **{k: _jsonable(v) for k, v in record.items()}}
    try:
      with open(self.path, "a") as f:
        f.write(json.dumps(line) + "\n")
      self.writer.add_scalars(int(step), ((f"{prefix}/{k}", v) for k, v in _scalars(record)))
    except OSError as err:
      if not workdir_lib.is_disk_full(err):
        raise
      raise workdir_lib.disk_full_error(self.path, "writing the training log") from None

  def close(self) -> None:
    """Closes the TensorBoard event file; a full disk here is not a second error."""
    if self.writer is not None:
      try:
        self.writer.close()
      except OSError as err:
        if not workdir_lib.is_disk_full(err):
          raise
      self.writer = None


def truncate(path: str, step: int) -> None:
  """Drops records after ``step`` (a killed run may have logged past its checkpoint)."""
  if not os.path.exists(path) or jax.process_index() != 0:
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      if json.loads(line).get("step", 0) <= step:
        kept.append(line)
    except json.JSONDecodeError:
      continue  # A line cut by the kill.
  with open(path, "w") as f:
    f.writelines(kept)
