"""Tests for facebias_jax.eval.detection: windows, crop-resize and the PPB protocol."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facebias_jax import models
from facebias_jax.eval import detection


class WhitePatchModel(nnx.Module):
  """Toy classifier: the logit is high only when the whole input window is white."""

  def __init__(self, num_logits=1):
    self.num_logits = num_logits

  def __call__(self, images):
    score = 20.0 * jnp.mean(images, axis=(1, 2, 3)) - 10.0  # +10 all white, -10 all black
    logits = score[:, None] if self.num_logits == 1 else jnp.stack([-score / 2, score / 2], axis=1)
    return logits, {}


def _images_with_patch(n, size=32, patch=8, locations=()):
  images = np.zeros((n, size, size, 3), np.float32)
  for i, (y, x) in enumerate(locations):
    images[i, y:y + patch, x:x + patch] = 1.0
  return images


def test_window_boxes_cover_image():
  boxes = detection.window_boxes(32, 40, scales=(1.0, 0.5), stride_frac=0.5)
  assert boxes.dtype == np.int32 and boxes.shape[1] == 4
  assert set(map(int, boxes[:, 2])) == {32, 16}
  big = boxes[boxes[:, 2] == 32]
  assert sorted(big[:, 1].tolist()) == [0, 8]  # stride 16 would stop at 0; flush with the border.
  small = boxes[boxes[:, 2] == 16]
  assert small[:, 0].max() + 16 == 32 and small[:, 1].max() + 16 == 40
  assert len({tuple(b) for b in boxes.tolist()}) == len(boxes)
  assert detection.num_windows(32, 40, scales=(1.0, 0.5), stride_frac=0.5) == len(boxes)
  with pytest.raises(ValueError, match="scales must be in"):
    detection.window_boxes(32, 32, scales=(1.5,), stride_frac=0.5)


def test_crop_resize_exact_on_integer_grid():
  crop_resize = jax.jit(detection.crop_resize, static_argnums=2)  # eager would compile op by op
  image = jnp.arange(16 * 16 * 3, dtype=jnp.float32).reshape(16, 16, 3)
  crop = crop_resize(image, jnp.array([4, 6, 8, 8]), 8)  # same size: a pure crop
  np.testing.assert_allclose(crop, image[4:12, 6:14], atol=1e-3)
  flat = jnp.ones((16, 16, 3))
  np.testing.assert_allclose(crop_resize(flat, jnp.array([0, 0, 16, 16]), 4), 1.0, atol=1e-5)


@pytest.mark.parametrize("num_logits", [1, 2])
def test_detect_known_answer(num_logits):
  images = _images_with_patch(5, locations=[(10, 18), (0, 0), (24, 24)])  # images 3, 4: no patch
  out = detection.detect(WhitePatchModel(num_logits), images, input_size=8, scales=(0.5, 0.25),
                         stride_frac=0.25, threshold=0.0, batch_size=64)  # 2 images per call + pad
  assert out["is_face"].tolist() == [True, True, True, False, False]
  np.testing.assert_allclose(out["max_logit"][:3], 10.0, atol=1e-3)
  np.testing.assert_allclose(out["max_logit"][3:], -10.0, atol=1e-3)
  assert out["best_box"][:3].tolist() == [[10, 18, 8, 8], [0, 0, 8, 8], [24, 24, 8, 8]]
  assert (out["num_windows"] == detection.num_windows(32, 32, scales=(0.5, 0.25), stride_frac=0.25)).all()


def test_detect_threshold_uint8_and_mixed_sizes():
  images = _images_with_patch(2, locations=[(4, 4)])
  high = detection.detect(WhitePatchModel(), images, input_size=8, scales=(0.25,), stride_frac=0.5,
                          threshold=10.5)
  assert not high["is_face"].any()  # the best logit is 10: above 10.5 nothing is a face
  as_uint8 = detection.detect(WhitePatchModel(), (images * 255).astype(np.uint8), input_size=8,
                              scales=(0.25,), stride_frac=0.5)
  assert as_uint8["is_face"].tolist() == [True, False]
  big = np.zeros((48, 48, 3), np.float32)
  big[30:42, 6:18] = 1.0
  mixed = detection.detect(WhitePatchModel(), [images[0], big, images[1]], input_size=8,
                           scales=(0.25,), stride_frac=0.5)
  assert mixed["is_face"].tolist() == [True, True, False]
  assert mixed["best_box"][1].tolist() == [30, 6, 12, 12]


def test_binary_logit_rejects_multiclass():
  with pytest.raises(ValueError, match="binary"):
    models.binary_logit(jnp.zeros((2, 3)))
