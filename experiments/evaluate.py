r"""Evaluates trained checkpoints per demographic group and writes the reports.

One model (report.json/.md/.csv and plots in --workdir, default: the checkpoint's)::

  python -m experiments.evaluate --checkpoint=/tmp/facebias/standard

Several, side by side (standard vs balanced vs DB-VAE)::

  python -m experiments.evaluate --flagfile=experiments/flags/evaluate_synthetic.flags

The PPB full-image protocol of the DB-VAE paper (sliding windows)::

  python -m experiments.evaluate --checkpoint=/tmp/facebias/dbvae \
    --dataset=facebias_ppb/full_256 --split=test --manual_dir=~/data/ppb \
    --label_key=label --groups=skin,Male --protocol=detection

The dataset, split, label and groups default to the checkpoint's config
(``config.data.*``, ``config.eval.groups``).
"""

from __future__ import annotations

import sys

from absl import app, flags

from facebias_jax.eval import evaluate
from experiments import common

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Training workdir to evaluate (holds config.json "
                                  "and checkpoints/).")
_COMPARE = flags.DEFINE_list("compare", None, "Several training workdirs to evaluate and compare "
                             "side by side (instead of --checkpoint).")
_LABELS = flags.DEFINE_list("labels", None, "Names of the --compare runs, e.g. standard,balanced,dbvae "
                            "(default: the workdir names).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to restore (default: the latest).", lower_bound=0)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where to write the reports (required with --compare; "
                               "default for one checkpoint: its workdir, or a subfolder when the "
                               "dataset differs from its config's).")
_DATASET = flags.DEFINE_string("dataset", None, "TFDS name/config, e.g. facebias_ppb/cropped_64 "
                               "(default: the checkpoint's config.data.name).")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate (default: config.data.eval_split).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: config.data.data_dir).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "TFDS manual_dir holding the raw dataset files "
                                  "(default: config.data.manual_dir).")
_LABEL_KEY = flags.DEFINE_string("label_key", None, "Record feature used as the label, e.g. Male "
                                 "(default: config.data.label_key).")
_GROUPS = flags.DEFINE_string("groups", None, "Group spec, e.g. skin,Male or Male,Young "
                              "(default: config.eval.groups).")
_PROTOCOL = flags.DEFINE_enum("protocol", "classification", list(evaluate.PROTOCOLS),
                              "classification: one prediction per image; detection: the DB-VAE "
                              "paper's PPB protocol (sliding windows over the full image).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Evaluation batch size (default: "
                                   "config.eval.batch_size or config.train.batch_size).", lower_bound=1)
_N_BOOT = flags.DEFINE_integer("n_boot", 1000, "Bootstrap resamples for the 95% CIs (0: none).",
                               lower_bound=0)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the bootstrap.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.5, "Decision threshold on the positive-class probability.",
                                lower_bound=0.0, upper_bound=1.0)
_UNDEFINED = flags.DEFINE_enum("undefined_rates", "ignore", ["ignore", "zero"],
                               "A group's TPR/FPR without positives/negatives: ignore it in the "
                               "differences, or count it as 0 (fairlearn's convention).")
_SCALES = flags.DEFINE_list("scales", ["1.0", "0.75", "0.5"], "Detection: window sides as fractions of "
                            "the shorter image side.")
_STRIDE = flags.DEFINE_float("stride_frac", 0.25, "Detection: window stride as a fraction of its side.",
                             lower_bound=0.01, upper_bound=1.0)
_LOGIT_THRESHOLD = flags.DEFINE_float("logit_threshold", 0.0, "Detection: an image is a face when its "
                                      "best window's logit exceeds this.")
_DET_SIZE = flags.DEFINE_integer("detection_image_size", None, "Detection: load full images at this "
                                 "size (default: as stored).", lower_bound=8)


def _valid_scales(values: list[str]) -> bool:
  try:
    return bool(values) and all(0.0 < float(v) <= 1.0 for v in values)
  except ValueError:
    return False


flags.register_validator("scales", _valid_scales,
                         message="--scales must be numbers in (0, 1], e.g. --scales=1.0,0.75,0.5")
flags.register_multi_flags_validator(
    ["checkpoint", "compare"], lambda f: bool(f["checkpoint"]) != bool(f["compare"]),
    message="Give exactly one of --checkpoint=WORKDIR or --compare=WD1,WD2,...")
flags.register_multi_flags_validator(
    ["compare", "workdir"], lambda f: not f["compare"] or bool(f["workdir"]),
    message="--compare needs --workdir for the comparison report")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  options = {
      "checkpoint": _CHECKPOINT.value, "compare": _COMPARE.value, "labels": _LABELS.value,
      "step": _STEP.value, "dataset": _DATASET.value, "split": _SPLIT.value,
      "data_dir": _DATA_DIR.value, "manual_dir": _MANUAL_DIR.value, "label_key": _LABEL_KEY.value,
      "groups": _GROUPS.value, "protocol": _PROTOCOL.value, "batch_size": _BATCH_SIZE.value,
      "n_boot": _N_BOOT.value, "seed": _SEED.value, "threshold": _THRESHOLD.value,
      "undefined_rates": _UNDEFINED.value,
      "detection": {"scales": [float(s) for s in _SCALES.value], "stride_frac": _STRIDE.value,
                    "logit_threshold": _LOGIT_THRESHOLD.value, "image_size": _DET_SIZE.value},
  }
  try:
    result = evaluate.run_evaluation(options, _WORKDIR.value)
  except (FileNotFoundError, ValueError) as e:
    # Bad paths and values are user errors: one clear line, no traceback.
    print(f"evaluate: error: {e}", file=sys.stderr)
    sys.exit(1)
  for label, rep in result["reports"].items():
    f = rep["metrics"]["fairness"]
    print(f"{label}: accuracy {rep['metrics']['overall']['accuracy']:.4f}, worst group "
          f"{f['worst_group']} ({f['worst_group_accuracy']}), report {rep['files']['md']}")
  if result["comparison"]:
    print(f"comparison: {result['comparison']['files']['md']}")


if __name__ == "__main__":
  common.run(main)
