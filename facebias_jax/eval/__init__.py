"""Evaluation: per-group metrics with confidence intervals, detection protocol, reports.

* ``metrics``    -- ``group_metrics``: accuracy/TPR/FPR/selection rate per group and the
                    fairness summary (worst group, gap, Var[A], demographic parity,
                    equalized odds) with bootstrap CIs; fairlearn's definitions.
* ``detection``  -- the DB-VAE paper's PPB protocol: sliding windows over full images.
* ``evaluate``   -- ``predict``, ``evaluate_model``, ``run_evaluation`` (checkpoints ->
                    reports; used by ``experiments/evaluate.py``).
* ``report``     -- report.json/md/csv and plots, run comparisons, the alpha-sweep table,
                    training curves and DB-VAE diagnostics.
* ``sweep``      -- ``run_alpha_sweep``: DB-VAE over smoothing values x seeds.
"""
