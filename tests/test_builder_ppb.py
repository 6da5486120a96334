"""``facebias_ppb``: metadata with ``\\r`` line endings, cropped/full configs, fallbacks."""

import numpy as np
from etils import epath
import pytest

from facebias_jax import imaging, runs
from facebias_jax.data import sources, synthetic
from facebias_jax.data.builders import errors
from facebias_jax.data.builders.ppb import ppb
from facebias_jax.eval import evaluate, report
import builder_fixtures as bf
import demo_fixtures as df


@pytest.mark.parametrize("ending,nested", [("\r", False), ("\r\n", True)])
def test_cropped_reads_metadata_and_counts_face_fallbacks(tmp_path, ending, nested):
  manual = bf.write_ppb(str(tmp_path / "manual"), line_ending=ending, nested=nested)
  builder = bf.prepare(ppb.FacebiasPpb, "cropped_32", str(tmp_path / "data"), manual)
  assert list(builder.info.splits) == ["test"]
  records = bf.read_split("facebias_ppb/cropped_32", "test", str(tmp_path / "data"))
  assert [r["filename"].decode() for r in records] == [row[0] for row in bf.PPB_ROWS]
  assert [int(r["Male"]) for r in records] == [1, 0, 0, 1]
  assert [int(r["skin_type"]) for r in records] == [3, 5, 2, 6]
  assert [int(r["skin"]) for r in records] == [0, 1, 0, 1]
  assert [r["country"].decode() for r in records] == ["Iceland", "Rwanda", "Finland",
                                                       "Senegal"]
  assert all(r["image"].shape == (32, 32, 3) and r["label"] == 1 for r in records)
  # Random fixture images hold no face: every one falls back and is counted.
  assert [int(r["face_found"]) for r in records] == [0, 0, 0, 0]
  assert "no face found, centre crop used: 4 image(s)" in builder.summaries["test"]


def test_full_config_keeps_aspect_with_padding(tmp_path):
  manual = bf.write_ppb(str(tmp_path / "manual"))
  bf.prepare(ppb.FacebiasPpb, "full_32", str(tmp_path / "data"), manual)
  records = bf.read_split("facebias_ppb/full_32", "test", str(tmp_path / "data"))
  first = records[0]["image"]  # 40x30 portrait -> 32x24 centred, black bars left/right.
  assert first.shape == (32, 32, 3)
  assert first[:, :3].max() <= 8 and first[:, -3:].max() <= 8 and first[:, 8:24].max() > 8
  assert all(int(r["face_found"]) == 1 for r in records)


def test_process_image_crops_the_detected_face():
  image = np.zeros((100, 80, 3), np.uint8)
  image[30:50, 20:40] = 255
  config = ppb.PpbConfig(name="t", mode="cropped", image_size=16, margin=0.0)
  out, found = ppb.process_image(image, config, detector=lambda im: (20, 30, 40, 50))
  assert found and out.min() == 255


def test_metadata_errors_name_file_and_line(tmp_path):
  manual = bf.write_ppb(str(tmp_path / "manual"), line_ending="\n")
  path = tmp_path / "manual" / "PPB-2017-metadata.csv"
  text = path.read_text().replace("0003.jpg,Female,2", "0003.jpg,Female,7")
  path.write_text(text)
  with pytest.raises(errors.AnnotationError, match=r"metadata\.csv, line 4: Fitzpatrick"):
    ppb.read_metadata(epath.Path(manual))
  path.write_text(text.replace("0003.jpg,Female,7", "0003.jpg,Female,III"))
  assert [r.skin_type for r in ppb.read_metadata(epath.Path(manual))] == [3, 5, 3, 6]
  path.unlink()
  with pytest.raises(FileNotFoundError, match="PPB-2017-metadata.csv"):
    bf.prepare(ppb.FacebiasPpb, "cropped_32", str(tmp_path / "data"), manual)


def test_reports_show_the_detection_rate_per_group(tmp_path):
  """Two lighter portraits the detector finds, two darker images it cannot: the report says
  so per group, with the accuracy on detected faces apart."""
  manual = bf.write_ppb(str(tmp_path / "manual"))
  portraits = synthetic.generate(2, seed=0, image_size=256, task="sex")["image"]
  for name, image in zip(("0001.jpg", "0003.jpg"), portraits):  # Rows 1 and 3: lighter.
    imaging.save_image(str(tmp_path / "manual" / "imgs" / name), image)
  bf.prepare(ppb.FacebiasPpb, "cropped_32", str(tmp_path / "data"), manual)
  source = sources.load_source("facebias_ppb/cropped_32", split="test",
                               data_dir=str(tmp_path / "data"))
  model, _ = runs.load_model(df.tiny_checkpoint(str(tmp_path / "run")))
  result = evaluate.evaluate_model(model, source, group_spec="skin", batch_size=4,
                                   image_size=32, normalize="unit", n_boot=20)
  detection = result["face_detection"]
  assert detection["overall"]["found"] == 2 and detection["overall"]["excluded"] == 2
  assert detection["groups"]["lighter"]["rate"] == 1.0
  assert detection["groups"]["darker"]["rate"] == 0.0
  assert detection["groups"]["darker"]["accuracy_found"] is None
  assert detection["groups"]["lighter"]["accuracy_found"] == \
      detection["groups"]["lighter"]["accuracy_all"]
  text = report.metrics_markdown(result)
  assert "## Face detection" in text and "found 2 of 4 faces" in text
  assert "| darker | 2 | 0 |" in text
