"""Fields that every entry point reading a trained run shares (evaluate, export, predict).

A field left ``None`` means "what the run's own config says" (``facebias_jax.runs.
option_or_run``); each one is typed, so ``--config.<field>=...`` parses its value.
"""

import ml_collections


def optional(field_type: type) -> ml_collections.FieldReference:
  """A ``None`` field that a flag can set to a value of ``field_type``."""
  return ml_collections.FieldReference(None, field_type=field_type)


def add_run_fields(config: ml_collections.ConfigDict, *, data: bool = True
                   ) -> ml_collections.ConfigDict:
  """Adds ``run`` (a training workdir) and ``step`` (default: the newest checkpoint) and,
  with ``data``, the dataset fields ``dataset``, ``split``, ``data_dir``, ``manual_dir``,
  ``label_key`` and ``groups`` (defaults: the run's ``config.data.*`` and
  ``config.eval.groups``)."""
  config.run = optional(str)
  config.step = optional(int)
  if data:
    for field in ("dataset", "split", "data_dir", "manual_dir", "label_key", "groups"):
      config[field] = optional(str)
  return config
