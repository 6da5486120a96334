"""Evaluation: per-group metrics with confidence intervals, detection protocol, reports."""
