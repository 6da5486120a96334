r"""Predictions and CAMs of a trained run on any images: the defaults of ``predict``.

``facebias_jax.eval.predict.run_prediction`` takes this ConfigDict. One input:
``images`` (a folder, read recursively), ``video``, or neither for a prepared dataset
split (``dataset``/``split``/``groups`` default to the run's own config)::

  python -m experiments.predict --run=workdirs/resnet18_sex --images=~/photos \
      --workdir=workdirs/predict_photos
  python -m experiments.predict --run=workdirs/resnet18_sex --video=clip.mp4 \
      --config.detect_faces=True --config.every_nth_frame=5 --workdir=workdirs/clip
  python -m experiments.predict --run=workdirs/resnet18_sex --config.split=test \
      --workdir=workdirs/predict_test

Fields: ``run`` (``--run``), ``step``; the input (``images``, ``labels`` = a CSV with
``file`` and optional ``label`` and ``group`` columns for a folder, ``video`` and
``every_nth_frame``, or the dataset fields); ``detect_faces`` (False: the whole image's
centre square, as the model was trained on face crops; True: every face found by
``detector``, each box grown by ``margin`` per side, at most ``max_faces`` per image,
none smaller than ``min_face_size`` px; ``max_side`` and ``upsample`` are the
detector's, see ``facebias_jax.faces.detect_faces``: the CNN looks at images shrunk to
384 px and finds faces of about 80 px there, so for group photos with small faces set
``upsample=1`` or a larger ``max_side``); ``method`` (``auto`` = ``cam`` for GAP +
linear heads, else ``gradcam``), ``target`` (class explained; default the prediction);
``max_images`` (0 = all), ``max_overlays`` (overlay files written), ``grid_size``,
``batch_size``, ``image_format`` and ``hist_class`` (the class whose probability the
per-group histogram shows; default 1, e.g. P(Male)).
"""

import ml_collections

from experiments.configs.common import add_run_fields, optional
from facebias_jax import faces


def get_config() -> ml_collections.ConfigDict:
  """The prediction defaults (see the module docstring)."""
  config = add_run_fields(ml_collections.ConfigDict())
  config.images = optional(str)
  config.labels = optional(str)
  config.video = optional(str)
  config.every_nth_frame = 1
  config.detect_faces = False
  config.detector = faces.DEFAULT_DETECTOR
  config.margin = 0.25
  config.max_faces = 4
  config.min_face_size = 24
  config.max_side = optional(int)
  config.upsample = optional(int)
  config.method = "auto"
  config.target = optional(int)
  config.max_images = 0
  config.max_overlays = 500
  config.grid_size = 36
  config.batch_size = 32
  config.image_format = "png"
  config.hist_class = 1
  return config
