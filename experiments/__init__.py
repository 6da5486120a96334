"""Experiment entry points: thin absl scripts that parse flags and call the library."""
