"""Tests of the gender-neutral study (facebias_jax.studies.gender_neutral)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import demo_fixtures as df
from experiments.configs import gender_neutral as gn_config
from facebias_jax import imaging
from facebias_jax.studies import gender_neutral


def _config(run, **fields):
  config = gn_config.get_config()
  config.run = run
  config.update(fields)
  return config


def test_levels_are_parsed_and_checked():
  assert gender_neutral.parse_levels("1, 0,0.5,0.5") == [0.0, 0.5, 1.0]
  for bad in ("0,2", "a,b", ""):
    with pytest.raises(ValueError, match="--config.levels"):
      gender_neutral.parse_levels(bad)


def test_level_result_against_a_hand_count():
  p = np.array([0.9, 0.2, 0.6, 0.4])
  male = np.array([1, 0, 0, 1])
  skin = np.array(["lighter", "lighter", "darker", "darker"])
  r = gender_neutral.level_result(p, male, skin, np.array([0.5, 0.7, np.nan, 0.1]),
                                  np.array([0.2, 0.0, 0.1, 0.3]))
  assert r["all"]["share_called_male"] == 0.5 and r["all"]["accuracy"] == 0.5
  assert r["skin"]["lighter"]["accuracy"] == 1.0 and r["skin"]["darker"]["accuracy"] == 0.0
  assert r["skin_sex"]["darker_male"]["p_male_mean"] == pytest.approx(0.4)
  assert r["face_energy"] == pytest.approx(np.mean([0.5, 0.7, 0.1]))  # NaN: no map mass.
  assert r["hair_energy"] == pytest.approx(0.15)


def test_study_writes_tables_figure_and_ambiguous_faces(checkpoint, tmp_path):
  out = str(tmp_path / "gn")
  summary = gender_neutral.run_study(_config(checkpoint, levels="0,1", per_group=3,
                                             batch_size=8, num_ambiguous=5), out,
                                     progress=False)
  assert summary["levels"] == [0.0, 1.0]
  for key in ("0", "1"):
    r = summary["results"][key]
    assert r["all"]["n"] == 12 and r["skin"]["darker"]["n"] == 6
    assert all(r["skin_sex"][c]["n"] == 3 for c in r["skin_sex"])
    assert 0.0 <= r["face_energy"] <= 1.0 and 0.0 <= r["hair_energy"] <= 1.0
    assert r["face_energy"] + r["hair_energy"] <= 1.0 + 1e-6  # Disjoint regions.
  saved = json.load(open(os.path.join(out, "gender_neutral.json")))
  assert saved["results"]["1"]["all"]["p_male_mean"] == pytest.approx(
      summary["results"]["1"]["all"]["p_male_mean"])
  assert "| 1 | darker |" in open(os.path.join(out, "gender_neutral.md")).read()
  assert os.path.getsize(os.path.join(out, "p_male_vs_ambiguity.png")) > 1000
  assert imaging.load_image(os.path.join(out, "most_ambiguous.png")).ndim == 3


def test_a_run_that_is_not_a_sex_classifier_is_refused(tmp_path):
  config = df.tiny_config(data_name="facebias_synthetic_faces/faces_vs_nonfaces_64")
  run = df.tiny_checkpoint(str(tmp_path / "faces"), config)
  with pytest.raises(ValueError, match="is not a sex classifier.*non-face, face"):
    gender_neutral.run_study(_config(run), str(tmp_path / "gn"), progress=False)


@pytest.mark.slow
def test_script_on_a_folder_of_faces(checkpoint, tmp_path):
  folder = tmp_path / "faces"
  for i, image in enumerate(df.detectable_faces()):
    imaging.save_image(str(folder / f"{i}.png"), image)
  proc = subprocess.run([sys.executable, "-m", "experiments.gender_neutral",
                         f"--run={checkpoint}", f"--images={folder}",
                         f"--workdir={tmp_path / 'out'}"], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("3 faces: mean P(Male)")
  assert os.path.isfile(tmp_path / "out" / "probability_by_group.png")


@pytest.mark.slow
def test_script_folder_mode_refuses_a_run_that_is_not_a_sex_classifier(tmp_path):
  config = df.tiny_config(data_name="facebias_synthetic_faces/faces_vs_nonfaces_64")
  run = df.tiny_checkpoint(str(tmp_path / "faces"), config)
  imaging.save_image(str(tmp_path / "in" / "a.png"), df.detectable_faces()[0])
  proc = subprocess.run([sys.executable, "-m", "experiments.gender_neutral", f"--run={run}",
                         f"--images={tmp_path / 'in'}", f"--workdir={tmp_path / 'out'}"],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert "is not a sex classifier (its classes are non-face, face)" in proc.stderr
  assert not os.path.exists(tmp_path / "out")  # Refused before any work.
