"""TFDS builder ``facebias_synthetic_faces``: the procedural biased-faces benchmark.

The images come from :func:`facebias_jax.data.synthetic.generate`, so every record
carries known attributes (skin type, sex, age, glasses...), a known face mask and,
for the faces-vs-non-faces task, non-face negatives. The bias planted in the train
split is known, which makes this a controlled benchmark as well as the data that
``make demo`` and CI run on. Nothing is downloaded.

Configs (``facebias_synthetic_faces/<config>``):

* ``faces_vs_nonfaces_64`` / ``faces_vs_nonfaces_128``: label 1 = face, 0 = non-face.
* ``sex_64`` / ``sex_128``: faces only, label 1 = ``Male``.
* ``blond_64`` / ``blond_128``: faces only, label 1 = ``Blond_Hair``, with sex as the
  spurious attribute (CelebA's Blond_Hair x Male benchmark in miniature: blond men are
  0.2% of the train split; ``BLOND_KNOBS`` makes blond a subtle tone).

Splits: ``train`` (large, imbalanced with ``synthetic.DEFAULT_KNOBS``: few darker,
skewed sex ratios), ``validation`` (same distribution as train) and ``test``
(balanced over skin lighter/darker x sex with ``balanced=True``, like PPB; the faces
task also holds non-faces; the blond task balances Blond_Hair x sex instead). Each chunk of ``chunk_size`` examples of each split
has its own seed (from ``seed``, the split and the chunk number), so memory stays
small for big splits and the data is the same whatever number of processes
renders it.

Record features: ``image`` (uint8 HxWx3), ``label`` (ClassLabel), ``mask`` (bool
HxW face mask, zlib-compressed) and every attribute as an int32 scalar (``Male``,
``Young``, ``skin_type``, ``is_face``...; -1 on non-faces), and ``skin_ita``, the
skin tone estimated from the face mask's pixels. Images are stored as raw
bytes by default (``image_encoding="raw"``): the rendered faces carry sensor noise,
so PNG saves only ~30% of the space but costs ~160-340 us to decode a 64 px image
against ~2 us for raw bytes (2-core CPU, see ``benchmarks/bench_pipeline.py``);
pick ``image_encoding="png"`` in a custom config when disk matters more.

Preparing renders chunks in ``num_workers`` processes (default: all cores) while
the main process writes ArrayRecord shards.

Custom benchmarks: pass your own config, with a *new name* (the name is the
directory the data is written to, so reusing a name would read stale data)::

  from facebias_jax.data.builders.synthetic_faces import SyntheticFacesConfig
  config = SyntheticFacesConfig(
      name="darker5_64", task="faces_vs_nonfaces", image_size=64,
      knobs={"darker_fraction": 0.05}, sizes={"train": 50_000})
  builder = tfds.builder("facebias_synthetic_faces", config=config,
                         data_dir="~/tensorflow_datasets")
  builder.download_and_prepare()
  # or: pipeline.load_source("facebias_synthetic_faces", split="train",
  #                          builder_kwargs={"config": config})

Once prepared, the data reads back by name (``facebias_synthetic_faces/darker5_64``)
from the same ``data_dir`` in any process. ``knobs`` are the keyword arguments of
``synthetic.generate`` (``darker_fraction``, ``male_fraction_lighter``,
``male_fraction_darker``, ``young_fraction``, ``face_fraction``); ``sizes`` maps
split names to example counts (missing splits keep the defaults).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
from typing import Any, Iterator, Mapping

import cv2
import numpy as np
import tensorflow_datasets as tfds

from facebias_jax import imaging
from facebias_jax.data import synthetic

SKIN_ITA = "skin_ita"

TASKS = synthetic.TASKS
DEFAULT_SIZES = {"train": 20_000, "validation": 2_000, "test": 4_000}
# Split ids feed the seed: each split is an independent draw.
_SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
_LABEL_NAMES = {"faces_vs_nonfaces": ["non_face", "face"], "sex": ["female", "male"],
                "blond": ["not_blond", "blond"]}
# The spurious-correlation benchmark (task blond): blond hair is a subtler cue than sex,
# blond men are 0.4% of the faces; a validation split large enough to hold ~40 of them
# (model selection by the worst group needs the group in the validation split).
# Blond among 0.4% of men (40 of the 20,000 training faces): with 1% ERM's worst group
# stayed within a few points of the robust methods' (docs/methods.md); rarer, the
# shortcut costs it what it costs on CelebA.
BLOND_KNOBS = {"blond_contrast": 0.3, "blond_fraction_male": 0.004}
BLOND_SIZES = {"validation": 10_000}
IMAGE_ENCODINGS = ("raw", "png")


@dataclasses.dataclass(eq=False)
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  """One variant of the synthetic benchmark.

  Attributes:
    task: ``"faces_vs_nonfaces"``, ``"sex"`` or ``"blond"`` (label Blond_Hair; the
      test split is then balanced over Blond_Hair x sex).
    image_size: side of the square images, in pixels.
    knobs: overrides of ``synthetic.DEFAULT_KNOBS`` for the train and validation
      splits (the test split always uses ``balanced=True`` on top of them).
    sizes: examples per split, ``{"train": n, "validation": n, "test": n}``;
      missing entries keep ``DEFAULT_SIZES``; a size of 0 drops the split.
    seed: base seed; each split and chunk derives its own from it.
    chunk_size: examples generated at once (bounds memory while preparing).
    image_encoding: ``"raw"`` (fastest to read) or ``"png"`` (smaller on disk).
    num_workers: processes rendering chunks while preparing; 0 = all cores,
      1 = render in the preparing process (also the case when the main program
      is a plain ``python script.py``, see ``_spawn_is_safe``).
  """

  task: str = "faces_vs_nonfaces"
  image_size: int = 64
  knobs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)
  seed: int = 0
  chunk_size: int = 1000
  image_encoding: str = "raw"
  num_workers: int = 0

  def __post_init__(self):
    if self.task not in TASKS:
      raise ValueError(f"SyntheticFacesConfig {self.name!r}: task={self.task!r} is not "
                       f"one of {TASKS}.")
    if int(self.image_size) < 8:
      raise ValueError(f"SyntheticFacesConfig {self.name!r}: image_size={self.image_size} "
                       "is too small; use at least 8 pixels.")
    unknown = set(self.sizes) - set(_SPLIT_IDS)
    if unknown:
      raise ValueError(f"SyntheticFacesConfig {self.name!r}: unknown split(s) "
                       f"{sorted(unknown)} in sizes; valid splits are {sorted(_SPLIT_IDS)}.")
    if any(int(n) < 0 for n in self.sizes.values()):
      raise ValueError(f"SyntheticFacesConfig {self.name!r}: split sizes must be >= 0, "
                       f"got {dict(self.sizes)}.")
    if "balanced" in self.knobs:
      raise ValueError(f"SyntheticFacesConfig {self.name!r}: 'balanced' is not a knob "
                       "here; the test split is balanced and train/validation are not.")
    if self.image_encoding not in IMAGE_ENCODINGS:
      raise ValueError(f"SyntheticFacesConfig {self.name!r}: image_encoding="
                       f"{self.image_encoding!r} is not one of {IMAGE_ENCODINGS}.")
    if int(self.num_workers) < 0:
      raise ValueError(f"SyntheticFacesConfig {self.name!r}: num_workers must be >= 0.")
    if int(self.chunk_size) < 1:
      raise ValueError(f"SyntheticFacesConfig {self.name!r}: chunk_size must be >= 1.")
    if self.description is None:
      self.description = (f"task={self.task}, {self.image_size}x{self.image_size} px, "
                          f"knobs={dict(self.knobs)}, sizes={self.split_sizes()}")

  def split_sizes(self) -> dict[str, int]:
    """Examples per split, defaults filled in, empty splits dropped."""
    sizes = {**DEFAULT_SIZES, **{k: int(v) for k, v in self.sizes.items()}}
    return {k: v for k, v in sizes.items() if v > 0}


def _make_configs() -> list[SyntheticFacesConfig]:
  return [SyntheticFacesConfig(name=f"{task}_{size}", task=task, image_size=size,
                               knobs=BLOND_KNOBS if task == "blond" else {},
                               sizes=BLOND_SIZES if task == "blond" else {})
          for task in TASKS for size in (64, 128)]


def chunk_seed(base_seed: int, split: str, chunk: int) -> int:
  """Seed of one chunk of one split: independent streams, stable across runs."""
  state = np.random.SeedSequence([int(base_seed), _SPLIT_IDS[split], int(chunk)])
  return int(state.generate_state(1, dtype=np.uint32)[0])


def attribute_names(config: SyntheticFacesConfig) -> list[str]:
  """Attribute names the generator emits for this config, in a stable order."""
  sample = synthetic.generate(2, seed=0, image_size=config.image_size,
                                 task=config.task, **dict(config.knobs))
  return sorted(sample["attributes"])


def _image_feature(size: int, encoding: str) -> tfds.features.FeatureConnector:
  if encoding == "png":
    return tfds.features.Image(shape=(size, size, 3), encoding_format="png")
  return tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8,
                              encoding=tfds.features.Encoding.BYTES)


def encode_png(image_rgb: np.ndarray) -> bytes:
  """PNG bytes of an RGB uint8 image (OpenCV: much faster than TFDS's TF encoder)."""
  ok, buf = cv2.imencode(".png", np.ascontiguousarray(image_rgb[..., ::-1]))
  if not ok:
    raise RuntimeError(f"cv2.imencode failed on an image of shape {image_rgb.shape}.")
  return buf.tobytes()


def generate_chunk(task: str, image_size: int, knobs: Mapping[str, Any], count: int,
                   seed: int, image_encoding: str) -> list[dict]:
  """Renders one chunk and returns its records ready for the TFDS writer.

  A top-level function so worker processes can run it.
  """
  data = synthetic.generate(count, seed=seed, image_size=image_size, task=task, **knobs)
  attributes = {name: np.asarray(values, np.int32)
                for name, values in data["attributes"].items()}
  records = []
  for i in range(count):
    image = np.ascontiguousarray(data["image"][i], dtype=np.uint8)
    record = {"image": encode_png(image) if image_encoding == "png" else image,
              "label": int(data["label"][i]),
              "mask": np.asarray(data["mask"][i], dtype=np.bool_)}
    for name, values in attributes.items():
      record[name] = values[i]
    # Estimated from the pixels, as on real photographs (the exact type is skin_type).
    record[SKIN_ITA] = np.float32(imaging.ita_degrees(image, data["mask"][i])
                                  if attributes["is_face"][i] == 1 else np.nan)
    records.append(record)
  return records


def _spawn_is_safe() -> bool:
  """Whether spawned workers can start without re-running the main script.

  A spawned process re-imports ``__main__``: safe when it was started with
  ``python -m`` (a module, which absl entry points guard) or interactively (no
  file); a plain ``python script.py`` may lack the ``__name__`` guard, and then
  every worker would prepare the dataset again, so we render in-process instead.
  """
  main = sys.modules.get("__main__")
  return getattr(main, "__spec__", None) is not None or not hasattr(main, "__file__")


def _ordered_map(fn, jobs: list[tuple], num_workers: int) -> Iterator[Any]:
  """``fn(*job)`` for each job, in order, with at most 2 jobs per worker in flight.

  Workers are spawned, not forked: the preparing process may hold TensorFlow's
  or JAX's threads, which do not survive a fork.
  """
  # Starting spawned workers costs ~1-2 s: only worth it for splits of many chunks.
  if num_workers <= 1 or len(jobs) <= 2 * num_workers or not _spawn_is_safe():
    for job in jobs:
      yield fn(*job)
    return
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
    pending = collections.deque()
    for job in jobs:
      pending.append(pool.submit(fn, *job))
      if len(pending) >= 2 * num_workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


class FacebiasSyntheticFaces(tfds.core.GeneratorBasedBuilder):
  """The synthetic biased-faces benchmark (procedural, no download)."""

  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "skin_ita: the skin tone estimated from the pixels of the face "
                            "mask (Individual Typology Angle).",
                   "1.2.0": "blond_*: blond among 0.4% of men (was 1%)."}
  BUILDER_CONFIGS = _make_configs()
  DEFAULT_BUILDER_CONFIG_NAME = "faces_vs_nonfaces_64"

  def __init__(self, *, file_format=None, **kwargs):
    # ArrayRecord by default: the grain pipeline needs random access
    # (tfds.data_source), which TFRecord does not give.
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    size = int(config.image_size)
    features = {
        "image": _image_feature(size, config.image_encoding),
        "label": tfds.features.ClassLabel(names=_LABEL_NAMES[config.task]),
        "mask": tfds.features.Tensor(shape=(size, size), dtype=np.bool_,
                                     encoding=tfds.features.Encoding.ZLIB),
    }
    for name in attribute_names(config):
      features[name] = tfds.features.Scalar(dtype=np.int32)
    features[SKIN_ITA] = tfds.features.Scalar(dtype=np.float32)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        supervised_keys=("image", "label"),
        # Records keep generation order: the data is i.i.d. already and the
        # samplers shuffle; skipping TFDS's shuffle makes preparing faster.
        disable_shuffling=True,
        homepage="https://github.com/facebias-jax/facebias_jax",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Procedural: nothing to download.
    return {split: self._generate_examples(split, num)
            for split, num in self.builder_config.split_sizes().items()}

  def _generate_examples(self, split: str, num: int) -> Iterator[tuple[int, dict]]:
    config = self.builder_config
    knobs = dict(config.knobs)
    if split == "test":
      knobs["balanced"] = True
    chunk = int(config.chunk_size)
    jobs = [(config.task, int(config.image_size), knobs, min(chunk, num - start),
             chunk_seed(config.seed, split, chunk_id), config.image_encoding)
            for chunk_id, start in enumerate(range(0, num, chunk))]
    workers = int(config.num_workers) or (os.cpu_count() or 1)
    key = 0
    for records in _ordered_map(generate_chunk, jobs, workers):
      for record in records:
        yield key, record
        key += 1
