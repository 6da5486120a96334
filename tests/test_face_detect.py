"""Tests of facebias_jax.demo.face_detect: the Haar cascade (the demo's detector), dlib's
HOG and CNN detectors, and their errors."""

import functools

import numpy as np
import pytest

import demo_fixtures as df
from facebias_jax.demo import face_detect


_haar = functools.partial(face_detect.detect_faces, detector="haar")


def _bgr(frame_rgb):
  return np.ascontiguousarray(frame_rgb[..., ::-1])


def test_detects_synthetic_faces_inside_pasted_region():
  faces = df.detectable_faces()
  assert faces.shape == (3, 128, 128, 3)
  frame = df.paste(df.blank_frame(), faces[0], 100, 40, df.FACE_SIZE)
  boxes = _haar(_bgr(frame))
  assert len(boxes) == 1
  x, y, w, h = boxes[0]
  assert all(isinstance(v, int) for v in boxes[0])
  # The box lies on the face, within the pasted square.
  assert 100 <= x and x + w <= 100 + df.FACE_SIZE
  assert 40 <= y and y + h <= 40 + df.FACE_SIZE
  assert w >= 40 and h >= 40


def test_several_faces_largest_first_and_max_faces():
  faces = df.detectable_faces()
  frame = df.blank_frame((300, 480))
  df.paste(frame, faces[1], 10, 80, 100)
  df.paste(frame, faces[0], 200, 20, 220)
  boxes = _haar(_bgr(frame))
  assert len(boxes) == 2
  assert boxes[0][0] >= 200 and boxes[1][0] < 110  # the 220 px face comes first
  assert boxes[0][2] * boxes[0][3] > boxes[1][2] * boxes[1][3]
  assert _haar(_bgr(frame), max_faces=1) == boxes[:1]
  # A max_size below the large face's box keeps only the small face.
  small_only = _haar(_bgr(frame), max_size=(boxes[0][2] - 10,) * 2)
  assert len(small_only) == 1 and small_only[0][0] < 110


def test_max_side_detects_on_a_shrunk_copy_in_input_pixels():
  frame = df.paste(df.blank_frame((480, 640)), df.detectable_faces()[0], 200, 100, 300)
  full = _haar(_bgr(frame))
  small = _haar(_bgr(frame), max_side=320)
  assert len(full) == 1 and len(small) == 1
  # Same face, in the input's pixel coordinates (up to the coarser pyramid).
  np.testing.assert_allclose(small[0], full[0], atol=0.15 * full[0][2])
  with pytest.raises(ValueError, match="max_side"):
    _haar(_bgr(frame), max_side=10)


def test_grey_input_and_blank_frame():
  frame = df.paste(df.blank_frame(), df.detectable_faces()[0], 60, 40, df.FACE_SIZE)
  grey = _bgr(frame).mean(axis=-1).astype(np.uint8)
  assert len(_haar(grey)) == 1
  assert _haar(_bgr(df.blank_frame())) == []


def test_sort_boxes_orders_by_area_then_position():
  boxes = [(5, 5, 10, 10), (0, 0, 20, 20), (1, 0, 10, 10)]
  assert face_detect.sort_boxes(np.array(boxes)) == [(0, 0, 20, 20), (1, 0, 10, 10),
                                                     (5, 5, 10, 10)]


def test_cascade_loaded_once():
  assert face_detect.load_cascade() is face_detect.load_cascade()


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="uint8"):
    face_detect.detect_faces(np.zeros((20, 20, 3), np.float32))
  with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
    face_detect.detect_faces(np.zeros((20, 20, 4), np.uint8))
  with pytest.raises(ValueError, match="scale_factor"):
    face_detect.detect_faces(np.zeros((20, 20, 3), np.uint8), scale_factor=1.0)
  with pytest.raises(FileNotFoundError, match="haarcascade_frontalface_default.xml"):
    face_detect.cascade_path("no_such_cascade.xml")


@pytest.mark.parametrize("detector", ["cnn", "hog"])
def test_dlib_detectors_find_the_face_and_not_a_blank_frame(detector):
  # dlib's detectors want faces of ~40 px and more: the head is ~45% of the image.
  frame = df.paste(df.blank_frame((300, 400)), df.detectable_faces()[0], 100, 40, 240)
  boxes = face_detect.detect_faces(_bgr(frame), detector=detector)
  assert len(boxes) == 1
  x, y, w, h = boxes[0]
  assert 100 <= x + w / 2 <= 340 and 40 <= y + h / 2 <= 280
  assert face_detect.detect_faces(_bgr(df.blank_frame()), detector=detector) == []
  grey = _bgr(frame).mean(axis=-1).astype(np.uint8)
  assert len(face_detect.detect_faces(grey, detector=detector)) == 1


def test_cnn_detects_on_a_shrunk_copy_and_maps_boxes_back():
  frame = df.paste(df.blank_frame((480, 640)), df.detectable_faces()[0], 200, 100, 300)
  boxes = face_detect.detect_faces(_bgr(frame), detector="cnn")  # Shrunk to 384 px.
  assert len(boxes) == 1
  x, y, w, h = boxes[0]
  # The face is ~135 px wide in the frame, ~80 px on the 384 px copy.
  assert 200 <= x + w / 2 <= 500 and 100 <= y + h / 2 <= 400 and w > 110


def test_unknown_detector_and_bad_upsample():
  with pytest.raises(ValueError, match="detector='mtcnn' is not a face detector; use one of cnn, hog, haar"):
    face_detect.detect_faces(np.zeros((20, 20, 3), np.uint8), detector="mtcnn")
  with pytest.raises(ValueError, match="upsample"):
    face_detect.detect_faces(np.zeros((20, 20, 3), np.uint8), detector="hog", upsample=-1)


def test_cnn_weights_come_from_the_installed_package():
  assert face_detect.cnn_weights_path().endswith("mmod_human_face_detector.dat")
