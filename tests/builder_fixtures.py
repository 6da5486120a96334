"""Tiny on-disk fixtures in the official formats of CelebA, PPB, UTKFace and FairFace.

Used by ``tests/test_builder_*.py``: each writer makes a handful of small images with
OpenCV into a folder, plus the annotation files exactly as the datasets ship them,
so the real builders run end to end without the real data.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import tensorflow_datasets as tfds

from facebias_jax.data.builders.celeba import celeba

# CelebA image names and partitions used by the fixture (0 train, 1 val, 2 test).
CELEBA_PARTITION = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 0,
                    "000004.jpg": 1, "000005.jpg": 2, "000006.jpg": 2}
MALE_ROWS = {"000001.jpg", "000003.jpg", "000005.jpg"}


def write_image(path: str, *, shape=(24, 20), seed: int = 0, ext=None) -> str:
  """Writes a random-ish RGB image (JPEG or PNG by extension) and returns its path."""
  rng = np.random.default_rng(seed)
  h, w = shape
  image = np.zeros((h, w, 3), np.uint8)
  image[...] = rng.integers(0, 255, 3, dtype=np.uint8)
  image[h // 4:3 * h // 4, w // 4:3 * w // 4] = 255 - image[0, 0]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if not cv2.imwrite(path, image):
    raise OSError(path)
  return path


def truncate(path: str) -> None:
  """Cuts an image file in half, as an interrupted download leaves it."""
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])


def celeba_attr_values(name: str) -> list[int]:
  """-1/1 attribute values of a fixture image: ``Male`` per MALE_ROWS, index parity."""
  idx = int(name[:6])
  values = [1 if (i + idx) % 3 == 0 else -1 for i in range(len(celeba.ATTRIBUTES))]
  values[celeba.ATTRIBUTES.index("Male")] = 1 if name in MALE_ROWS else -1
  return values


def landmarks_of(name: str) -> list[int]:
  """Aligned-frame landmarks of a fixture image (x,y for 5 points)."""
  idx = int(name[:6])
  return [69 + idx, 111, 108, 112, 88, 134, 72, 152, 105, 152]


def write_celeba(root: str, *, csv: bool = False, kaggle_nested: bool = False,
                 with_identity: bool = True) -> str:
  """Writes a 6-image CelebA in the official txt layout (or Kaggle's csv layout)."""
  names = sorted(CELEBA_PARTITION)
  image_dir = os.path.join(root, "img_align_celeba")
  if kaggle_nested:
    image_dir = os.path.join(image_dir, "img_align_celeba")
  for i, name in enumerate(names):
    write_image(os.path.join(image_dir, name), shape=celeba.ALIGNED_HW, seed=i)
  if csv:
    with open(os.path.join(root, "list_attr_celeba.csv"), "w") as f:
      f.write("image_id," + ",".join(celeba.ATTRIBUTES) + "\n")
      for name in names:
        f.write(name + "," + ",".join(map(str, celeba_attr_values(name))) + "\n")
    with open(os.path.join(root, "list_eval_partition.csv"), "w") as f:
      f.write("image_id,partition\n")
      f.writelines(f"{n},{p}\n" for n, p in CELEBA_PARTITION.items())
    with open(os.path.join(root, "list_landmarks_align_celeba.csv"), "w") as f:
      f.write("image_id," + ",".join(celeba.LANDMARKS) + "\n")
      for name in names:
        f.write(name + "," + ",".join(map(str, landmarks_of(name))) + "\n")
  else:
    with open(os.path.join(root, "list_attr_celeba.txt"), "w") as f:
      f.write(f"{len(names)}\n" + " ".join(celeba.ATTRIBUTES) + " \n")
      for name in names:
        # The official file pads the values: "000001.jpg -1  1  1 -1 ...".
        f.write(name + " " + " ".join(f"{v:2d}" for v in celeba_attr_values(name)) + "\n")
    with open(os.path.join(root, "list_eval_partition.txt"), "w") as f:
      f.writelines(f"{n} {p}\n" for n, p in CELEBA_PARTITION.items())
    with open(os.path.join(root, "list_landmarks_align_celeba.txt"), "w") as f:
      f.write(f"{len(names)}\n" + "  ".join(celeba.LANDMARKS) + "\n")
      for name in names:
        f.write(name + "   " + "   ".join(f"{v:3d}" for v in landmarks_of(name)) + "\n")
  if with_identity:
    with open(os.path.join(root, "identity_CelebA.txt"), "w") as f:
      f.writelines(f"{n} {100 + i}\n" for i, n in enumerate(names))
  return root


def prepare(builder_cls, config: str, data_dir: str, manual_dir: str, **kwargs):
  """Prepares ``builder_cls/config`` from ``manual_dir`` into ``data_dir``."""
  builder = builder_cls(config=config, data_dir=data_dir, **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def read_split(name: str, split: str, data_dir: str) -> list[dict]:
  """All records of a prepared split, read back through ``tfds.data_source``."""
  source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  return [source[i] for i in range(len(source))]


# PPB: (file, gender, Fitzpatrick type, skin color, country).
PPB_ROWS = [("0001.jpg", "male", "3", "lighter", "Iceland"),
            ("0002.jpg", "female", "5", "darker", "Rwanda"),
            ("0003.jpg", "Female", "2", "lighter", "Finland"),
            ("0004.jpg", "Male", "6", "darker", "Senegal")]


def write_ppb(root: str, *, line_ending: str = "\r", nested: bool = False) -> str:
  """Writes PPB-2017-metadata.csv (``\\r``-only endings by default) and imgs/."""
  base = os.path.join(root, "PPB-2017") if nested else root
  for i, (name, *_rest) in enumerate(PPB_ROWS):
    write_image(os.path.join(base, "imgs", name), shape=(40 + 10 * i, 30), seed=i)
  lines = ["id,file,gender,numeric,skin color,country"]
  lines += [f"{i + 1},{','.join(row)}" for i, row in enumerate(PPB_ROWS)]
  os.makedirs(base, exist_ok=True)
  with open(os.path.join(base, "PPB-2017-metadata.csv"), "w", newline="") as f:
    f.write(line_ending.join(lines) + line_ending)
  return root


# UTKFace: (age, gender, race) of the well-formed fixture files.
UTK_LABELS = [(25, 0, 2), (3, 1, 0), (61, 1, 4), (44, 0, 1), (30, 1, 3), (19, 0, 0)]
UTK_MALFORMED = ["39_1_20170116174525125.jpg.chip.jpg", "notes_about_faces.jpg"]


def utk_name(i: int, age: int, gender: int, race: int) -> str:
  return f"{age}_{gender}_{race}_2017011617452{i:04d}.jpg.chip.jpg"


def write_utkface(root: str) -> str:
  """Writes UTKFace/ with well-formed and malformed file names."""
  folder = os.path.join(root, "UTKFace")
  for i, labels in enumerate(UTK_LABELS):
    write_image(os.path.join(folder, utk_name(i, *labels)), shape=(20, 20), seed=i)
  for i, name in enumerate(UTK_MALFORMED):
    write_image(os.path.join(folder, name), shape=(20, 20), seed=50 + i)
  return root


FAIRFACE_ROWS = {
    "train": [("train/1.jpg", "20-29", "Male", "East Asian", "True"),
              ("train/2.jpg", "more than 70", "Female", "Latino_Hispanic", "False"),
              ("train/3.jpg", "3-9", "Female", "Black", "True")],
    "validation": [("val/1.jpg", "40-49", "Male", "Middle Eastern", "False"),
                   ("val/2.jpg", "30-39", "Female", "White", "True")],
}


def write_fairface(root: str, *, image_folder: str = "") -> str:
  """Writes the two label CSVs and the images they name."""
  files = {"train": "fairface_label_train.csv", "validation": "fairface_label_val.csv"}
  os.makedirs(root, exist_ok=True)
  for split, rows in FAIRFACE_ROWS.items():
    with open(os.path.join(root, files[split]), "w") as f:
      f.write("file,age,gender,race,service_test\n")
      f.writelines(",".join(row) + "\n" for row in rows)
    for i, row in enumerate(rows):
      write_image(os.path.join(root, image_folder, row[0]), shape=(22, 22), seed=i)
  return root


def write_negatives(root: str, *, split_dirs: bool = False, count: int = 6) -> str:
  """Writes non-face images (JPEG and PNG, in sub-folders)."""
  for i in range(count):
    sub = ("train" if i % 2 == 0 else "test") if split_dirs else ""
    ext = ".png" if i % 3 == 0 else ".jpg"
    write_image(os.path.join(root, sub, f"class{i % 2}", f"img{i}{ext}"), shape=(30, 40),
                seed=100 + i)
  return root
