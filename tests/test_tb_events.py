"""The hand-written TensorBoard event files read back with TensorFlow's own reader.

TensorFlow (installed for TFDS) parses the records, checks both CRCs of every one, and
decodes the ``Event`` protos: an independent check of the framing and the encoding.
"""

import glob
import os

import numpy as np
import pytest

from facebias_jax.train import metrics_writer, tb_events


def _read_events(logdir):
  import tensorflow as tf

  (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
  return list(tf.compat.v1.train.summary_iterator(path))


def test_crc32c_known_values():
  # RFC 3720 (iSCSI) test vectors for CRC-32C.
  assert tb_events.crc32c(b"") == 0
  assert tb_events.crc32c(b"123456789") == 0xE3069283
  assert tb_events.crc32c(bytes(32)) == 0x8A9136AA
  assert tb_events.crc32c(bytes([0xFF] * 32)) == 0x62A8AB43


def test_scalars_read_back_with_tensorflow(tmp_path):
  writer = tb_events.ScalarWriter(str(tmp_path))
  writer.add_scalars(3, [("train/loss", 0.25), ("train/accuracy", 0.875)])
  writer.add_scalars(2 ** 40, [("val/worst", -1.5)])
  writer.add_scalars(5, [])  # Nothing to write: no event.
  writer.close()
  events = _read_events(str(tmp_path))
  assert events[0].file_version == "brain.Event:2"
  got = [(e.step, [(v.tag, v.simple_value) for v in e.summary.value]) for e in events[1:]]
  assert got == [(3, [("train/loss", 0.25), ("train/accuracy", 0.875)]),
                 (2 ** 40, [("val/worst", -1.5)])]
  assert all(e.wall_time > 1.7e9 for e in events)


def test_metrics_writer_logs_nested_scalars_to_tensorboard(tmp_path):
  writer = metrics_writer.MetricsWriter(str(tmp_path))
  writer.write(10, {"loss": np.float32(0.5), "groups": {"darker_female": 0.75},
                    "epoch": 1, "finite": True, "nan": float("nan")}, prefix="val")
  writer.close()
  (event,) = _read_events(os.path.join(str(tmp_path), "tb"))[1:]
  assert event.step == 10
  values = {v.tag: v.simple_value for v in event.summary.value}
  # Epoch, booleans and non-finite values are not scalars to plot.
  assert values == pytest.approx({"val/loss": 0.5, "val/groups/darker_female": 0.75})


def test_tensorflow_rejects_a_damaged_record(tmp_path):
  # The reader above does check the CRCs: one flipped bit fails it.
  import tensorflow as tf

  writer = tb_events.ScalarWriter(str(tmp_path))
  writer.add_scalars(1, [("loss", 1.0)])
  writer.close()
  data = bytearray(open(writer.path, "rb").read())
  data[-6] ^= 0x01  # Inside the last event's bytes.
  open(writer.path, "wb").write(bytes(data))
  with pytest.raises(tf.errors.DataLossError):
    _read_events(str(tmp_path))
