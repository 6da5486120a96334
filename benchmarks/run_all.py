"""Runs every ``benchmarks/bench_*.py`` script in turn (``make bench``).

Each script is run in its own process so that XLA flags and thread settings of
one benchmark do not leak into the next.
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
    if subprocess.call([sys.executable, "-m", module], cwd=os.path.dirname(here)) != 0:
      failed.append(module)
  if failed:
    print("Failed benchmarks: " + ", ".join(failed), file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
