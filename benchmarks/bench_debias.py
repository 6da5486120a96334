"""Benchmark: DB-VAE sampling probabilities, vectorised vs the per-dimension loop.

``debias.sample_probabilities`` (all latent dimensions at once: one bincount,
flat look-ups) against the direct loop of the MIT 6.S191 lab (``np.histogram`` +
``np.digitize`` per dimension), on Gaussian latent means of N faces x D dims.
Both are checked to agree before timing. Writes ``benchmarks/results/debias.json``::

  python -m benchmarks.bench_debias           # 200,000 x 100 (the acceptance size)
  python -m benchmarks.bench_debias --quick   # 20,000 x 100
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import print_table, time_call, write_results
from facebias_jax.train import debias


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="20,000 faces instead of 200,000")
  parser.add_argument("--latent_dim", type=int, default=100)
  args = parser.parse_args(argv)
  n = 20_000 if args.quick else 200_000
  mu = np.random.default_rng(0).normal(size=(n, args.latent_dim)).astype(np.float32)
  rows = []
  for combine in ("max", "product"):
    fast = debias.sample_probabilities(mu, combine=combine)
    ref = debias.sample_probabilities_loop(mu, combine=combine)
    max_rel = float(np.max(np.abs(fast - ref) / ref))
    if max_rel > 1e-9:
      raise AssertionError(f"vectorised and loop results differ (max rel. error {max_rel})")
    t_fast = time_call(lambda c=combine: debias.sample_probabilities(mu, combine=c),
                       warmup=1, repeats=5, min_seconds=0.5)
    t_loop = time_call(lambda c=combine: debias.sample_probabilities_loop(mu, combine=c),
                       warmup=1, repeats=3, min_seconds=0.5)
    rows.append({"combine": combine, "num_faces": n, "latent_dim": args.latent_dim,
                 "vectorised_s": t_fast, "loop_s": t_loop, "speedup": t_loop / t_fast,
                 "max_rel_error": max_rel})
  print_table(rows, ["combine", "num_faces", "latent_dim", "vectorised_s", "loop_s", "speedup"])
  print("wrote", write_results("debias", rows))


if __name__ == "__main__":
  main()
