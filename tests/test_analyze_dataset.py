"""Tests of dataset analysis: the library functions and the script end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from facebias_jax.data import analysis
from facebias_jax.data import groups
from facebias_jax.data import sources
import train_testlib


def test_analyze_counts_and_imbalance():
  attributes = {"Male": np.array([1, 1, 1, 0, 0, -1]),
                "skin_type": np.array([1, 2, 5, 3, 2, -1])}
  result = analysis.analyze(attributes, ["skin,Male"], labels=np.array([1, 1, 0, 1, 0, 0]))
  assert result["num_examples"] == 6
  assert result["attributes"]["Male"]["counts"] == {"unknown": 1, "0": 2, "1": 3}
  assert result["attributes"]["Male"]["fractions"]["1"] == pytest.approx(0.5)
  table = result["groups"]["skin,Male"]
  rows = {r["group"]: r for r in table["rows"]}
  assert [r["group"] for r in table["rows"]] == ["lighter_female", "lighter_male",
                                                "darker_male", "unknown"]
  assert rows["lighter_male"]["n"] == 2 and rows["lighter_male"]["share"] == pytest.approx(2 / 6)
  assert rows["darker_male"]["ratio_to_largest"] == pytest.approx(0.5)
  assert rows["unknown"]["ratio_to_largest"] is None
  assert rows["lighter_male"]["positive_rate"] == pytest.approx(1.0)
  assert (table["largest"], table["smallest"], table["imbalance_ratio"]) == (
      "lighter_female", "darker_male", 2.0)
  markdown = analysis.to_markdown(result)
  assert "| darker_male | 1 | 16.67% | 0.500 | 0.00% |" in markdown
  with pytest.raises(ValueError, match="Unknown group attribute 'Age'"):
    analysis.analyze(attributes, ["Age"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  train_testlib.prepare_tiny_dataset(data_dir, name="tiny_analysis16", train=48, test=0)
  return data_dir


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(*args):
  # A subprocess: absl flags of several experiment scripts cannot share a process.
  return subprocess.run([sys.executable, "-m", "experiments.analyze_dataset", *args],
                        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_script_end_to_end(data_dir, tmp_path):
  workdir = str(tmp_path / "analysis")
  proc = _script("--config.dataset=facebias_synthetic_faces/tiny_analysis16",
                 "--config.split=train", f"--config.data_dir={data_dir}", f"--workdir={workdir}",
                 "--config.groups=skin,Male;Male,Young", "--config.samples_per_group=4")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "48 examples analysed" in proc.stdout
  with open(os.path.join(workdir, "analysis.json")) as f:
    result = json.load(f)
  source = sources.load_source("facebias_synthetic_faces/tiny_analysis16", split="train",
                                data_dir=data_dir, prepare=False)
  attributes = sources.read_attributes(source)
  names = groups.assign_groups(attributes, "skin,Male")
  rows = result["groups"]["skin,Male"]["rows"]
  assert {r["group"]: r["n"] for r in rows} == {g: int((names == g).sum()) for g in set(names)}
  assert sum(r["n"] for r in rows) == result["num_examples"] == 48
  assert set(result["groups"]) == {"skin,Male", "Male,Young"}
  assert result["dataset"] == "facebias_synthetic_faces/tiny_analysis16"
  assert os.path.getsize(os.path.join(workdir, "group_shares.png")) > 0
  assert "## Groups `skin,Male`" in open(os.path.join(workdir, "analysis.md")).read()
  for row in rows:
    path = os.path.join(workdir, "samples", "skin_Male", f"{row['group']}.png")
    assert os.path.getsize(path) > 0, path


@pytest.mark.slow
def test_script_rejects_empty_group_spec(tmp_path):
  proc = _script(f"--workdir={tmp_path}", "--config.groups=skin,")
  assert proc.returncode == 1
  assert "analyze_dataset: error: --config.groups='skin,' needs group specs" in proc.stderr
  assert "Traceback" not in proc.stderr
