"""``facebias_ppb``: metadata with ``\\r`` line endings, cropped/full configs, fallbacks."""

import numpy as np
from etils import epath
import pytest

from facebias_jax.data.builders import errors
from facebias_jax.data.builders.ppb import ppb
import builder_fixtures as bf


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
