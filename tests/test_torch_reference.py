"""Tests of the PyTorch benchmark reference's variants and the benchmarks' use of them."""

import math

import pytest

from benchmarks import bench_inference, bench_train_step
from benchmarks import torch_reference as tr

# Variants reorder float sums (NHWC kernels, inductor's fused ones): the same step up
# to rounding, which one Adam update on a 4-image batch does not amplify past this.
RTOL = 1e-4


@pytest.fixture(scope="module")
def eager_losses():
  return tr.train_losses("standard_cnn", 4, 64, variant="eager", steps=2)


def test_eager_step_trains(eager_losses):
  first, second = eager_losses
  assert math.isfinite(first) and 0.3 < first < 1.5  # BCE of an untrained classifier.
  assert second < first  # Adam's first update fits the one batch it is shown.


@pytest.mark.parametrize("variant", [
    "channels_last",
    # Compiles forward and backward with inductor: ~20 s on 2 cores, cache cold.
    "compile",
    "compile_channels_last",
])
def test_variant_matches_eager(variant, eager_losses):
  losses = tr.train_losses("standard_cnn", 4, 64, variant=variant, steps=2)
  assert losses == pytest.approx(eager_losses, rel=RTOL)


def test_make_step_returns_none():
  # Timing helpers read a returned number as the call's own seconds.
  train_step, infer = tr.make_step("standard_cnn", 2, 64, threads=1,
                                   variant="channels_last")
  assert train_step() is None
  assert infer() is None


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="compile_channels_last"):
    tr.make_step("standard_cnn", 2, 64, threads=1, variant="jit")


def test_parse_variants_keeps_canonical_order():
  assert tr.parse_variants("compile,eager,") == ("eager", "compile")
  assert tr.parse_variants(",".join(tr.VARIANTS)) == tr.VARIANTS
  with pytest.raises(ValueError, match=r"\['fast'\]"):
    tr.parse_variants("eager,fast")
  with pytest.raises(ValueError, match="choose"):
    tr.parse_variants(",")


@pytest.mark.parametrize("main", [bench_train_step.main, bench_inference.main])
def test_torch_variants_flag_is_validated(main, capsys):
  with pytest.raises(SystemExit) as exit_info:
    main(["--torch_variants", "eager,fast", "--models", "standard_cnn"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "--torch_variants" in err and "'fast'" in err
  assert "eager, channels_last, compile, compile_channels_last" in err


def test_torch_contenders():
  assert bench_train_step.torch_contenders(("eager", "compile"), 2) == {
      "torch_eager": ("eager", 2), "torch_compile": ("compile", 2),
      "torch_eager_1t": ("eager", 1)}
  # No 1-thread duplicate when --threads is 1, and none without eager.
  assert bench_train_step.torch_contenders(("eager",), 1) == {"torch_eager": ("eager", 1)}
  assert list(bench_train_step.torch_contenders(("compile",), 2)) == ["torch_compile"]


def test_throughputs_picks_fastest_variant():
  best = {"auto": 0.1, "xla": 0.2, "torch_eager": 0.4, "torch_eager_1t": 0.32,
          "torch_compile": 0.16}
  row = bench_train_step.throughputs(best, 32)
  assert row["jax_auto_img_s"] == pytest.approx(320)
  assert row["torch_eager_1t_img_s"] == pytest.approx(100)
  assert row["torch_best_variant"] == "compile"
  assert row["torch_best_img_s"] == pytest.approx(200)
  assert row["ratio"] == pytest.approx(1.6)
  assert row["ratio_xla"] == pytest.approx(0.8)
  # Eager at its better thread count: 1 thread here.
  assert row["ratio_vs_eager"] == pytest.approx(3.2)
  line = bench_train_step.summary_line({"model": "standard_cnn", "batch_size": 32, **row})
  assert line == ("standard_cnn b32: ours 320 img/s, xla 160, torch 200 (compile) "
                  "(ratio 1.60, vs eager 3.20)")


def test_throughputs_without_eager_or_torch():
  row = bench_train_step.throughputs({"auto": 0.1, "xla": 0.2, "torch_compile": 0.2}, 32)
  assert row["ratio"] == pytest.approx(2.0) and "ratio_vs_eager" not in row
  row = bench_train_step.throughputs({"auto": 0.1, "xla": 0.2}, 32)
  assert "ratio" not in row and "torch_best_variant" not in row


def test_table_columns_show_variants_and_best():
  rows = [{"model": "m", "image_size": 64, "batch_size": 32, "jax_auto_img_s": 1.0,
           "jax_xla_img_s": 1.0, "torch_eager_img_s": 1.0, "torch_compile_img_s": 2.0,
           "torch_best_img_s": 2.0, "torch_best_variant": "compile", "ratio": 0.5,
           "jax_auto_compile_s": 1.0, "torch_eager_compile_s": 0.1,
           "torch_compile_compile_s": 30.0}]
  columns = bench_train_step.table_columns(rows)
  assert columns[5:8] == ["torch_eager_img_s", "torch_compile_img_s", "torch_best_variant"]
  assert "torch_compile_compile_s" in columns and "jax_auto_compile_s" in columns
  # Eager's first call is in the JSON only; the best rate is already a column.
  assert "torch_eager_compile_s" not in columns and "torch_best_img_s" not in columns


def test_warm_up_waits_out_a_late_recompilation():
  # First call compiles (30 s), the third recompiles (2 s): warm-up must not stop there.
  times = iter([30.0, 0.1, 0.1, 2.0, 0.1, 0.1])
  calls = []

  def fn():
    calls.append(1)
    return next(times)

  assert bench_train_step._warm_up(fn, min_seconds=0.01) == 0.1
  assert len(calls) == 5


@pytest.mark.slow
def test_remote_step_reports_first_call_and_steps():
  step = tr.RemoteStep("standard_cnn", 4, 64, threads=1, variant="channels_last")
  try:
    assert step.first_call_s > 0
    seconds = [step() for _ in range(2)]
  finally:
    step.close()
  assert all(0 < s < 10 for s in seconds)
