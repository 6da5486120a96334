"""The training process's hold on its workdir: checked up front, locked while it trains.

* :func:`check_writable`: the workdir is a folder this process can write (a path that
  is a file, a read-only filesystem or a missing permission is one clear error before
  anything is built).
* :class:`DiskFullError` (:func:`disk_full_error`): a full disk, said in one line with
  the free space, by whatever writes (checkpoints, metrics).
* :class:`WorkdirLock`: an exclusive ``fcntl.flock`` on ``<workdir>/.lock``, held while
  a run trains and released when the process exits, however it exits (the kernel drops
  the lock of a dead process, so a crash never leaves a stale lock). A second run on
  the same workdir is refused with the first one's PID; readers (evaluate, export, the
  demo) never take it and only read finished checkpoints (``runs``). In a multi-host
  run process 0 holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket

import jax

LOCK_FILE = ".lock"


class WorkdirBusyError(RuntimeError):
  """Another process is training into the same workdir."""


class DiskFullError(OSError):
  """The workdir's disk filled up while the run wrote to it."""


def is_disk_full(err: BaseException) -> bool:
  """Whether an error is a full disk (``ENOSPC``, also as orbax / tensorstore word it)."""
  return (getattr(err, "errno", None) == errno.ENOSPC
          or "No space left on device" in str(err))


def disk_full_error(path: str, what: str) -> DiskFullError:
  """The one-line error for a full disk under ``path`` while doing ``what``."""
  try:
    free = f"{shutil.disk_usage(path).free / 2 ** 20:.1f} MiB free"
  except OSError:
    free = "free space unknown"
  return DiskFullError(errno.ENOSPC, f"no space left on the device of {path} while {what} "
                                     f"({free}); free some space and run the same command "
                                     "again to resume")


def check_writable(workdir: str) -> None:
  """Creates ``workdir`` if needed and checks that files can be written in it.

  Raises:
    NotADirectoryError / PermissionError / OSError: one line naming the workdir and
      what to do.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"--workdir={workdir} is a file, not a folder; give a folder "
                             "path (it is created if missing)")
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as err:
    why = {errno.EROFS: "it is on a read-only filesystem",
           errno.EACCES: "this user may not write there",
           errno.ENOSPC: "its disk is full"}.get(err.errno, err.strerror or str(err))
    raise type(err)(err.errno, f"cannot write to --workdir={workdir}: {why}; choose a "
                               "writable folder") from None


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      return f.read().strip() or "unknown"
  except OSError:
    return "unknown"


class WorkdirLock:
  """``with WorkdirLock(workdir):`` -- this process trains into ``workdir`` alone.

  Raises (on entry):
    WorkdirBusyError: another live process holds the lock (the message names it).
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = None

  def __enter__(self) -> "WorkdirLock":
    if jax.process_index() != 0:
      return self
    f = open(self.path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.close()
      raise WorkdirBusyError(
          f"{os.path.dirname(self.path)} is being trained by another process "
          f"({_holder(self.path)}); wait for it to finish or stop it, or use another "
          "--workdir. Evaluating or exporting it meanwhile is safe.") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    self._file = f
    return self

  def __exit__(self, *exc) -> None:
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None
