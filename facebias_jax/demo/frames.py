"""Frames in and out of the demo: a camera, a video file, an image or a folder of images.

``FrameSource`` yields BGR uint8 frames (OpenCV's order; the demo converts at the
boundary with the model) and knows the input's frame rate; ``FrameSink`` writes the
annotated frames as a video with the same frame rate (``.mp4``/``.avi``), as an image,
or, for a folder input, as one image per input file under the output folder (same
relative names). A camera, video or image that cannot be opened or read is a
:class:`DemoInputError` whose message names it and says what to try; in a folder,
unreadable files are skipped and listed (``FrameSource.skipped``).
"""

from __future__ import annotations

import os
from typing import Iterator

import cv2
import numpy as np

from facebias_jax import imaging

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
    self.files: list[str] = []
    self.skipped: list[tuple[str, str]] = []  # (file, reason) of unreadable folder files
    self.current = None  # Relative name of the folder file being yielded.
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
    elif os.path.isdir(os.path.expanduser(image)):
      image = os.path.expanduser(image)
      self.kind, self.name = "folder", image
      self.files = [os.path.relpath(str(p), image) for p in imaging.list_images(image)]
      if not self.files:
        raise DemoInputError(f"--image={image}: no .jpg/.jpeg/.png file in this folder or "
                             "below it")
    else:
      self.name = image
      if not os.path.isfile(image):
        raise FileNotFoundError(f"--image={image}: no such file or folder")
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
    if self.kind == "folder":
      for name, image, why in imaging.folder_images(self.name, self.files):
        if image is None:
          self.skipped.append((name, why))
          continue
        self.current = name
        yield np.ascontiguousarray(image[..., ::-1])
      if len(self.skipped) == len(self.files):
        raise DemoInputError(f"--image={self.name}: none of its {len(self.files)} image "
                             "files could be decoded")
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
  """Writes annotated frames to a video (same fps as the input), an image, or (``folder``)
  one image per input file, named after it (``write(frame, name=...)``)."""

  def __init__(self, path: str, fps: float, *, folder: bool = False):
    self.path = path
    self.fps = float(fps)
    self.writer = None
    self.count = 0
    self.folder = folder
    self.ext = os.path.splitext(path)[1].lower()

  def write(self, frame_bgr: np.ndarray, name: str | None = None) -> None:
    if self.folder:
      stem, ext = os.path.splitext(name or f"{self.count:06d}.png")
      imaging.save_image(os.path.join(self.path, stem + (ext if ext.lower() in (
          ".png", ".jpg", ".jpeg") else ".png")), frame_bgr[..., ::-1])
    elif self.ext in IMAGE_EXTENSIONS:
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
