r"""Live demo defaults: faces found, classified and explained (CAM) frame by frame.

``facebias_jax.demo.live.run`` takes this ConfigDict. Exactly one input: ``camera``
(``--camera``), ``video`` (``--video``) or ``image`` (``--image``); ``output``
(``--output``) writes the annotated video (same fps and frame count) or image::

  python -m experiments.webcam_demo --run=workdirs/resnet18_sex --camera=0
  python -m experiments.webcam_demo --run=workdirs/resnet18_sex --video=in.mp4 \
      --output=out.mp4 --config.headless=True
  python -m experiments.webcam_demo --run=workdirs/resnet18_sex --image=photo.jpg \
      --output=annotated.png --config.headless=True --config.method=gradcam

Fields: ``run`` (``--run``/``--checkpoint``), ``step``; the input and ``output``;
``headless`` (no window); ``method`` (``auto`` = ``cam`` for GAP + linear heads, else
``gradcam``); ``margin`` (each face box grows by this fraction per side before
cropping: the models saw whole heads), ``max_faces`` (largest faces per frame),
``alpha`` (heatmap weight), ``class_names`` (comma-separated; default from the run),
``max_frames`` (0 = until the input ends or ``q``), ``warmup`` (compile every batch
size before the first frame); ``whole_image`` (classify the whole frame, centre-cropped
to a square, without detecting faces: for inputs that are face crops already);
``detector``: ``name`` (``haar``, the default here for its frame rate, or ``cnn`` /
``hog``: better recall, ``docs/face_detection.md``), the Haar cascade's
``scale_factor`` and ``min_neighbors``, ``min_face_size`` and ``max_side`` (detect on
the frame shrunk to this longer side, 0 = full size: faster, misses small faces).
"""

import ml_collections

from experiments.configs.common import add_run_fields, optional
from facebias_jax import faces
from facebias_jax.demo import live


def get_config() -> ml_collections.ConfigDict:
  """The demo defaults (see the module docstring)."""
  config = add_run_fields(ml_collections.ConfigDict(), data=False)
  config.camera = optional(int)
  config.video = optional(str)
  config.image = optional(str)
  config.output = optional(str)
  config.headless = False
  config.method = "auto"
  config.margin = 0.25
  config.max_faces = 4
  config.alpha = 0.45
  config.class_names = optional(str)
  config.max_frames = 0
  config.warmup = True
  config.whole_image = False

  config.detector = ml_collections.ConfigDict()
  config.detector.name = live.LIVE_DETECTOR
  config.detector.scale_factor = faces.DEFAULT_SCALE_FACTOR
  config.detector.min_neighbors = faces.DEFAULT_MIN_NEIGHBORS
  config.detector.min_face_size = faces.DEFAULT_MIN_SIZE[0]
  config.detector.max_side = 0
  return config
