"""Tests of the face-detector comparison (facebias_jax.studies.face_detectors)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from facebias_jax.studies import face_detectors


def test_hit_rule_and_mask_box():
  assert face_detectors.is_hit((10, 10, 20, 20), (15, 15, 30, 30))      # Centre (20, 20).
  assert not face_detectors.is_hit((0, 0, 10, 10), (15, 15, 30, 30))    # Centre (5, 5).
  assert face_detectors.is_hit((0, 0, 10, 10), (15, 15, 30, 30), slack=10)
  mask = np.zeros((20, 30), bool)
  mask[5:9, 10:22] = True
  assert face_detectors.mask_box(mask) == (10, 5, 22, 9)


def test_photographs_and_comparison_tables(tmp_path):
  photos = face_detectors.photographs()
  assert [p[0] for p in photos][:2] == ["astronaut", "coffee"]
  assert all(p[1].dtype == np.uint8 and p[1].shape[-1] == 3 for p in photos)
  result = face_detectors.compare_detectors(detectors=("cnn", "haar"), per_group=2,
                                            num_nonfaces=4)
  for name in ("cnn", "haar"):
    r = result["detectors"][name]
    groups = r["portraits"]["groups"]
    assert set(groups) == {"all", "darker_female", "darker_male", "lighter_female",
                           "lighter_male"}
    assert groups["all"]["n"] == 8 and all(g["n"] == 2 for k, g in groups.items() if k != "all")
    assert groups["all"]["found"] == sum(g["found"] for k, g in groups.items() if k != "all")
    assert r["photos"]["astronaut"]["found"] == 1  # Both find the astronaut's face.
    assert r["nonfaces"]["n"] == 4
  assert result["detectors"]["cnn"]["photos"]["astronaut"]["false_detections"] == 0
  paths = face_detectors.write_comparison(result, str(tmp_path))
  text = open(paths["markdown"]).read()
  assert "| cnn |" in text and "darker_female" in text and "astronaut" in text
  assert os.path.getsize(paths["figure"]) > 1000


@pytest.mark.slow
def test_script_runs_on_the_test_photographs(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "experiments.compare_detectors",
                         "--per_group=1", "--num_nonfaces=2", "--detectors=haar,hog",
                         f"--workdir={tmp_path}"], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("haar: recall") and "hog: recall" in proc.stdout
  assert os.path.isfile(tmp_path / "detectors.md")
