"""Tests of prediction on any images (facebias_jax.eval.predict, experiments/predict.py)."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import demo_fixtures as df
import train_testlib
from experiments.configs import predict as predict_config
from facebias_jax import imaging, runs
from facebias_jax.cam import predictor as cam_predictor
from facebias_jax.eval import predict, predict_inputs


def _config(run, **fields):
  config = predict_config.get_config()
  config.run = run
  config.update(fields)
  return config


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("photos")
  frames, _ = df.face_frames(3)
  imaging.save_image(str(root / "a.png"), frames[0])
  imaging.save_image(str(root / "nested" / "b.jpg"), frames[1])
  imaging.save_image(str(root / "c.png"), frames[2][:, :200])  # Not square.
  (root / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
  (root / "notes.txt").write_text("not an image, not listed")
  return root


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_folder_without_labels_whole_images(checkpoint, folder, tmp_path):
  out = str(tmp_path / "out")
  summary = predict.run_prediction(_config(checkpoint, images=str(folder), batch_size=2), out,
                                   progress=False)
  assert summary["num_images"] == 3 and summary["num_predictions"] == 3
  assert summary["skipped"] == [{"file": "corrupt.jpg",
                                 "reason": "the image is truncated (no end marker)"}]
  rows = _read_csv(os.path.join(out, "predictions.csv"))
  assert [r["name"] for r in rows] == ["a.png", "c.png", os.path.join("nested", "b.jpg")]
  names = runs.class_names(runs.read_config(checkpoint))
  keys = [f"p_{imaging.slug(n)}" for n in names]
  for r in rows:
    p = np.array([float(r[k]) for k in keys])
    assert np.isclose(p.sum(), 1.0, atol=1e-5) and r["label"] == "" and r["correct"] == ""
    assert int(r["predicted"]) == int(np.argmax(p)) and r["face"] == "-1"
    assert os.path.isfile(os.path.join(out, r["overlay"]))
  assert rows[0]["overlay"] == os.path.join("overlays", "a.png.png")
  assert os.path.isfile(os.path.join(out, "grid.png"))
  assert os.path.isfile(os.path.join(out, "probability_by_group.png"))
  assert summary["groups"]["all"]["n"] == 3 and summary["groups"]["all"]["accuracy"] is None


def test_probabilities_equal_the_model_on_the_centre_square(checkpoint, folder, tmp_path):
  out = str(tmp_path / "out")
  predict.run_prediction(_config(checkpoint, images=str(folder)), out, progress=False)
  row = json.load(open(os.path.join(out, "predictions.json")))[1]  # c.png, 240 x 200.
  image = imaging.load_image(str(folder / "c.png"))
  crop = imaging.crop_resize(image, (0, 20, 200, 220), 32)  # The centre square.
  run = runs.load_run(checkpoint)
  _, _, _, probs = cam_predictor.make_predictor(run.model, "auto")(
      imaging.normalize_images(crop[None], "unit"))
  np.testing.assert_allclose(row["p_male"], probs[0, 1], rtol=1e-4, atol=1e-5)


def test_labels_csv_gives_accuracy_and_groups(checkpoint, folder, tmp_path):
  labels = tmp_path / "labels.csv"
  # As a spreadsheet saves it (a byte-order mark), with a row naming no image.
  labels.write_text("\ufefffile,label,group\na.png,male,g1\nnested/b.jpg,0,g2\n"
                    "c.png,Female,g2\nmissing.png,male,g1\n", encoding="utf-8")
  out = str(tmp_path / "out")
  summary = predict.run_prediction(_config(checkpoint, images=str(folder), labels=str(labels)),
                                   out, progress=False)
  rows = json.load(open(os.path.join(out, "predictions.json")))
  assert [(r["label"], r["group"]) for r in rows] == [(1, "g1"), (0, "g2"), (0, "g2")]
  correct = [r["predicted"] == r["label"] for r in rows]
  assert summary["groups"]["all"]["accuracy"] == pytest.approx(np.mean(correct))
  assert summary["groups"]["g2"]["n"] == 2
  assert summary["input"]["labels_without_image"] == ["missing.png"]
  bad = tmp_path / "bad.csv"
  bad.write_text("file,label\na.png,cat\n")
  with pytest.raises(ValueError, match=r"bad.csv:2: label 'cat' is neither a class name"):
    predict.run_prediction(_config(checkpoint, images=str(folder), labels=str(bad)), out)


def test_video_frames_and_detected_faces(checkpoint, tmp_path):
  frames, regions = df.face_frames(5)
  video = df.write_video(str(tmp_path / "clip.avi"), frames, fps=10.0)
  out = str(tmp_path / "out")
  summary = predict.run_prediction(
      _config(checkpoint, video=video, detect_faces=True, detector="haar"), out,
      progress=False)
  assert summary["num_images"] == 5 and summary["num_predictions"] == 5
  rows = json.load(open(os.path.join(out, "predictions.json")))
  assert [r["name"] for r in rows] == [f"clip.avi#{i:06d}" for i in range(5)]
  for r, (x, y, w, h) in zip(rows, regions):
    x0, y0, x1, y1 = r["box"]
    assert x <= (x0 + x1) / 2 <= x + w and y <= (y0 + y1) / 2 <= y + h and r["face"] == 0
  assert os.path.isfile(os.path.join(out, "overlays", "clip.avi_000000_face0.png"))
  targeted = predict.run_prediction(_config(checkpoint, video=video, target=0),
                                    str(tmp_path / "target"), progress=False)
  rows0 = json.load(open(tmp_path / "target" / "predictions.json"))
  # target picks the class the map explains; the prediction stays the most probable.
  assert all(r["predicted"] == int(r["p_male"] > r["p_female"]) for r in rows0)
  assert targeted["num_predictions"] == 5
  every = predict.run_prediction(_config(checkpoint, video=video, every_nth_frame=2),
                                 str(tmp_path / "every"), progress=False)
  assert every["num_images"] == 3  # Frames 0, 2, 4.


def test_bad_options_and_inputs(checkpoint, folder, tmp_path):
  out = str(tmp_path / "out")
  with pytest.raises(ValueError, match=r"--config.hist_class=5 is not a class of this run"):
    predict.run_prediction(_config(checkpoint, images=str(folder), hist_class=5), out)
  with pytest.raises(ValueError, match="give one input"):
    predict.run_prediction(_config(checkpoint, images=str(folder), video="x.mp4"), out)
  with pytest.raises(FileNotFoundError, match="--config.images=/nope: no such folder"):
    predict.run_prediction(_config(checkpoint, images="/nope"), out)
  with pytest.raises(ValueError, match="--config.detector='yolo' is not a face detector"):
    predict.run_prediction(_config(checkpoint, images=str(folder), detector="yolo"), out)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="no .jpg/.jpeg/.png file"):
    predict.run_prediction(_config(checkpoint, images=str(empty)), out)
  blank = tmp_path / "blank"
  imaging.save_image(str(blank / "x.png"), np.full((64, 64, 3), 128, np.uint8))
  with pytest.raises(ValueError, match="without a detected face"):
    predict.run_prediction(_config(checkpoint, images=str(blank), detect_faces=True,
                                   detector="haar"), out, progress=False)


@pytest.mark.slow
def test_script_on_a_folder(checkpoint, folder, tmp_path):
  out = str(tmp_path / "out")
  proc = subprocess.run([sys.executable, "-m", "experiments.predict", f"--run={checkpoint}",
                         f"--images={folder}", f"--workdir={out}"],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert "3 predictions on 3 images" in proc.stdout
  assert "skipped corrupt.jpg: the image is truncated (no end marker)" in proc.stdout


def test_prepared_split_with_labels_and_groups(checkpoint, tmp_path):
  data_dir = str(tmp_path / "tfds")
  name = train_testlib.prepare_tiny_dataset(data_dir, name="tiny_sex_predict", task="sex",
                                            train=8, validation=0, test=16)
  out = str(tmp_path / "out")
  summary = predict.run_prediction(
      _config(checkpoint, dataset=name, split="test", data_dir=data_dir, groups="skin,Male",
              max_overlays=3), out, progress=False)
  rows = json.load(open(os.path.join(out, "predictions.json")))
  assert [r["name"] for r in rows] == [f"test/{i:06d}" for i in range(16)]
  labels = [r["label"] for r in rows]
  assert set(labels) == {0, 1} and all(r["group"].endswith(("_female", "_male")) for r in rows)
  assert all(r["group"].endswith("_male") == (r["label"] == 1) for r in rows)
  assert summary["groups"]["all"]["n_labelled"] == 16
  assert summary["groups"]["all"]["accuracy"] == pytest.approx(
      np.mean([r["predicted"] == r["label"] for r in rows]))
  assert sum("overlay" in r for r in rows) == 3  # max_overlays.


def test_split_images_grey_and_rgb_become_rgb():
  grey = [{"image": np.full((8, 8, 1), 7, np.uint8), "label": 1}]
  items = list(predict_inputs.split_inputs(grey, split="test", label_key="label",
                                    group_names=None).items)
  assert items[0].image.shape == (8, 8, 3) and items[0].name == "test/000000"
  named = [{"image": np.zeros((4, 4, 3), np.uint8), "filename": b"x/y.jpg"}]
  assert next(iter(predict_inputs.split_inputs(named, split="test", label_key="label",
                                        group_names=None).items)).name == "x/y.jpg"
