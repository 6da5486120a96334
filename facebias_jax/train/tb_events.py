"""TensorBoard scalars written straight to an event file, without TensorFlow or torch.

TensorBoard reads ``events.out.tfevents.*`` files: TFRecord-framed ``Event`` protocol
buffers. Scalars need three messages, so they are encoded here by hand, which keeps the
training loop's imports small: the usual writer (tensorboardX) imports PyTorch whenever
it is installed, about 180 MB of memory and 2.5 s of start-up in every run for a few
numbers per logging interval.

Format: each record is ``length`` (uint64 LE), masked CRC-32C of the length, the bytes,
masked CRC-32C of the bytes; the first event holds ``file_version = "brain.Event:2"``.
``Event`` fields: ``wall_time`` (1, double), ``step`` (2, int64), ``file_version`` (3,
string), ``summary`` (5); ``Summary.value`` (1, repeated) with ``tag`` (1, string) and
``simple_value`` (2, float).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Iterable


def _crc32c_table() -> tuple[int, ...]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected.
    table.append(crc)
  return tuple(table)


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of ``data``."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
  """TFRecord's masked CRC: rotated right by 15 bits plus a constant."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
  out = bytearray()
  value &= (1 << 64) - 1  # Negative int64 as two's complement, as protobuf does.
  while True:
    bits = value & 0x7F
    value >>= 7
    if value:
      out.append(bits | 0x80)
    else:
      out.append(bits)
      return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
  return _varint(number << 3 | wire_type) + payload


def _length_delimited(number: int, payload: bytes) -> bytes:
  return _field(number, 2, _varint(len(payload)) + payload)


def event(step: int, *, wall_time: float, scalars: Iterable[tuple[str, float]] = (),
          file_version: str | None = None) -> bytes:
  """One serialized ``Event``: the file header, or a step's scalars as one summary."""
  out = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(int(step)))
  if file_version is not None:
    out += _length_delimited(3, file_version.encode())
  values = b"".join(
      _length_delimited(1, _length_delimited(1, tag.encode()) +
                        _field(2, 5, struct.pack("<f", float(value))))
      for tag, value in scalars)
  if values:
    out += _length_delimited(5, values)
  return out


def record(data: bytes) -> bytes:
  """``data`` in TFRecord framing."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc(length)) + data +
          struct.pack("<I", masked_crc(data)))


class ScalarWriter:
  """Appends scalars to a new event file in ``logdir`` (TensorBoard's naming)."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    now = time.time()
    self.path = os.path.join(logdir, f"events.out.tfevents.{int(now)}.{socket.gethostname()}."
                                     f"{os.getpid()}.0")
    self._file = open(self.path, "ab")
    self._file.write(record(event(0, wall_time=now, file_version="brain.Event:2")))
    self._file.flush()

  def add_scalars(self, step: int, scalars: Iterable[tuple[str, float]]) -> None:
    """One event holding every ``(tag, value)`` of ``step``; flushed at once, so a killed
    run keeps what it logged."""
    scalars = list(scalars)
    if scalars:
      self._file.write(record(event(step, wall_time=time.time(), scalars=scalars)))
      self._file.flush()

  def close(self) -> None:
    self._file.close()
