"""Stopping a run cleanly: SIGTERM (cluster preemption) and Ctrl-C.

Schedulers (SLURM, Kubernetes, TPU maintenance) send SIGTERM some seconds before they
kill a job, and users press Ctrl-C. Either way the loop should lose nothing: it saves a
checkpoint at the next step boundary and stops with :class:`TrainingInterrupted`,
which the scripts turn into one line and exit status ``128 + signal`` (143 for
SIGTERM, 130 for Ctrl-C). A second Ctrl-C stops at once (``KeyboardInterrupt``).

Multi-host runs must stop at the *same* step on every process, or the checkpoint's
collectives would hang: there JAX's preemption sync point decides
(``multihost_utils.reached_preemption_sync_point``: JAX's coordination service catches
SIGTERM on any process and tells all of them the step to stop at), and no handler is
installed here: Ctrl-C, which reaches the processes at different steps, stops them at
once (the last periodic checkpoint is where they resume).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import jax
from absl import logging
from jax.experimental import multihost_utils


class TrainingInterrupted(Exception):
  """The run stopped on a signal after checkpointing ``step``; rerun to resume."""

  def __init__(self, signum: int, step: int, workdir: str):
    self.signum, self.step, self.workdir = int(signum), int(step), workdir
    name = signal.Signals(signum).name
    super().__init__(f"stopped by {name} after step {step}; checkpoint saved in "
                     f"{workdir}. Run the same command again to resume.")

  @property
  def exit_code(self) -> int:
    """The shell convention for a death by signal: 128 + its number."""
    return 128 + self.signum


class StopRequests:
  """Signal handlers that turn SIGTERM and a first Ctrl-C into "stop at the next step".

  ``with StopRequests() as stop:`` installs them (from the main thread; elsewhere, e.g.
  a notebook's worker thread, nothing is installed) and restores the previous ones on
  exit; ``stop.requested(step)`` says whether to stop after ``step``.
  """

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}
    self._multi = jax.process_count() > 1

  def _handle(self, signum: int, frame) -> None:
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # The second Ctrl-C: now.
    self.signum = signum
    logging.warning("Received %s: saving a checkpoint at the next step, then stopping "
                    "(Ctrl-C again to stop at once).", signal.Signals(signum).name)

  def __enter__(self) -> "StopRequests":
    if not self._multi and threading.current_thread() is threading.main_thread():
      for s in (signal.SIGINT, signal.SIGTERM):
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()

  def requested(self, step: int) -> bool:
    """Whether the run should checkpoint and stop after ``step`` (the same answer on
    every process)."""
    if self._multi and multihost_utils.reached_preemption_sync_point(int(step)):
      self.signum = signal.SIGTERM
    return self.signum is not None
