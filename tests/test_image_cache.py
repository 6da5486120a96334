"""The in-memory image cache of the input pipeline (``data.image_cache``, ``cache_mb``).

A cached epoch must give exactly the batches an uncached one gives (flips still drawn
per epoch), the cache must only hold what is a pure function of the stored image
(never random crops or face masks), and it must respect its memory budget.
"""

import numpy as np
import pytest

from facebias_jax.data import image_cache, pipeline, sources
import train_testlib

NAME = "facebias_synthetic_faces/tiny_cache16"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  train_testlib.prepare_tiny_dataset(data_dir, name="tiny_cache16", train=40, validation=8,
                                     test=16)
  return sources.load_source(NAME, split="train", data_dir=data_dir, prepare=False)


@pytest.fixture(autouse=True)
def fresh_caches():
  image_cache.clear()
  yield
  image_cache.clear()


def _epochs(source, *, cache_mb, image_size=8, **kwargs):
  order = np.random.default_rng(0).permutation(len(source))
  return [list(pipeline.batches(source, order, batch_size=8, image_size=image_size,
                                train=True, epoch=epoch, process_index=0, process_count=1,
                                face_masks=False, cache_mb=cache_mb, **kwargs))
          for epoch in range(2)]


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for key in ("image", "label", "index", "mask"):
      np.testing.assert_array_equal(x[key], y[key])


def test_cached_epochs_equal_uncached_ones_and_fill_the_cache(source):
  plain = _epochs(source, cache_mb=0)
  cached = _epochs(source, cache_mb=16)
  for a, b in zip(plain, cached):
    _assert_same(a, b)
  # Flips are still drawn per epoch: the two epochs differ.
  assert not np.array_equal(plain[0][0]["image"], plain[1][0]["image"])
  cache = image_cache.cache_for(sources.source_key(source), len(source), 8, 16)
  assert cache.filled.sum() == 40  # 5 batches of 8 cover the 40 examples.
  # What is cached is the resized stored image, unflipped.
  uncached = next(iter(pipeline.batches(source, [3], batch_size=1, image_size=8, train=False,
                                        process_index=0, process_count=1)))
  np.testing.assert_array_equal(cache.images[3], np.round(uncached["image"][0] * 255))


def test_no_cache_for_crops_masks_or_a_small_budget(source, monkeypatch):
  calls = []
  real = image_cache.cache_for
  monkeypatch.setattr(image_cache, "cache_for", lambda *a: calls.append(a) or real(*a))
  order = np.arange(16)
  crop = ((0.5, 1.0), (1.0, 1.0))
  for kwargs in ({"random_crop": crop, "face_masks": False},  # Crops need the stored image.
                 {"face_masks": True}):  # The tiny set has face masks.
    list(pipeline.batches(source, order, batch_size=8, image_size=8, train=True,
                          process_index=0, process_count=1, cache_mb=16, **kwargs))
  assert calls == []
  # 40 images of 8x8x3 are 7,680 bytes: a budget below that keeps nothing.
  assert image_cache.cache_for(sources.source_key(source), 40, 8, 7_000 / 2 ** 20) is None
  assert image_cache.cache_for(None, 40, 8, 16) is None  # Not a prepared dataset.


def test_caches_stay_within_the_budget_oldest_first():
  budget_mb = 3 * image_cache.image_bytes(10, 16) / 2 ** 20
  first = image_cache.cache_for(("d", "a"), 10, 16, budget_mb)
  image_cache.cache_for(("d", "b"), 10, 16, budget_mb)
  image_cache.cache_for(("d", "c"), 10, 16, budget_mb)
  assert image_cache.cache_for(("d", "a"), 10, 16, budget_mb) is first  # Still there.
  image_cache.cache_for(("d", "e"), 10, 16, budget_mb)  # Evicts the oldest, "b".
  assert image_cache.cache_for(("d", "a"), 10, 16, budget_mb) is first
  keys = [k[1] for k in image_cache._caches]  # pylint: disable=protected-access
  assert sorted(keys) == ["a", "c", "e"]


def test_get_loads_each_missing_id_once():
  cache = image_cache.ImageCache(6, 2)
  loads = []

  def load(ids):
    loads.append(ids.tolist())
    return np.stack([np.full((2, 2, 3), i, np.uint8) for i in ids])

  out = cache.get(np.array([4, 1, 4]), load)
  np.testing.assert_array_equal(out[:, 0, 0, 0], [4, 1, 4])
  out = cache.get(np.array([1, 2]), load)
  np.testing.assert_array_equal(out[:, 0, 0, 0], [1, 2])
  assert loads == [[1, 4], [2]]
