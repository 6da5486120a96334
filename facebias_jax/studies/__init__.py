"""Studies: orchestration that trains *and* evaluates (sweeps, method comparisons).

They sit above both ``train`` and ``eval`` (DESIGN.md): ``eval`` never imports ``train``.

* ``alpha_sweep`` -- the DB-VAE smoothing sweep: E[A] and Var[A] per alpha over seeds.
"""
