"""Tests of benchmarks/profile_step.py: HLO targets and the per-pass time split."""

import pytest

from benchmarks import profile_step

HLO = """
  %ffi_call.3 = f32[2,4,4,8]{3,2,1,0} custom-call(%p0, %p1), custom_call_target="facebias_onednn_conv_forward", api_version=API_VERSION_TYPED_FFI
  %ffi_call.7 = (f32[2,4,4,8]{3,2,1,0}, f32[8]{0}) custom-call(%a), custom_call_target="facebias_onednn_conv_norm_forward"
  %fusion.1 = f32[8]{0} fusion(%x), kind=kLoop
"""


def test_ffi_targets_names_each_call_by_its_pass():
  assert profile_step.ffi_targets(HLO) == {"ffi_call.3": "forward",
                                           "ffi_call.7": "norm_forward"}


def test_split_time_counts_only_the_calls_own_time():
  targets = {"a": "forward", "b": "norm_forward"}
  events = [
      {"name": "a", "ts": 0, "dur": 1000},       # runs 0-1000 µs
      {"name": "b", "ts": 200, "dur": 1300},     # waited on the lock until 1000: 500 own
      {"name": "fusion.1", "ts": 1500, "dur": 400},
      {"name": "ThunkExecutor::Execute", "ts": 0, "dur": 2000},  # not work: ignored
  ]
  split = profile_step.split_time(events, targets, steps=2)
  assert split["onednn_ms"] == pytest.approx({"forward": 0.5, "norm_forward": 0.25})
  assert split["onednn_total_ms"] == pytest.approx(0.75)
  assert split["xla_other_ms"] == pytest.approx(0.2)
