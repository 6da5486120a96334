"""What every experiment script shares: quiet logging defaults and the training run.

Scripts stay thin (parse flags, call one library function); the little they have
in common lives here once.
"""

from __future__ import annotations

import logging as std_logging
from typing import Callable

from absl import app, flags, logging

from facebias_jax.train import loop


def run(main: Callable[[list[str]], None]) -> None:
  """``absl.app.run`` with WARNING as the default log level.

  Orbax logs several INFO lines per checkpoint and restore, which would bury the
  progress bars and the results; ``--verbosity=0`` brings them back.
  """
  def quiet_main(argv: list[str]) -> None:
    # Under app.run the root logger is at INFO and absl's own logger follows it
    # unless --verbosity is given; orbax logs through both.
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
      std_logging.getLogger().setLevel(std_logging.WARNING)
    main(argv)

  app.run(quiet_main)


def train(config, workdir: str) -> dict:
  """Runs ``loop.train_and_evaluate`` and prints the headline numbers."""
  report = loop.train_and_evaluate(config, workdir)
  if "metrics" in report:
    fairness = report["metrics"]["fairness"]
    print(f"accuracy {report['metrics']['overall']['accuracy']:.4f}, worst group "
          f"{fairness['worst_group_accuracy']:.4f}; report: {workdir}/report.md")
  return report
