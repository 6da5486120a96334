"""Runs every ``benchmarks/bench_*.py`` script in turn (``make bench``).

Each script is run in its own process so that XLA flags and thread settings of
one benchmark do not leak into the next. Arguments are passed to every script,
e.g. ``python -m benchmarks.run_all --quick`` (``make bench BENCH_ARGS=--quick``).
"""

import glob
import os
import subprocess
import sys


def main() -> int:
  here = os.path.dirname(os.path.abspath(__file__))
  scripts = sorted(glob.glob(os.path.join(here, "bench_*.py")))
  failed = []
  for script in scripts:
    module = "benchmarks." + os.path.splitext(os.path.basename(script))[0]
    print(f"\n=== {module}", flush=True)
    command = [sys.executable, "-m", module, *sys.argv[1:]]
    if subprocess.call(command, cwd=os.path.dirname(here)) != 0:
      failed.append(module)
  if failed:
    print("Failed benchmarks: " + ", ".join(failed), file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
