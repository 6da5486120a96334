"""benchmarks/bench_accelerator.py keeps working on CPU (its tiny preset), as CI runs it."""

import json
import os

import numpy as np
import pytest

from benchmarks import bench_accelerator, common


@pytest.mark.parametrize("kind,dtype,peak", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.0), ("NVIDIA H100 PCIe", "bfloat16", 756.0),
    ("NVIDIA H200", "float32", 494.0), ("NVIDIA A100-SXM4-40GB", "float32", 156.0),
    ("Tesla V100-SXM2-16GB", "bfloat16", None), ("TPU v5 lite", "bfloat16", 197.0),
    ("TPU v5p", "bfloat16", 459.0), ("TPU v4", "float32", None), ("cpu", "float32", None)])
def test_peak_table_matches_device_kinds(kind, dtype, peak):
  assert bench_accelerator.peak_tflops(kind, dtype) == peak


def test_flags_are_validated():
  with pytest.raises(SystemExit):
    bench_accelerator.parse_args(["--dtypes=float16"])
  with pytest.raises(SystemExit):
    bench_accelerator.parse_args(["--preset=tiny", "--models=vgg16"])
  args = bench_accelerator.parse_args(["--preset=tiny", "--models=dbvae"])
  assert [c[0] for c in args.cases] == ["dbvae"] and args.steps == 3


@pytest.mark.slow
def test_tiny_preset_runs_on_cpu_and_writes_its_rows(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(common, "RESULTS_DIR", str(tmp_path))
  assert bench_accelerator.main(["--preset=tiny", "--models=resnet18", "--steps=2",
                                 "--out=acc"]) == 0
  with open(os.path.join(tmp_path, "acc.json")) as f:
    result = json.load(f)
  rows = result["rows"]
  assert [r["dtype"] for r in rows] == ["float32", "bfloat16"]
  for row in rows:
    assert row["finite"] and np.isfinite(row["loss"])
    assert row["img_s"] == pytest.approx(row["batch_size"] / (row["step_ms"] / 1e3))
    # ResNet-18 at 32 px, width 1/8: a train step is tens of MFLOPs per image.
    assert 1e-3 < row["gflops_per_step"] / row["batch_size"] < 1e-1
    assert row["peak_source"] == "measured float32 matmul" and 0 < row["mfu"] < 1
    assert row["input_img_s_per_core"] > 0
    assert row["input_cores_needed"] == pytest.approx(row["img_s"] / row["input_img_s_per_core"])
  assert result["cpu_matmul_tflops"] > 0
  assert "resnet18 32px bfloat16" in capsys.readouterr().out
