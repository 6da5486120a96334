"""Frames in and out of the demo: a camera, a video file or one image; an annotated copy.

``FrameSource`` yields BGR uint8 frames (OpenCV's order; the demo converts at the
boundary with the model) and knows the input's frame rate; ``FrameSink`` writes the
annotated frames as a video with the same frame rate (``.mp4``/``.avi``) or as an image.
A camera, video or image that cannot be opened or read is a :class:`DemoInputError`
whose message names it and says what to try.
"""

from __future__ import annotations

import os
from typing import Iterator

import cv2
import numpy as np

VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# Cameras often report 0 fps; this is what the output video then uses.
FALLBACK_FPS = 30.0


class DemoInputError(RuntimeError):
  """A camera, video or image that cannot be opened or read (message names it)."""


class FrameSource:
  """Frames of a camera, a video file or one image, as BGR uint8 arrays.

  Raises:
    FileNotFoundError: the video/image file does not exist.
    DemoInputError: the camera cannot be opened or the file cannot be decoded.
  """

  def __init__(self, *, camera: int | None = None, video: str | None = None,
               image: str | None = None):
    self.kind = "camera" if camera is not None else "video" if video is not None else "image"
    self.capture = None
    self.still = None
    if camera is not None:
      self.name = f"camera {camera}"
      self.capture = cv2.VideoCapture(int(camera))
      if not self.capture.isOpened():
        raise DemoInputError(
            f"cannot open camera {camera} (--camera={camera}): no such device, no permission "
            "or it is in use by another program. Check the index (0 is usually the built-in "
            "webcam) or use --video=PATH / --image=PATH instead.")
    elif video is not None:
      self.name = video
      if not os.path.isfile(video):
        raise FileNotFoundError(f"--video={video}: no such file")
      self.capture = cv2.VideoCapture(video)
      if not self.capture.isOpened():
        raise DemoInputError(f"--video={video}: OpenCV cannot read this file (not a video, "
                             "corrupt, or a codec FFmpeg in opencv-python lacks)")
    else:
      self.name = image
      if not os.path.isfile(image):
        raise FileNotFoundError(f"--image={image}: no such file")
      self.still = cv2.imread(image, cv2.IMREAD_COLOR)
      if self.still is None:
        raise DemoInputError(f"--image={image}: OpenCV cannot decode this file (not an image "
                             "or an unsupported format)")

  @property
  def fps(self) -> float:
    """Frame rate of the input (``FALLBACK_FPS`` when unknown, e.g. many webcams)."""
    if self.capture is None:
      return FALLBACK_FPS
    fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if np.isfinite(fps) and fps > 0 else FALLBACK_FPS

  def frames(self) -> Iterator[np.ndarray]:
    """Yields frames until the input ends; a video with no decodable frame is an error."""
    if self.still is not None:
      yield self.still.copy()
      return
    count = 0
    while True:
      ok, frame = self.capture.read()
      if not ok:
        break
      count += 1
      yield frame
    if count == 0:
      raise DemoInputError(f"{self.name}: no frame could be read (empty or unreadable input)")

  def close(self) -> None:
    if self.capture is not None:
      self.capture.release()


class FrameSink:
  """Writes annotated frames to a video (same fps as the input) or an image."""

  def __init__(self, path: str, fps: float):
    self.path = path
    self.fps = float(fps)
    self.writer = None
    self.count = 0
    self.ext = os.path.splitext(path)[1].lower()

  def write(self, frame_bgr: np.ndarray) -> None:
    if self.ext in IMAGE_EXTENSIONS:
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
      if not cv2.imwrite(self.path, frame_bgr):
        raise OSError(f"--output={self.path}: OpenCV could not write the image")
    else:
      if self.writer is None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        height, width = frame_bgr.shape[:2]
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[self.ext])
        self.writer = cv2.VideoWriter(self.path, fourcc, self.fps, (width, height))
        if not self.writer.isOpened():
          raise OSError(f"--output={self.path}: OpenCV cannot write {self.ext} video "
                        f"(codec {VIDEO_FOURCC[self.ext]}); try .avi")
      self.writer.write(frame_bgr)
    self.count += 1

  def close(self) -> None:
    if self.writer is not None:
      self.writer.release()
