"""Tests of the CAM export study (facebias_jax.eval.cam_export, cam.predictor)."""

import json
import os

import numpy as np
import pytest

import demo_fixtures as df
from facebias_jax import imaging
from experiments.configs import export_cam as export_config
from facebias_jax.cam import predictor as cam_predictor
from facebias_jax.data.builders.synthetic_faces import SyntheticFacesConfig
from facebias_jax.eval import cam_export as export_lib

SIZES = {"train": 8, "validation": 8, "test": 24}  # the test split is balanced (6 per group)


def _synthetic_config():
  return SyntheticFacesConfig(name="tiny_sex32", task="sex", image_size=32, sizes=SIZES,
                              chunk_size=24, num_workers=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp("export")
  data_dir = str(root / "tfds")
  config = df.tiny_config(image_size=32)
  config.data.data_dir = data_dir
  checkpoint = df.tiny_checkpoint(str(root / "ckpt"), config)
  synthetic = _synthetic_config()
  workdir = str(root / "out")
  summary = export_lib.export_cam(
      _config(checkpoint, groups="skin,Male", max_images=12), workdir, progress=False,
      builder_kwargs={"config": synthetic})
  return summary, workdir, checkpoint


def _config(run, **fields):
  config = export_config.get_config()
  config.run, config.dataset, config.split, config.batch_size = (
      run, "facebias_synthetic_faces", "test", 8)
  config.update(fields)
  return config


def test_export_writes_every_artifact(exported):
  summary, workdir, _ = exported
  assert summary["method"] == "cam" and summary["aligned"]
  assert summary["num_images"] == 12 and summary["step"] == 0
  # Balanced selection: 3 images of each of the 4 skin x sex groups.
  assert summary["groups"] == {"darker_female": 3, "darker_male": 3, "lighter_female": 3,
                               "lighter_male": 3}
  for group, n in summary["groups"].items():
    files = os.listdir(os.path.join(workdir, "overlays", group))
    assert len(files) == n and all(f.endswith(".png") for f in files)
    assert os.path.exists(os.path.join(workdir, "grids", f"{group}.png"))
  pair = imaging.load_image(os.path.join(workdir, "overlays", "darker_male",
                                         sorted(os.listdir(os.path.join(
                                             workdir, "overlays", "darker_male")))[0]))
  assert pair.shape[1] > 2 * 128  # original + overlay, upscaled to >= 128 px each
  assert os.path.exists(os.path.join(workdir, "group_mean_cam.png"))
  for name in ("face_energy.md", "face_energy.json", "face_energy.png", "cam_export.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "face_energy.json")) as f:
    energy = json.load(f)
  assert energy["region"] == "synthetic face mask"
  assert set(energy["groups"]) == set(summary["groups"])
  for row in energy["groups"].values():
    assert 0.0 <= row["mean"] <= 1.0 and row["n"] == 3
  table = open(os.path.join(workdir, "face_energy.md")).read()
  assert "| darker_female | 3 |" in table
  with open(os.path.join(workdir, "cam_export.json")) as f:
    saved = json.load(f)
  assert len(saved["images"]) == 12
  assert all(0.5 <= r["probability"] <= 1.0 for r in saved["images"])


def test_one_group_and_errors(exported, tmp_path):
  _, _, checkpoint = exported
  kwargs = dict(progress=False, builder_kwargs={"config": _synthetic_config()})
  summary = export_lib.export_cam(
      _config(checkpoint, group="darker_female", method="gradcam", image_format="jpg"),
      str(tmp_path / "one"), **kwargs)
  assert summary["groups"] == {"darker_female": 6} and summary["method"] == "gradcam"
  assert os.path.exists(tmp_path / "one" / "grids" / "darker_female.jpg")
  bad = str(tmp_path / "bad")
  with pytest.raises(ValueError, match="lighter_male"):
    export_lib.export_cam(_config(checkpoint, group="purple"), bad, **kwargs)
  with pytest.raises(ValueError, match="Unknown CAM method"):
    export_lib.export_cam(_config(checkpoint, method="nope"), bad, **kwargs)
  with pytest.raises(ValueError, match="image_format"):
    export_lib.export_cam(_config(checkpoint, image_format="gif"), bad, **kwargs)
  with pytest.raises(FileNotFoundError, match="no_run"):
    export_lib.export_cam(_config(str(tmp_path / "no_run")), bad, **kwargs)
  with pytest.raises(ValueError, match="--run=WORKDIR"):
    export_lib.export_cam(_config(None), bad, **kwargs)


def test_landmark_face_mask_is_an_ellipse_on_the_face():
  # CelebA-like landmarks on a 64 px crop: eyes, nose, mouth corners.
  pts = np.array([[22, 26], [42, 26], [32, 36], [24, 46], [40, 46]], np.float32)
  mask = export_lib.landmark_face_mask(pts, (64, 64))
  assert mask.dtype == bool and mask.shape == (64, 64)
  for x, y in pts.astype(int):
    assert mask[y, x]
  assert not mask[0, 0] and not mask[63, 63] and not mask[2, 32]  # corners, hair line
  assert 0.2 < mask.mean() < 0.6
  batch = export_lib.landmark_face_mask(np.stack([pts, pts + 5]), (64, 64))
  assert batch.shape == (2, 64, 64) and batch[1, 31 + 5, 32 + 5]
  with pytest.raises(ValueError, match="missing"):
    export_lib.landmark_face_mask(np.full((5, 2), -1.0), (64, 64))


def test_select_indices_balances_groups():
  names = np.array(["a"] * 10 + ["b"] * 2 + ["unknown"] * 5)
  picked = export_lib.select_indices(names, max_images=6, seed=0)
  assert len(picked) == 6 and sum(names[picked] == "b") == 2
  assert "unknown" not in set(names[picked])
  assert len(export_lib.select_indices(names, max_images=0)) == 12
  np.testing.assert_array_equal(export_lib.select_indices(names, max_images=6, seed=1),
                                export_lib.select_indices(names, max_images=6, seed=1))


def test_energy_table_and_plot(tmp_path):
  energy = {"darker_female": {"mean": 0.4, "std": 0.1, "sem": 0.05, "n": 4},
            "lighter_male": {"mean": 0.8, "std": 0.1, "sem": 0.05, "n": 4}}
  md = cam_predictor.energy_markdown(energy, method="cam", region="mask")
  assert "| darker_female | 4 | 0.400 | 0.100 | 0.050 |" in md
  path = cam_predictor.plot_energy(energy, str(tmp_path / "e.png"))
  assert imaging.load_image(path).shape[2] == 3
