"""What every experiment script shares: logging defaults, user errors, config aliases.

Scripts stay thin (flags, then one library function); the little they have in common
lives here once:

* :func:`run` -- ``absl.app.run`` with quiet logging, JAX's persistent compilation cache
  (``facebias_jax.compilation_cache``), and user errors (a bad path or
  value: ``FileNotFoundError``, ``ValueError``, ``OSError``...) printed as one line
  ``<script>: error: ...`` with exit status 1 instead of a traceback; a run stopped by
  SIGTERM or Ctrl-C (checkpointed) prints one line and exits with 128 + the signal
  (143, 130), a second Ctrl-C exits at once with 130;
* :func:`define_aliases` / :func:`apply_aliases` -- the few short flags users expect
  (``--run``, ``--checkpoint``, ``--video``...) as aliases of config fields;
* :func:`train` -- the training run and its headline numbers.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from typing import Any, Callable

from absl import app, flags, logging

from facebias_jax import compilation_cache, host_memory
from facebias_jax.train import loop, preemption, workdir as workdir_lib

# Exceptions that mean "the user's input is wrong", reported without a traceback: bad
# paths and values, unreadable files, a run that diverged (lower the learning rate),
# a workdir another run is training into.
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, OSError,
                                                FloatingPointError,
                                                workdir_lib.WorkdirBusyError)


def run(main: Callable[[list[str]], None],
        user_errors: tuple[type[BaseException], ...] = USER_ERRORS) -> None:
  """``absl.app.run`` with WARNING as the default log level and one-line user errors.

  Orbax logs several INFO lines per checkpoint and restore, which would bury the
  progress bars and the results; ``--verbosity=0`` brings them back.
  """
  prog = os.path.splitext(os.path.basename(sys.argv[0]))[0]
  # Before JAX starts its CPU client: each step reuses freed host memory instead of
  # faulting in fresh pages (facebias_jax/host_memory.py; FACEBIAS_KEEP_FREED_MEMORY=0).
  host_memory.keep_freed_memory()

  def quiet_main(argv: list[str]) -> None:
    # Under app.run the root logger is at INFO and absl's own logger follows it
    # unless --verbosity is given; orbax logs through both.
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
      std_logging.getLogger().setLevel(std_logging.WARNING)
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    compilation_cache.enable()
    try:
      main(argv)
    except preemption.TrainingInterrupted as e:
      print(f"{prog}: {e}", file=sys.stderr)
      sys.exit(e.exit_code)
    except KeyboardInterrupt:
      print(f"{prog}: interrupted; rerun the same command to resume from the last "
            "checkpoint", file=sys.stderr)
      sys.exit(130)
    except user_errors as e:
      print(f"{prog}: error: {e}", file=sys.stderr)
      sys.exit(1)

  app.run(quiet_main)


def define_aliases(aliases: dict[str, tuple[str, Any, str]]) -> dict[str, flags.FlagHolder]:
  """Defines short flags for config fields.

  Args:
    aliases: flag name -> ``(config field, flag type, help)`` with the type ``str`` or
      ``int``, e.g. ``{"run": ("run", str, "Training workdir.")}``.

  Returns:
    flag name -> its holder, for :func:`apply_aliases`.
  """
  definers = {str: flags.DEFINE_string, int: flags.DEFINE_integer}
  return {name: definers[kind](name, None, f"{text} (alias of --config.{field})")
          for name, (field, kind, text) in aliases.items()}


def apply_aliases(config, holders: dict[str, flags.FlagHolder],
                  aliases: dict[str, tuple[str, Any, str]]):
  """Copies the alias flags that were given into their config fields; returns ``config``.

  Raises:
    app.UsageError: two aliases of one field were both given different values.
  """
  given: dict[str, tuple[str, Any]] = {}
  for name, holder in holders.items():
    if holder.present:
      field = aliases[name][0]
      if field in given and given[field][1] != holder.value:
        raise app.UsageError(f"--{given[field][0]} and --{name} both set config.{field}; "
                             "give one")
      given[field] = (name, holder.value)
      config[field] = holder.value
  return config


def train(config, workdir: str) -> dict:
  """Runs ``loop.train_and_evaluate`` and prints the headline numbers."""
  report = loop.train_and_evaluate(config, workdir)
  if "metrics" in report:
    fairness = report["metrics"]["fairness"]
    worst = fairness["worst_group_accuracy"]
    print(f"accuracy {report['metrics']['overall']['accuracy']:.4f}, worst group "
          f"{fairness['worst_group']} {'n/a' if worst is None else f'{worst:.4f}'} "
          f"(step {report['model']['step']}, selected by {report['selection']['select_by']});"
          f" report: {workdir}/report.md")
    constant = report["metrics"]["settings"].get("constant_prediction")
    if constant is not None:
      print(f"warning: the model predicts class {constant} for every test example: it has "
            "collapsed (lower config.train.learning_rate?)")
  return report
