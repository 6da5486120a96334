"""Tests of the live demo (facebias_jax.demo.live, experiments/webcam_demo.py)."""

import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

import demo_fixtures as df
from facebias_jax import imaging
from experiments.configs import demo as demo_config
from facebias_jax import runs
from facebias_jax.cam import predictor as cam_predictor
from facebias_jax.demo import frames, live

NUM_FRAMES = 6


def _config(run, **fields):
  config = demo_config.get_config()
  config.run = run
  config.headless = True
  config.warmup = False
  config.update(fields)
  return config


@pytest.fixture(scope="module")
def video(tmp_path_factory):
  frames, regions = df.face_frames(NUM_FRAMES)
  path = df.write_video(str(tmp_path_factory.mktemp("video") / "faces.avi"), frames, fps=12.0)
  return path, regions


def test_video_is_annotated_frame_for_frame(checkpoint, video, tmp_path):
  path, regions = video
  out = str(tmp_path / "out.mp4")
  seen = []
  summary = live.run(_config(checkpoint, video=path, output=out),
                     on_frame=lambda frame, result: seen.append(result))
  assert summary["frames"] == NUM_FRAMES
  assert summary["method"] == "cam"  # ResNet: GAP + linear head
  # The cascade finds the face in every frame, on the pasted face.
  assert [len(r.boxes) for r in seen] == [1] * NUM_FRAMES
  for result, (x, y, w, h) in zip(seen, regions):
    bx, by, bw, bh = result.boxes[0]
    assert x <= bx + bw / 2 <= x + w and y <= by + bh / 2 <= y + h
    assert 0.5 <= float(result.probability[0]) <= 1.0
    assert int(result.predicted[0]) in (0, 1)
  inputs, in_fps = df.read_video(path)
  outputs, out_fps = df.read_video(out)
  assert outputs.shape == inputs.shape  # same frame count and size
  assert out_fps == pytest.approx(in_fps)
  for frame_in, frame_out, result in zip(inputs, outputs, seen):
    x0, y0, x1, y1 = result.regions[0]
    diff_in = np.abs(frame_out[y0:y1, x0:x1].astype(int) - frame_in[y0:y1, x0:x1]).mean()
    # Outside the box and the fps strip (top-left corner), the frame is unchanged up to
    # video compression.
    far = (slice(y1 + 5, None), slice(x1 + 5, None)) if x1 + 5 < frame_in.shape[1] else None
    assert diff_in > 20.0, "no CAM overlay drawn inside the face box"
    if far is not None and frame_in[far].size:
      assert np.abs(frame_out[far].astype(int) - frame_in[far]).mean() < 6.0


def test_image_input_and_output(checkpoint, tmp_path):
  frames, _ = df.face_frames(1)
  image = str(tmp_path / "face.png")
  imaging.save_image(image, frames[0])
  out = str(tmp_path / "annotated.jpg")
  summary = live.run(_config(checkpoint, image=image, output=out, method="gradcam"))
  assert summary["frames"] == 1 and summary["faces"] == 1
  assert summary["method"] == "gradcam"
  annotated = imaging.load_image(out)
  assert annotated.shape == frames[0].shape
  assert np.abs(annotated.astype(int) - frames[0]).mean() > 5.0


def test_image_folder_whole_image_and_a_corrupt_file(checkpoint, tmp_path):
  frames, _ = df.face_frames(2)
  folder = tmp_path / "faces"
  imaging.save_image(str(folder / "a.png"), frames[0])
  imaging.save_image(str(folder / "sub" / "b.jpg"), frames[1])
  (folder / "broken.png").write_bytes(b"not an image")
  out = str(tmp_path / "annotated")
  seen = []
  summary = live.run(_config(checkpoint, image=str(folder), output=out, whole_image=True),
                     on_frame=lambda frame, result: seen.append(result))
  assert summary["frames"] == 2 and summary["faces"] == 2
  assert summary["skipped"] == [("broken.png", "not a decodable JPEG/PNG image")]
  h, w = frames[0].shape[:2]
  side = min(h, w)  # Whole image: the centre square, no detection.
  assert seen[0].regions == [((w - side) // 2, (h - side) // 2, (w - side) // 2 + side,
                              (h - side) // 2 + side)]
  assert os.path.isfile(os.path.join(out, "a.png"))
  assert imaging.load_image(os.path.join(out, "sub", "b.jpg")).shape == frames[1].shape
  with pytest.raises(ValueError, match="give an output folder"):
    live.run(_config(checkpoint, image=str(folder), output=str(tmp_path / "x.png")))


def test_face_classifier_batches_match_single_faces(checkpoint):
  model, config = runs.load_model(checkpoint)
  classifier = live.FaceClassifier(model, image_size=config.data.image_size, max_faces=4)
  crops = df.detectable_faces()[:, ::4, ::4]  # 128 -> 32 px
  predicted, prob, maps = classifier(crops)  # 3 faces, padded to a batch of 4
  assert predicted.shape == (3,) and prob.shape == (3,) and maps.shape == (3, 32, 32)
  assert np.all((prob >= 0.5) & (prob <= 1.0))
  for i in range(3):
    p1, q1, m1 = classifier(crops[i:i + 1])
    assert p1[0] == predicted[i]
    np.testing.assert_allclose(q1[0], prob[i], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m1[0], maps[i], rtol=1e-3, atol=1e-4)
  empty = classifier(crops[:0])
  assert [a.shape[0] for a in empty] == [0, 0, 0]
  with pytest.raises(ValueError, match="max_faces=4"):
    classifier(np.concatenate([crops, crops]))


def test_geometry_helpers():
  assert live.margin_box((10, 10, 20, 20), 0.5, (40, 35)) == (0, 0, 35, 40)
  assert live.margin_box((10, 12, 20, 10), 0.0, (100, 100)) == (10, 12, 30, 22)
  assert [live.bucket_size(n, 4) for n in (1, 2, 3, 4)] == [1, 2, 4, 4]
  assert live.bucket_size(5, 6) == 6
  crops = live.crop_faces(np.full((50, 60, 3), (0, 0, 255), np.uint8), [(0, 0, 30, 20)], 16)
  assert crops.shape == (1, 16, 16, 3) and tuple(crops[0, 0, 0]) == (255, 0, 0)  # BGR -> RGB


def test_class_names_from_config():
  def config(name, key="label", num_classes=1):
    return ml_collections.ConfigDict({"data": {"name": name, "label_key": key},
                                      "model": {"num_classes": num_classes}})
  assert runs.class_names(config("facebias_synthetic_faces/sex_64")) == ("female", "male")
  assert runs.class_names(config("facebias_celeba/aligned_64", "Male")) == ("female", "male")
  assert runs.class_names(config("facebias_synthetic_faces/faces_vs_nonfaces_64")) == (
      "non-face", "face")
  assert runs.class_names(config("facebias_face_mixture/celeba_64")) == ("non-face", "face")
  assert runs.class_names(config("x", "Smiling")) == ("not smiling", "smiling")
  assert runs.class_names(config("x", num_classes=3)) == ("class 0", "class 1", "class 2")
  assert cam_predictor.prediction_label(("female", "male"), 1, 0.934) == "male 0.93"


def test_option_and_input_errors(checkpoint, video, tmp_path):
  path, _ = video
  with pytest.raises(ValueError, match="exactly one input"):
    live.run(_config(checkpoint, video=path, camera=0))
  with pytest.raises(ValueError, match="--output=x.png"):
    live.run(_config(checkpoint, video=path, output="x.png"))
  with pytest.raises(ValueError, match="Unknown CAM method 'nope'"):
    live.run(_config(checkpoint, video=path, method="nope"))
  missing = str(tmp_path / "missing.mp4")
  with pytest.raises(FileNotFoundError, match="missing.mp4"):
    live.run(_config(checkpoint, video=missing))
  not_video = tmp_path / "notes.avi"
  not_video.write_text("not a video")
  with pytest.raises(frames.DemoInputError, match="notes.avi"):
    live.run(_config(checkpoint, video=str(not_video)))
  with pytest.raises(frames.DemoInputError, match="camera 57"):
    live.run(_config(checkpoint, camera=57))
  no_ckpt = str(tmp_path / "no_such_run")
  with pytest.raises(FileNotFoundError, match="no_such_run"):
    live.run(_config(no_ckpt, video=path))


@pytest.mark.slow
def test_script_reports_errors_without_traceback(tmp_path):
  missing = str(tmp_path / "gone.mp4")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.webcam_demo", f"--checkpoint={tmp_path}",
       f"--video={missing}", "--config.headless=True"],
      capture_output=True, text=True, env=env, timeout=120,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 1
  assert "webcam_demo: error:" in proc.stderr and "gone.mp4" in proc.stderr
  assert "Traceback" not in proc.stderr
