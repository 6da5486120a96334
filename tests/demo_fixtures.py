"""Fixtures shared by the demo and CAM-export tests: detectable faces, videos, checkpoints.

The Haar cascade finds most, not all, synthetic faces (it was trained on photographs),
so the tests first screen synthetic faces through the detector and use only the ones
it finds; that the screen yields enough faces is itself asserted (detection must work
on the test video).
"""

from __future__ import annotations

import functools
import os

import cv2
import jax
import ml_collections
import numpy as np

from facebias_jax import faces, runs
from facebias_jax.data import synthetic
from facebias_jax.train import checkpoint as ckpt
from facebias_jax.train import config as train_config
from facebias_jax.train import selection, steps

FRAME_HW = (240, 320)
FACE_SIZE = 160
BACKGROUND_RGB = (90, 120, 150)


def paste(frame: np.ndarray, face: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
  """Pastes ``face`` resized to ``size`` at ``(x, y)`` into ``frame`` (in place)."""
  frame[y:y + size, x:x + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
  return frame


def blank_frame(hw: tuple[int, int] = FRAME_HW) -> np.ndarray:
  return np.tile(np.array(BACKGROUND_RGB, np.uint8), (*hw, 1))


@functools.lru_cache(maxsize=None)
def detectable_faces(size: int = FACE_SIZE, count: int = 3) -> np.ndarray:
  """``count`` synthetic faces (RGB, 128 px) the cascade finds when pasted at ``size``.

  A face qualifies when it is detected at several positions, so it also survives the
  small shifts of the test video and video compression.
  """
  data = synthetic.generate(16, seed=0, task="sex", image_size=128)
  hw = (max(FRAME_HW[0], size + 40), max(FRAME_HW[1], size + 80))
  found = []
  for face in data["image"]:
    ok = True
    for x, y in ((10, 20), (50, 30), (80, 20)):
      frame = paste(blank_frame(hw), face, x, y, size)
      boxes = faces.detect_faces(frame[..., ::-1].copy(), detector="haar")
      ok = ok and len(boxes) == 1 and _inside(boxes[0], (x, y, size, size))
    if ok:
      found.append(face)
    if len(found) == count:
      break
  assert len(found) == count, (
      f"the Haar cascade found only {len(found)} of 16 synthetic faces at {size} px")
  return np.stack(found)


def _inside(box, region, slack: int = 4) -> bool:
  """Whether the centre of ``box`` lies inside ``region`` (both ``x, y, w, h``)."""
  cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
  x, y, w, h = region
  return x - slack <= cx <= x + w + slack and y - slack <= cy <= y + h + slack


def face_frames(num_frames: int = 6) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
  """RGB frames ``[T, 240, 320, 3]`` with one face drifting right, and its paste regions."""
  face = detectable_faces()[0]
  frames, regions = [], []
  for t in range(num_frames):
    x, y = 10 + 25 * t, 40 + 5 * (t % 2)
    frames.append(paste(blank_frame(), face, x, y, FACE_SIZE))
    regions.append((x, y, FACE_SIZE, FACE_SIZE))
  return np.stack(frames), regions


def write_video(path: str, frames_rgb: np.ndarray, fps: float = 10.0) -> str:
  """Writes RGB frames as an MJPG ``.avi`` (near-lossless: detection survives it)."""
  h, w = frames_rgb.shape[1:3]
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
  assert writer.isOpened(), f"cannot write {path}"
  for frame in frames_rgb:
    writer.write(np.ascontiguousarray(frame[..., ::-1]))
  writer.release()
  return path


def read_video(path: str) -> tuple[np.ndarray, float]:
  """All frames of a video as BGR ``[T, H, W, 3]`` and its fps."""
  capture = cv2.VideoCapture(path)
  fps = capture.get(cv2.CAP_PROP_FPS)
  frames = []
  while True:
    ok, frame = capture.read()
    if not ok:
      break
    frames.append(frame)
  capture.release()
  return np.stack(frames) if frames else np.zeros((0,), np.uint8), fps


def tiny_config(image_size: int = 32, data_name: str = "facebias_synthetic_faces/sex_64"):
  """A training config for a very small ResNet-18 (width 1/8) on 32 px inputs.

  ``small_inputs`` keeps a 4x4 feature map at 32 px, so the CAMs are not constant.
  """
  from experiments.configs import classifier  # pylint: disable=g-import-not-at-top
  config = classifier.get_config()
  config.model = ml_collections.ConfigDict(
      {"name": "resnet18", "num_classes": 1, "width": 0.125, "small_inputs": True})
  config.data.name = data_name
  config.data.image_size = image_size
  return config


def tiny_checkpoint(workdir: str, config=None) -> str:
  """Saves a freshly initialised model as step 0 of a training workdir (no training).

  Uses the train package's own functions, so ``load_model(workdir)`` restores it.
  """
  config = config or tiny_config()
  runs.check_or_write_config(config, workdir)
  model = runs.build_model(config)
  tx = train_config.make_optimizer_from_config(config, total_steps=1)
  _, state = steps.create_train_state(model, tx, jax.random.PRNGKey(0))
  checkpointer = ckpt.Checkpointer(workdir)
  checkpointer.save(0, state, epoch=0, plan=np.arange(4),
                    selection=selection.Selection("last").state())
  checkpointer.close()
  assert os.path.isdir(os.path.join(workdir, runs.CHECKPOINT_DIR))
  return workdir
