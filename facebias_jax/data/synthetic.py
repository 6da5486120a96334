"""Synthetic biased-faces benchmark: procedurally drawn faces with known attributes.

The embedded default dataset of the project (DESIGN.md, "Data the project cannot
download"). Every image is drawn with OpenCV primitives from a per-example random
stream, so the ground truth is exact: skin type (Fitzpatrick 1-6), sex, age,
glasses, smile, hair colour and style, facial hair, hat, and a per-pixel mask of
the visible face skin. Non-face negatives (textures, clutter, skin-coloured blobs,
isolated face parts) make "faces vs non-faces" a real detection task.

The planted bias, all set by knobs (``DEFAULT_KNOBS`` mimics CelebA's skew):

* few darker-skinned faces (``darker_fraction``), and within them a different sex
  ratio (``male_fraction_darker`` vs ``male_fraction_lighter``), so darker females
  are the rarest group, as in CelebA and the Gender Shades audit;
* the skin-coloured non-face blobs and brown textures are mostly darker tones
  (``nonface_darker_fraction``), which makes "light skin colour => face" a tempting
  shortcut for a classifier;
* the same lighting and camera (exposure, gamma, sensor noise) are applied to every
  face, so dark features (brows, pupils, facial hair, wrinkles) have less contrast on
  darker skin, as in under-exposed photographs.

Determinism: a small plan (which examples are faces, their skin group, sex and
age) is drawn from ``seed`` with exact counts, then example ``i`` is rendered from
its own stream ``np.random.default_rng([seed, STREAM, i])``. Rendering is therefore
independent of order and can be split into chunks or processes.

Regenerate the README figure with
``python -m facebias_jax.data.synthetic --grid=docs/images/synthetic_groups.png``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from typing import Any, Mapping

import cv2
import numpy as np

from facebias_jax import imaging
from facebias_jax.data import groups

TASKS = ("faces_vs_nonfaces", "sex", "blond")

DEFAULT_KNOBS: dict[str, Any] = {
    # Share of darker-skinned (Fitzpatrick 4-6) faces; CelebA is estimated at ~5-15%.
    "darker_fraction": 0.07,
    # Sex ratio per skin group: darker females become the rarest cell (~3% of faces).
    "male_fraction_lighter": 0.42,
    "male_fraction_darker": 0.60,
    # CelebA's `Young` is positive for 77% of images.
    "young_fraction": 0.77,
    # Task faces_vs_nonfaces only: share of faces among all images.
    "face_fraction": 0.5,
    # Share of darker tones among skin-coloured non-face blobs and brown textures.
    "nonface_darker_fraction": 0.8,
    # Task blond only (label Blond_Hair; sex is the spurious attribute, as in CelebA's
    # Blond_Hair x Male benchmark: 24% of women and 2% of men are blond there).
    "blond_fraction_female": 0.24,
    "blond_fraction_male": 0.02,
    # How far blond hair is from light brown (1: the full blond tone; lower values make
    # hair colour a subtler cue than the sex cues, so a shortcut tempts more).
    "blond_contrast": 1.0,
    # How ambiguous the sex cues of every face are (the "gender neutral" study): 0 =
    # the faces above; 1 = no cue tells the sex (shape cues at the midpoint of the male
    # and female ranges, each discrete cue -- hair, facial hair, lips, earrings -- drawn
    # as for a random sex); in between, shapes move toward neutral and each discrete cue
    # is redrawn with this probability. Level 0 leaves every pixel unchanged.
    "sex_ambiguity": 0.0,
    # True: equal counts over skin (lighter/darker) x sex, like PPB (test splits); for
    # task blond, equal counts over Blond_Hair x sex instead.
    "balanced": False,
}

# Binary CelebA-named attributes of a face (0/1; -1 for non-face images).
FACE_ATTRIBUTES = ("Male", "Young", "Pale_Skin", "Eyeglasses", "Smiling", "Blond_Hair",
                   "Black_Hair", "Brown_Hair", "Gray_Hair", "Bald", "Wearing_Hat",
                   "No_Beard", "Mustache", "Goatee", "Wearing_Lipstick", "Wearing_Earrings")
ATTRIBUTE_NAMES = FACE_ATTRIBUTES + ("skin_type", "is_face")

# Random streams derived from the user's seed (SeedSequence entropy words).
_PLAN_STREAM = 0x504C414E
_RENDER_STREAM = 0x52454E44
_AMBIGUITY_STREAM = 0x414D4249

# Fitzpatrick types as sRGB skin colours under neutral light (1 palest ... 6 darkest).
_SKIN_RGB = np.array([
    (246, 218, 200), (234, 192, 163), (212, 160, 122),
    (168, 116, 80), (118, 78, 52), (74, 48, 34)], np.float32)
_LIGHTER_TYPE_PROBS = (0.25, 0.45, 0.30)   # types 1, 2, 3
_DARKER_TYPE_PROBS = (0.35, 0.35, 0.30)    # types 4, 5, 6

_HAIR_RGB = {
    "black": (28, 22, 20), "brown": (92, 58, 34), "blond": (214, 180, 110),
    "gray": (170, 168, 165), "red": (150, 64, 30), "light_brown": (150, 104, 58)}
_HAIR_ATTRIBUTE = {"black": "Black_Hair", "brown": "Brown_Hair", "blond": "Blond_Hair",
                   "gray": "Gray_Hair", "light_brown": "Brown_Hair"}


# ----------------------------------------------------------------------------- knobs


def validate_knobs(task: str = "faces_vs_nonfaces", **knobs) -> dict[str, Any]:
  """Fills in defaults and checks the generator's knobs.

  Args:
    task: ``"faces_vs_nonfaces"``, ``"sex"`` or ``"blond"``.
    **knobs: any subset of ``DEFAULT_KNOBS``.

  Returns:
    The full knob dict.

  Raises:
    ValueError: unknown task or knob name, or a fraction outside [0, 1].
  """
  if task not in TASKS:
    raise ValueError(f"Unknown synthetic task {task!r}; valid tasks: {', '.join(TASKS)}")
  unknown = sorted(set(knobs) - set(DEFAULT_KNOBS))
  if unknown:
    raise ValueError(f"Unknown synthetic knob(s) {', '.join(unknown)}; valid knobs: "
                     f"{', '.join(DEFAULT_KNOBS)}")
  full = {**DEFAULT_KNOBS, **knobs}
  for name, value in full.items():
    if name == "balanced":
      if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Synthetic knob balanced must be True or False, got {value!r}")
      continue
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
      raise ValueError(f"Synthetic knob {name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
      raise ValueError(f"Synthetic knob {name}={value} is outside [0, 1]; valid knobs "
                       f"(all fractions in [0, 1] except balanced): {', '.join(DEFAULT_KNOBS)}")
    full[name] = float(value)
  full["balanced"] = bool(full["balanced"])
  return full


# ------------------------------------------------------------------------------ plan


def _allocate(total: int, probs, rng: np.random.Generator) -> np.ndarray:
  """Splits ``total`` into integer counts proportional to ``probs`` (largest remainder).

  Ties in the remainders are broken at random so no cell is favoured systematically.
  """
  probs = np.asarray(probs, np.float64)
  probs = probs / probs.sum() if probs.sum() > 0 else np.full_like(probs, 1 / len(probs))
  exact = probs * total
  counts = np.floor(exact).astype(np.int64)
  short = total - counts.sum()
  if short:
    order = np.lexsort((rng.random(len(probs)), -(exact - counts)))
    counts[order[:short]] += 1
  return counts


def _plan(num: int, seed: int, task: str, knobs: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Draws which examples are faces and their skin group, sex and age, with exact counts.

  Exact counts (rather than a coin per example) keep small test splits on target and
  make ``balanced=True`` exactly balanced.
  """
  rng = np.random.default_rng([seed, _PLAN_STREAM])
  if task == "blond":
    return _blond_plan(num, rng, knobs)
  num_faces = num if task == "sex" else int(round(num * knobs["face_fraction"]))
  if knobs["balanced"]:
    cell_probs = [0.25] * 4
  else:
    d = knobs["darker_fraction"]
    ml, md = knobs["male_fraction_lighter"], knobs["male_fraction_darker"]
    cell_probs = [(1 - d) * (1 - ml), (1 - d) * ml, d * (1 - md), d * md]
  # Cells: 0 lighter female, 1 lighter male, 2 darker female, 3 darker male.
  counts = _allocate(num_faces, cell_probs, rng)
  darker, male, young = [], [], []
  for cell, n in enumerate(counts):
    n_young = int(round(n * knobs["young_fraction"]))
    darker.append(np.full(n, cell >= 2))
    male.append(np.full(n, cell % 2 == 1))
    young.append(np.arange(n) < n_young)
  is_face = np.zeros(num, bool)
  is_face[:num_faces] = True
  pad = np.zeros(num - num_faces, bool)
  plan = {"is_face": is_face,
          "darker": np.concatenate(darker + [pad]),
          "male": np.concatenate(male + [pad]),
          "young": np.concatenate(young + [pad])}
  order = rng.permutation(num)
  return {k: v[order] for k, v in plan.items()}


def _blond_plan(num: int, rng: np.random.Generator, knobs: Mapping[str, Any]
                ) -> dict[str, np.ndarray]:
  """Task blond: all faces, with planned hair colour (blond or not) per sex.

  Unbalanced: the skin x sex cells of the other tasks, and within each sex the blond
  fractions of the knobs (blond men are the rare group). Balanced (test splits):
  equal counts over Blond_Hair x sex, skin in the usual proportions within each.
  """
  d = knobs["darker_fraction"]
  if knobs["balanced"]:
    cells = _allocate(num, [0.25] * 4, rng)  # (female, male) x (not blond, blond)
    male = np.concatenate([np.full(n, c >= 2) for c, n in enumerate(cells)])
    blond = np.concatenate([np.full(n, c % 2 == 1) for c, n in enumerate(cells)])
    darker = np.concatenate([np.arange(n) < int(round(n * d)) for n in cells])
  else:
    ml, md = knobs["male_fraction_lighter"], knobs["male_fraction_darker"]
    cells = _allocate(num, [(1 - d) * (1 - ml), (1 - d) * ml, d * (1 - md), d * md], rng)
    darker = np.concatenate([np.full(n, c >= 2) for c, n in enumerate(cells)])
    male = np.concatenate([np.full(n, c % 2 == 1) for c, n in enumerate(cells)])
    fraction = {False: knobs["blond_fraction_female"], True: knobs["blond_fraction_male"]}
    blond = np.concatenate([np.arange(n) < int(round(n * fraction[c % 2 == 1]))
                            for c, n in enumerate(cells)])
  young = rng.random(num) < knobs["young_fraction"]
  plan = {"is_face": np.ones(num, bool), "darker": darker, "male": male, "young": young,
          "blond": blond}
  order = rng.permutation(num)
  return {k: v[order] for k, v in plan.items()}


# -------------------------------------------------------------------- random draws


class _Draws:
  """Cheap scalar draws from one per-example generator.

  NumPy's scalar calls cost microseconds each; drawing uniforms in blocks keeps a
  face (about a hundred draws) well under a millisecond.
  """

  def __init__(self, rng: np.random.Generator):
    self.rng = rng
    self._next = iter(rng.random(256).tolist()).__next__

  def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
    """Uniform in [lo, hi)."""
    try:
      v = self._next()
    except StopIteration:  # Refill: same stream as one long block, 256 at a time.
      self._next = iter(self.rng.random(256).tolist()).__next__
      v = self._next()
    return lo + (hi - lo) * v

  def p(self, prob: float) -> bool:
    """True with probability ``prob``."""
    return self.u() < prob

  def choice(self, options, probs=None):
    """One of ``options``, uniformly or with (unnormalised) weights ``probs``."""
    if probs is None:
      return options[int(self.u() * len(options)) % len(options)]
    x, acc = self.u() * sum(probs), 0.0
    for option, prob in zip(options, probs):
      acc += prob
      if x < acc:
        return option
    return options[-1]

  def normal(self, mean: float = 0.0, std: float = 1.0) -> float:
    # Sum of three uniforms: close enough to a Gaussian for jitter, and bounded.
    return mean + std * (self.u() + self.u() + self.u() - 1.5) * 2.0


# ------------------------------------------------------------------------- drawing

_SHIFT = 4          # OpenCV fixed-point bits: sub-pixel geometry for small faces.
_ONE = 1 << _SHIFT


class _Pen:
  """Draws in face units (head half-width = 1, y down) onto a canvas, posed.

  Pose (rotation, scale, shift) is folded into every coordinate so the whole face
  is drawn directly in image space with anti-aliasing, no warping pass.
  """

  def __init__(self, canvas: np.ndarray, cx: float, cy: float, scale: float, angle_deg: float):
    self.canvas = canvas
    self.cx, self.cy, self.s, self.angle = cx, cy, scale, angle_deg
    a = math.radians(angle_deg)
    self.cos, self.sin = math.cos(a), math.sin(a)
    self.line_type = cv2.LINE_AA
    self._m = np.array([[self.cos, self.sin], [-self.sin, self.cos]]) * (scale * _ONE)
    self._c = np.array([cx * _ONE, cy * _ONE])
    self._affine = (*self._m.ravel().tolist(), *self._c.tolist())

  def _xy(self, x: float, y: float) -> tuple[int, int]:
    px = self.cx + self.s * (self.cos * x - self.sin * y)
    py = self.cy + self.s * (self.sin * x + self.cos * y)
    return int(px * _ONE), int(py * _ONE)

  def _pts(self, pts) -> np.ndarray:
    if isinstance(pts, list):
      # Short literal lists (most strokes): plain float maths beats NumPy's per-call
      # overhead; same transform and truncation as the array path below.
      a, b, c, e, cx, cy = self._affine
      return np.array([(int(x * a + y * c + cx), int(x * b + y * e + cy)) for x, y in pts],
                      np.int32)
    return (np.asarray(pts, np.float64) @ self._m + self._c).astype(np.int32)

  def width(self, w: float) -> int:
    return max(1, int(round(w * self.s)))

  def ellipse(self, x, y, ax, ay, color, *, angle=0.0, start=0.0, end=360.0, width=None,
              target=None):
    """Filled (width None) or outlined ellipse / arc; ``width`` in face units."""
    s = self.s
    axes = (max(1, int(ax * s * _ONE)), max(1, int(ay * s * _ONE)))
    thickness = -1 if width is None else max(1, int(round(width * s)))
    if target is None:
      img, lt = self.canvas, self.line_type
    else:
      img, lt = target, cv2.LINE_8
    cv2.ellipse(img, self._xy(x, y), axes, self.angle + angle, start, end, color, thickness,
                lt, _SHIFT)

  def poly(self, pts, color, *, width=None, closed=True, target=None):
    """Filled polygon (width None) or polyline in face units."""
    img = self.canvas if target is None else target
    lt = self.line_type if target is None else cv2.LINE_8
    p = self._pts(pts)
    if width is None:
      cv2.fillPoly(img, [p], color, lt, _SHIFT)
    else:
      cv2.polylines(img, [p], closed, color, self.width(width), lt, _SHIFT)


@functools.lru_cache(maxsize=None)
def _unit_arc(t0: float, t1: float, n: int) -> np.ndarray:
  t = np.linspace(math.radians(t0), math.radians(t1), n)
  return np.stack([np.cos(t), np.sin(t)], 1)


def _ellipse_pts(ax: float, ay: float, t0: float, t1: float, n: int, cx=0.0, cy=0.0):
  return _unit_arc(t0, t1, n) * (ax, ay) + (cx, cy)


def _head_outline(aspect: float, jaw: float, chin: float, n: int = 28) -> np.ndarray:
  """Head polygon: an ellipse whose lower half narrows by ``jaw`` towards a chin.

  ``jaw`` near 1 gives a square (typically male) jaw, lower values a tapered one.
  """
  cos_t, sin_t, lower16, lower4 = _head_basis(n)
  return np.stack([cos_t * (1.0 - (1.0 - jaw) * lower16),
                   aspect * sin_t * (1.0 + (chin - 1.0) * lower4)], 1)


@functools.lru_cache(maxsize=None)
def _head_basis(n: int):
  t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
  lower = np.clip(np.sin(t), 0.0, 1.0)
  return np.cos(t), np.sin(t), lower ** 1.6, lower ** 4


def _shade(color, factor: float) -> tuple[float, float, float]:
  return (min(255.0, color[0] * factor), min(255.0, color[1] * factor),
          min(255.0, color[2] * factor))


def _mix(a, b, t: float) -> tuple[float, float, float]:
  return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _random_color(d: _Draws, lo: float = 20, hi: float = 235) -> tuple[float, float, float]:
  return (d.u(lo, hi), d.u(lo, hi), d.u(lo, hi))


def _skin_color(d: _Draws, skin_type: int) -> tuple[float, float, float]:
  base = _SKIN_RGB[skin_type - 1]
  gain = d.normal(1.0, 0.05)
  warm = d.normal(0.0, 0.03)
  return (float(base[0]) * gain * (1 + warm), float(base[1]) * gain,
          float(base[2]) * gain * (1 - warm))


def _skin_type(d: _Draws, darker: bool) -> int:
  if darker:
    return d.choice((4, 5, 6), _DARKER_TYPE_PROBS)
  return d.choice((1, 2, 3), _LIGHTER_TYPE_PROBS)


# --------------------------------------------------------------------- backgrounds


def _smooth_colors(d: _Draws, size: int, cells: int, c0, c1) -> np.ndarray:
  """Smooth random blend of two colours, uint8 [size, size, 3].

  A ``cells x cells`` grid of random mixing weights is upsampled bicubically: far
  cheaper than per-pixel float maths at full resolution.
  """
  t = np.array([d.u() for _ in range(cells * cells)], np.float32).reshape(cells, cells, 1)
  small = np.asarray(c0, np.float32) + (np.asarray(c1, np.float32) - np.asarray(c0, np.float32)) * t
  small = np.clip(small, 0, 255).astype(np.uint8)
  return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _muted_color(d: _Draws) -> tuple[float, float, float]:
  # Real backdrops are mostly desaturated; pull random colours towards grey.
  c, grey, k = _random_color(d), d.u(60, 200), d.u(0.2, 0.8)
  return _mix(c, (grey, grey, grey), k)


def _background(d: _Draws, size: int) -> np.ndarray:
  """Indoor/outdoor-like backdrop: colour gradient or smooth texture, plus clutter."""
  c0, c1 = _muted_color(d), _muted_color(d)
  if d.p(0.5):  # Linear gradient: a 2-pixel image stretched.
    small = np.array([[c0], [c1]] if d.p(0.5) else [[c0, c1]], np.uint8)
    canvas = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
  else:
    canvas = _smooth_colors(d, size, d.choice((2, 3, 4)), c0, c1)
  for _ in range(d.choice((0, 1, 2, 3, 4, 6), (0.2, 0.2, 0.2, 0.15, 0.15, 0.1))):
    _clutter_shape(d, canvas, size)
  return canvas


def _clutter_shape(d: _Draws, canvas: np.ndarray, size: int) -> None:
  color = _random_color(d)
  kind = d.choice(("rect", "circle", "line", "poly"))
  x, y = int(d.u(0, size) * _ONE), int(d.u(0, size) * _ONE)
  r = d.u(0.05, 0.35) * size
  if kind == "rect":
    x2, y2 = x + int(d.u(-r, r) * 2 * _ONE), y + int(d.u(-r, r) * 2 * _ONE)
    cv2.rectangle(canvas, (x, y), (x2, y2), color, -1 if d.p(0.6) else max(1, size // 40),
                  cv2.LINE_AA, _SHIFT)
  elif kind == "circle":
    cv2.circle(canvas, (x, y), int(r * _ONE * 0.6), color, -1 if d.p(0.6) else max(1, size // 40),
               cv2.LINE_AA, _SHIFT)
  elif kind == "line":
    x2, y2 = int(d.u(0, size) * _ONE), int(d.u(0, size) * _ONE)
    cv2.line(canvas, (x, y), (x2, y2), color, max(1, int(d.u(0.01, 0.05) * size)),
             cv2.LINE_AA, _SHIFT)
  else:
    pts = np.array([[x + d.u(-r, r) * _ONE, y + d.u(-r, r) * _ONE] for _ in range(4)], np.int32)
    cv2.fillPoly(canvas, [pts], color, cv2.LINE_AA, _SHIFT)


# ------------------------------------------------------------------------- faces


def sample_face(d: _Draws, *, darker: bool, male: bool, young: bool,
                blond: bool | None = None, blond_contrast: float = 1.0) -> dict[str, Any]:
  """Draws every visual parameter of one face given its planned skin group, sex and age.

  The returned dict is everything ``render_face`` needs; editing it (e.g. setting
  ``glasses`` to None) re-renders the same face with one thing changed, and
  ``features=False`` leaves out eyes, brows, nose and mouth (a blank head).

  ``blond`` (task blond) plans the hair colour: visible blond hair of tone
  ``blond_contrast`` (1 = full blond, 0 = light brown), or any other colour. None
  leaves it to the usual draws, which are then exactly those of the other tasks.
  """
  f: dict[str, Any] = {"male": male, "young": young}
  f["skin_type"] = _skin_type(d, darker)
  f["skin"] = _skin_color(d, f["skin_type"])
  # Pose: head half-width in image fractions, rotation, centre.
  f["scale"] = d.u(0.19, 0.25) * (1.04 if male else 1.0)
  f["angle"] = d.normal(0.0, 10.0)
  f["cx"], f["cy"] = d.u(0.42, 0.58), d.u(0.44, 0.56)
  # Shape: sex shifts jaw width, brow weight and neck, with overlapping ranges.
  f["aspect"] = d.u(1.2, 1.42)
  f["jaw"] = d.u(0.7, 0.92) if male else d.u(0.55, 0.8)
  f["chin"] = d.u(1.0, 1.08)
  f["brow_w"] = d.u(0.07, 0.11) if male else d.u(0.045, 0.08)
  f["brow_y"] = d.u(-0.34, -0.28) if male else d.u(-0.42, -0.32)
  f["brow_arch"] = d.u(0.0, 0.04) if male else d.u(0.03, 0.08)
  f["eye_x"] = d.u(0.34, 0.42)
  f["eye_y"] = d.u(-0.14, -0.06)
  f["eye_w"] = d.u(0.12, 0.16)
  f["eye_open"] = d.u(0.045, 0.07) * (0.8 if not young else 1.0)
  f["iris"] = (d.choice([(60, 40, 25), (35, 25, 20), (70, 110, 150), (80, 105, 60)],
                        (0.5, 0.2, 0.2, 0.1)) if f["skin_type"] <= 3 else (40, 26, 18))
  f["nose_len"] = d.u(0.3, 0.42)
  f["mouth_y"] = d.u(0.58, 0.7)
  f["mouth_w"] = d.u(0.26, 0.38)
  f["smiling"] = d.p(0.48)
  f["teeth"] = f["smiling"] and d.p(0.6)
  f["lipstick"] = (not male) and d.p(0.45)
  f["lip_base"] = _mix(f["skin"], (150, 50, 60), d.u(0.2, 0.35))
  f["lip"] = _lip_color(d, f["lip_base"], f["lipstick"])
  f["earrings"] = (not male and d.p(0.3)) or (male and d.p(0.03))
  f["earring_color"] = d.choice([(230, 200, 80), (215, 215, 220), (200, 40, 60)])
  f["neck_w"] = d.u(0.42, 0.55) if male else d.u(0.34, 0.46)
  f["shoulders"] = 2.3 if male else 1.9
  f["lid_w"] = 0.035 if male else 0.05
  f["lid_dark"] = 1.0 if male else 0.0  # Eyelid line: skin shade (1) or near-black (0).
  f["clothes"] = _random_color(d, 10, 240)
  # Hair: style correlates with sex (and baldness with age) without determining it.
  f["bald"] = male and d.p(0.04 if young else 0.32)
  if f["bald"]:
    f["hair_style"] = "bald"
  elif male:
    f["hair_style"] = d.choice(("short", "medium", "long", "bun"), (0.76, 0.16, 0.05, 0.03))
  else:
    f["hair_style"] = d.choice(("short", "medium", "long", "bun"), (0.12, 0.26, 0.52, 0.1))
  if not young and d.p(0.55):
    f["hair_color"] = "gray"
  elif darker:
    f["hair_color"] = d.choice(("black", "brown", "blond"), (0.8, 0.18, 0.02))
  else:
    blond_prob = 0.28 if not male else 0.1
    f["hair_color"] = d.choice(("black", "brown", "blond", "red"),
                               (0.3, 0.62 - blond_prob, blond_prob, 0.08))
  if blond is not None:
    _plan_hair(d, f, blond=blond, darker=darker)
  f["hair"] = _shade(_hair_rgb(f["hair_color"], blond_contrast), d.normal(1.0, 0.08))
  f["hairline"] = d.u(-0.72, -0.5) if young or not male else d.u(-0.7, -0.4)
  f["fringe"] = (not f["bald"]) and d.p(0.35 if not male else 0.15)
  f["hair_volume"] = d.u(1.04, 1.16)
  f["side_part"] = d.u(-0.4, 0.4)
  # Facial hair: mostly older men; a few young men; darker beards read less on dark skin.
  f["beard"] = male and d.p(0.2 if young else 0.38)
  f["goatee"] = male and not f["beard"] and d.p(0.08)
  f["mustache"] = male and (d.p(0.5) if f["beard"] else d.p(0.08))
  f["stubble"] = male and not f["beard"] and d.p(0.3)
  f["beard_color"] = _beard_color(f)
  f["wrinkles"] = 0 if young else d.choice((1, 2, 3))
  f["glasses"] = None
  if d.p(0.07 if young else 0.22):
    f["glasses"] = {"sun": d.p(0.25), "round": d.p(0.4), "size": d.u(0.17, 0.21),
                    "color": d.choice([(15, 15, 15), (70, 40, 20), (150, 150, 155), (120, 20, 30)]),
                    "width": d.u(0.035, 0.06)}
  f["hat"] = None
  if d.p(0.05):
    f["hat"] = {"color": _random_color(d, 10, 230), "brim": d.p(0.6), "height": d.u(0.5, 0.9)}
  if blond:
    f["hat"] = None  # The planned blond hair stays visible (Blond_Hair = 1).
  return f


def _lip_color(d: _Draws, base, lipstick: bool) -> tuple[float, float, float]:
  return _mix(base, (175, 20, 45), d.u(0.5, 0.85)) if lipstick else _shade(base, 0.9)


def _beard_color(f: Mapping[str, Any]) -> tuple[float, float, float]:
  return f["hair"] if f["hair_color"] != "blond" else _shade(f["hair"], 0.8)


# Shape cues of sex: (male range, female range) of each parameter, as drawn above.
_SEX_RANGES = {
    "scale": ((0.19 * 1.04, 0.25 * 1.04), (0.19, 0.25)),
    "jaw": ((0.7, 0.92), (0.55, 0.8)),
    "brow_w": ((0.07, 0.11), (0.045, 0.08)),
    "brow_y": ((-0.34, -0.28), (-0.42, -0.32)),
    "brow_arch": ((0.0, 0.04), (0.03, 0.08)),
    "neck_w": ((0.42, 0.55), (0.34, 0.46)),
    "shoulders": ((2.3, 2.3), (1.9, 1.9)),
    "lid_w": ((0.035, 0.035), (0.05, 0.05)),
    "lid_dark": ((1.0, 1.0), (0.0, 0.0)),
}
# Discrete cues of sex, redrawn together (a beard and stubble, a bald head and its
# hairline stay consistent).
_SEX_BUNDLES = {
    "hair": ("bald", "hair_style", "hairline", "fringe"),
    "hair_color": ("hair_color", "hair"),
    "facial_hair": ("beard", "goatee", "mustache", "stubble"),
    "lips": ("lipstick",),
    "earrings": ("earrings",),
}


def blur_sex_cues(f: dict[str, Any], e: _Draws, level: float, *, blond: bool | None = None,
                  blond_contrast: float = 1.0) -> None:
  """Makes the sex cues of face ``f`` ambiguous to degree ``level`` (in place).

  Shape cues move from their place in their sex's range toward the same place in the
  midpoint range of the two sexes (``level`` 1: exactly there, for both sexes alike);
  each discrete cue bundle is, with probability ``level``, taken from a donor face of
  a random sex (same skin group and age). At ``level`` 1 the drawn face therefore
  has the same distribution whatever its sex: no pixel can tell it. ``e`` is the
  face's own ambiguity stream, so the other draws (and level 0) are unchanged.
  """
  male = bool(f["male"])
  for name, ranges in _SEX_RANGES.items():
    (lo, hi), (lo_o, hi_o) = ranges if male else ranges[::-1]
    t = (f[name] - lo) / (hi - lo) if hi > lo else 0.5
    other = lo_o + t * (hi_o - lo_o)
    f[name] = f[name] + (other - f[name]) * level / 2.0
  darker = f["skin_type"] >= 4
  donors = [sample_face(e, darker=darker, male=sex, young=f["young"], blond=blond,
                        blond_contrast=blond_contrast) for sex in (False, True)]
  for bundle, keys in _SEX_BUNDLES.items():
    donor = donors[int(e.p(0.5))]
    if not e.p(level) or (bundle == "hair_color" and blond is not None):
      continue
    for key in keys:
      f[key] = donor[key]
  f["lip"] = _lip_color(e, f["lip_base"], f["lipstick"])
  f["beard_color"] = _beard_color(f)


def _hair_rgb(color: str, blond_contrast: float) -> tuple[float, float, float]:
  if color != "blond" or blond_contrast == 1.0:
    return _HAIR_RGB[color]
  return _mix(_HAIR_RGB["light_brown"], _HAIR_RGB["blond"], blond_contrast)


def _plan_hair(d: _Draws, f: dict[str, Any], *, blond: bool, darker: bool) -> None:
  """Task blond: replaces the drawn hair colour by the planned one (in place)."""
  if blond:
    f["hair_color"] = "blond"
    if f["bald"]:
      f["bald"] = False
      f["hair_style"] = d.choice(("short", "medium"), (0.7, 0.3))
  elif f["hair_color"] in ("blond", "brown", "red") and not darker:
    # Light brown is common among the others: at a low blond_contrast, a blond and a
    # light-brown head look alike, as dark blond and light brown do in CelebA.
    f["hair_color"] = d.choice(("brown", "light_brown", "red"), (0.45, 0.45, 0.1))
  elif f["hair_color"] == "blond":
    f["hair_color"] = d.choice(("black", "brown"), (0.8, 0.2))


def face_attributes(f: Mapping[str, Any]) -> dict[str, int]:
  """CelebA-named attributes of a face parameter dict (what the picture shows)."""
  hair_visible = (not f["bald"]) and not (f["hat"] is not None and f["hair_style"] == "short")
  attrs = {name: 0 for name in FACE_ATTRIBUTES}
  attrs.update({
      "Male": int(f["male"]), "Young": int(f["young"]), "Pale_Skin": int(f["skin_type"] == 1),
      "Eyeglasses": int(f["glasses"] is not None), "Smiling": int(f["smiling"]),
      "Bald": int(f["bald"]), "Wearing_Hat": int(f["hat"] is not None),
      "No_Beard": int(not (f["beard"] or f["goatee"])), "Mustache": int(f["mustache"]),
      "Goatee": int(f["goatee"]), "Wearing_Lipstick": int(f["lipstick"]),
      "Wearing_Earrings": int(f["earrings"])})
  if hair_visible and f["hair_color"] in _HAIR_ATTRIBUTE:
    attrs[_HAIR_ATTRIBUTE[f["hair_color"]]] = 1
  attrs["skin_type"] = int(f["skin_type"])
  attrs["is_face"] = 1
  return attrs


def render_face(f: Mapping[str, Any], canvas: np.ndarray, mask: np.ndarray,
                hair_mask: np.ndarray | None = None) -> None:
  """Draws face ``f`` onto ``canvas`` (uint8 RGB), its skin region into ``mask`` and, if
  given, its visible scalp hair into ``hair_mask`` (facial hair is not in it)."""
  size = canvas.shape[0]
  pen = _Pen(canvas, f["cx"] * size, f["cy"] * size, f["scale"] * size, f["angle"])
  hm = hair_mask if hair_mask is not None else np.zeros(canvas.shape[:2], np.uint8)
  skin, hair, aspect = f["skin"], f["hair"], f["aspect"]
  skin_dark = _shade(skin, 0.8)
  outline = _head_outline(aspect, f["jaw"], f["chin"])
  style = f["hair_style"]
  top = -aspect * f["hair_volume"]

  # Back layer: long hair behind the shoulders, then torso and neck. Each shape is
  # drawn into the hair mask too (255 hair, 0 anything covering it), in the same order.
  if style in ("long", "medium"):
    bottom = aspect + (1.6 if style == "long" else 0.55)
    half = f["hair_volume"] * (1.15 if style == "long" else 1.08)
    back = np.concatenate([_ellipse_pts(half, -top, 180, 360, 10),
                           [[half * 1.05, bottom], [-half * 1.05, bottom]]])
    pen.poly(back, hair)
    pen.poly(back, 255, target=hm)
  if style == "bun":
    pen.ellipse(0.0, top - 0.15, 0.42, 0.32, hair)
    pen.ellipse(0.0, top - 0.15, 0.42, 0.32, 255, target=hm)
  pen.ellipse(0.0, aspect + 1.55, f["shoulders"], 0.95, f["clothes"])
  pen.ellipse(0.0, aspect + 1.55, f["shoulders"], 0.95, 0, target=hm)
  nw = f["neck_w"]
  neck = [[-nw, 0.4], [nw, 0.4], [nw * 1.1, aspect + 0.75], [-nw * 1.1, aspect + 0.75]]
  pen.poly(neck, _shade(skin, 0.72))
  pen.poly(neck, 0, target=hm)
  # Ears behind the head outline, earrings under the lobes.
  for side in (-1, 1):
    pen.ellipse(side * 0.98, 0.0, 0.13, 0.24, skin_dark)
    pen.ellipse(side * 0.98, 0.0, 0.13, 0.24, 0, target=hm)
    if f["earrings"]:
      pen.ellipse(side * 1.0, 0.3, 0.06, 0.06, f["earring_color"])

  # Head with simple shading: a darker rim and a lit inner region offset towards the light.
  pen.poly(outline, skin_dark)
  pen.poly(outline * 0.86 + (0.05, -0.05), skin)
  pen.poly(outline, 255, target=mask)
  pen.poly(outline, 0, target=hm)

  if f.get("features", True):
    _draw_features(pen, f)

  # Hair on top of the head (covers the forehead down to the hairline), then the hat.
  if style != "bald":
    _draw_hair_top(pen, f, mask, hm)
  elif not f["young"]:
    for side in (-1, 1):  # Fringe of hair above the ears.
      pen.ellipse(side * 0.93, -0.35, 0.14, 0.3, hair)
      pen.ellipse(side * 0.93, -0.35, 0.14, 0.3, 0, target=mask)
      pen.ellipse(side * 0.93, -0.35, 0.14, 0.3, 255, target=hm)
  if f["hat"] is not None:
    _draw_hat(pen, f, mask, hm)


def _draw_hair_top(pen: _Pen, f: Mapping[str, Any], mask: np.ndarray,
                   hair_mask: np.ndarray) -> None:
  aspect, hair, vol = f["aspect"], f["hair"], f["hair_volume"]
  hl = f["hairline"] * aspect
  if f["fringe"]:
    hl = -0.38 * aspect
  # Upper arc of the hair shell, then a hairline across the forehead with a side part.
  shell = _ellipse_pts(vol, aspect * vol, 180, 360, 14, cy=0.0)
  side_depth = 0.3 if f["hair_style"] in ("long", "medium", "bun") else 0.05
  hairline = np.array([
      [1.02, -0.05 + (0.0 if side_depth > 0.1 else -0.35)],
      [0.8, hl * 0.55],
      [f["side_part"], hl],
      [-0.8, hl * 0.55],
      [-1.02, -0.05 + (0.0 if side_depth > 0.1 else -0.35)],
  ])
  if side_depth > 0.1:  # Longer styles frame the face down to the cheeks.
    hairline = np.concatenate([[[vol * 1.02, 0.35]], hairline, [[-vol * 1.02, 0.35]]])
  pts = np.concatenate([shell, hairline])
  pen.poly(pts, hair)
  pen.poly(pts, 0, target=mask)
  pen.poly(pts, 255, target=hair_mask)


def _draw_hat(pen: _Pen, f: Mapping[str, Any], *masks: np.ndarray) -> None:
  """Draws the hat and clears it from every mask (it covers skin and hair)."""
  hat, aspect = f["hat"], f["aspect"]
  base = -aspect * 0.55
  crown = np.concatenate([_ellipse_pts(1.08, aspect * hat["height"], 180, 360, 12, cy=base),
                          [[1.08, base + 0.05], [-1.08, base + 0.05]]])
  pen.poly(crown, hat["color"])
  for mask in masks:
    pen.poly(crown, 0, target=mask)
  if hat["brim"]:
    pen.ellipse(0.0, base + 0.02, 1.5, 0.16, _shade(hat["color"], 0.8))
    for mask in masks:
      pen.ellipse(0.0, base + 0.02, 1.5, 0.16, 0, target=mask)
  pen.poly([[-1.06, base - 0.08], [1.06, base - 0.08]], _shade(hat["color"], 0.6),
           width=0.08, closed=False)


def _draw_features(pen: _Pen, f: Mapping[str, Any]) -> None:
  """Eyes, brows, nose, mouth, facial hair, wrinkles and glasses."""
  skin = f["skin"]
  line_dark = _shade(skin, 0.55)
  ex, ey, ew, eo = f["eye_x"], f["eye_y"], f["eye_w"], f["eye_open"]
  if f["smiling"]:
    eo *= 0.8
  brow_color = f["hair"] if f["hair_color"] not in ("blond", "gray") else _shade(f["hair"], 0.6)
  if f["stubble"]:
    stubble = _mix(skin, f["beard_color"], 0.22)
    pen.poly(np.concatenate([_ellipse_pts(f["jaw"] * 0.98, f["aspect"] * 0.98, 15, 165, 9),
                             [[-0.75, 0.25], [0.75, 0.25]]]), stubble)
  for side in (-1, 1):
    x = side * ex
    pen.ellipse(x, ey, ew, eo, (235, 232, 228))
    pen.ellipse(x, ey + eo * 0.1, eo * 0.95, eo * 0.95, f["iris"])
    pen.ellipse(x, ey + eo * 0.1, eo * 0.4, eo * 0.4, (12, 10, 10))
    dark = f["lid_dark"]
    lid = line_dark if dark == 1.0 else (30, 22, 22) if dark == 0.0 else _mix(
        (30, 22, 22), line_dark, dark)
    pen.ellipse(x, ey, ew, eo, lid, start=180, end=360, width=f["lid_w"])
    by = f["brow_y"]
    pen.poly([[side * (ex - ew * 1.2), by + 0.03], [side * ex, by - f["brow_arch"]],
              [side * (ex + ew * 1.3), by + 0.04]], brow_color, width=f["brow_w"], closed=False)
    if f["wrinkles"] >= 2:  # Crow's feet and eye bags.
      pen.ellipse(x, ey + eo * 1.4, ew * 0.8, eo, line_dark, start=20, end=160, width=0.025)
    if f["wrinkles"] >= 1:  # Nasolabial folds.
      pen.ellipse(side * 0.2, f["mouth_y"] - 0.1, 0.14, 0.3, line_dark,
                  start=270 - side * 60 if side > 0 else 150, end=300 if side > 0 else 240,
                  width=0.025)
  if f["wrinkles"] >= 2 and f["hairline"] < -0.55:
    for k in range(f["wrinkles"] - 1):
      pen.ellipse(0.0, -0.5 - 0.09 * k, 0.42, 0.08, line_dark, start=200, end=340, width=0.02)
  # Nose: a bridge line and nostrils.
  nl = f["nose_len"]
  pen.poly([[0.03, ey + 0.05], [0.09, ey + nl], [-0.02, ey + nl + 0.05]], line_dark,
           width=0.035, closed=False)
  for side in (-1, 1):
    pen.ellipse(side * 0.075, ey + nl + 0.05, 0.04, 0.022, _shade(skin, 0.45))
  # Beard under the mouth, mustache above it.
  my, mw = f["mouth_y"], f["mouth_w"]
  if f["beard"]:
    jaw = f["jaw"]
    beard = np.concatenate([_ellipse_pts(jaw * 0.98, f["aspect"] * 1.02, 5, 175, 11),
                            [[-0.85, 0.2], [-mw - 0.05, my - 0.08], [mw + 0.05, my - 0.08],
                             [0.85, 0.2]]])
    pen.poly(beard, f["beard_color"])
  if f["goatee"]:
    pen.ellipse(0.0, my + 0.25, 0.17, 0.16, f["beard_color"])
  # Mouth: closed lips, or a smile (an open arc, with teeth when wide).
  if f["smiling"]:
    if f["teeth"]:
      pen.ellipse(0.0, my - 0.02, mw, 0.13, (120, 30, 35), start=0, end=180)
      pen.ellipse(0.0, my - 0.02, mw * 0.9, 0.07, (240, 238, 230), start=0, end=180)
      pen.ellipse(0.0, my - 0.02, mw, 0.13, f["lip"], start=0, end=180, width=0.05)
    else:
      pen.ellipse(0.0, my - 0.06, mw, 0.12, f["lip"], start=15, end=165, width=0.07)
    pen.ellipse(0.0, my - 0.02, mw * 1.1, 0.1, _shade(skin, 0.7), start=-10, end=10, width=0.03)
  else:
    pen.ellipse(0.0, my, mw * 0.9, 0.055, f["lip"])
    pen.poly([[-mw * 0.9, my], [mw * 0.9, my]], _shade(f["lip"], 0.55), width=0.03,
             closed=False)
  if f["mustache"]:
    pen.poly([[-mw * 1.05, my + 0.02], [-0.05, my - 0.12], [0.05, my - 0.12],
              [mw * 1.05, my + 0.02]], f["beard_color"], width=0.09, closed=False)
  if f["glasses"] is not None:
    g = f["glasses"]
    r, gw = g["size"], g["width"]
    for side in (-1, 1):
      x = side * ex
      if g["sun"]:
        pen.ellipse(x, ey, r * 1.1, r * 0.8, _shade(g["color"], 0.5))
      if g["round"]:
        pen.ellipse(x, ey, r, r * 0.9, g["color"], width=gw)
      else:
        pen.poly([[x - r * 1.15, ey - r * 0.7], [x + r * 1.15, ey - r * 0.7],
                  [x + r, ey + r * 0.75], [x - r, ey + r * 0.75]], g["color"], width=gw)
      pen.poly([[x + side * r * 1.1, ey - r * 0.3], [side * 1.0, ey - 0.05]], g["color"],
               width=gw * 0.8, closed=False)
    pen.poly([[-ex + r * 0.9, ey - r * 0.3], [0.0, ey - r * 0.45], [ex - r * 0.9, ey - r * 0.3]],
             g["color"], width=gw, closed=False)


# --------------------------------------------------------------------- non-faces

NONFACE_KINDS = ("texture", "clutter", "skin_blob", "face_parts", "object", "headless",
                 "blank_head")
_NONFACE_PROBS = (0.16, 0.1, 0.22, 0.18, 0.1, 0.1, 0.14)


def _nonface_skin(d: _Draws, darker_fraction: float) -> tuple[float, float, float]:
  return _skin_color(d, _skin_type(d, d.p(darker_fraction)))


def render_nonface(d: _Draws, canvas: np.ndarray, darker_fraction: float) -> str:
  """Draws a non-face image onto ``canvas`` (already holding a background).

  Returns:
    The kind of negative drawn (one of ``NONFACE_KINDS``); nothing is drawn into
    any face mask.
  """
  size = canvas.shape[0]
  kind = d.choice(NONFACE_KINDS, _NONFACE_PROBS)
  if kind == "blank_head":
    # A head without a face (mannequin, wig stand, head seen from behind): the outline,
    # skin and hair are all there, only the facial features tell it from a face.
    f = sample_face(d, darker=d.p(darker_fraction), male=d.p(0.5), young=d.p(0.7))
    f["features"] = False
    render_face(f, canvas, np.zeros(canvas.shape[:2], np.uint8))
  elif kind == "texture":
    # Wood, soil, fabric: a smooth field between two colours, often skin-like browns.
    c0 = _nonface_skin(d, darker_fraction) if d.p(0.6) else _random_color(d)
    c1 = _shade(c0, d.u(0.5, 0.9)) if d.p(0.6) else _random_color(d)
    canvas[:] = _smooth_colors(d, size, d.choice((3, 5, 8, 12)), c0, c1)
    if d.p(0.4):  # Grain: thin darker stripes across the texture.
      pen = _Pen(canvas, size / 2, size / 2, size / 2, d.u(0, 180))
      for k in range(d.choice((4, 6, 9))):
        y = -1.4 + 2.8 * (k + d.u(0.2, 0.8)) / 9
        pen.poly([[-1.5, y], [-0.3, y + d.u(-0.1, 0.1)], [1.5, y + d.u(-0.15, 0.15)]],
                 _shade(c0, d.u(0.6, 0.85)), width=d.u(0.02, 0.08), closed=False)
  elif kind == "clutter":
    for _ in range(d.choice((5, 8, 12))):
      _clutter_shape(d, canvas, size)
  else:  # Shapes posed like a head: skin_blob, object, headless, face_parts.
    pen = _Pen(canvas, d.u(0.35, 0.65) * size, d.u(0.35, 0.65) * size, d.u(0.17, 0.28) * size,
               d.u(-60, 60))
    color = _nonface_skin(d, darker_fraction)
    if kind == "skin_blob":
      # One to three skin-coloured ovals, shaded like a head but without features.
      for _ in range(d.choice((1, 1, 2, 3))):
        ax, ay = d.u(0.6, 1.2), d.u(0.8, 1.5)
        ox, oy = d.u(-0.8, 0.8), d.u(-0.8, 0.8)
        pen.ellipse(ox, oy, ax, ay, _shade(color, 0.8))
        pen.ellipse(ox + 0.05, oy - 0.05, ax * 0.85, ay * 0.85, color)
        if d.p(0.4):
          pen.ellipse(ox + d.u(-0.4, 0.4), oy + d.u(-0.4, 0.4), 0.12, 0.08, _shade(color, 0.5))
    elif kind == "object":
      # Fruit, ball or bread: round, warm-coloured, with a highlight.
      col = color if d.p(0.6) else _random_color(d)
      r = d.u(0.8, 1.4)
      pen.ellipse(0.0, 0.0, r, r * d.u(0.8, 1.1), _shade(col, 0.75))
      pen.ellipse(0.0, 0.0, r * 0.9, r * 0.9 * d.u(0.8, 1.0), col)
      pen.ellipse(-0.3 * r, -0.35 * r, 0.2 * r, 0.14 * r, _mix(col, (255, 255, 255), 0.5))
    elif kind == "headless":
      # Shoulders, neck and a hair shape, but no face (a person seen from behind).
      pen.ellipse(0.0, 2.9, 2.2, 1.0, _random_color(d))
      pen.poly([[-0.45, 0.8], [0.45, 0.8], [0.5, 2.2], [-0.5, 2.2]], _shade(color, 0.72))
      pen.ellipse(0.0, 0.0, 1.1, 1.4, _shade(_HAIR_RGB[d.choice(tuple(_HAIR_RGB))], d.u(0.8, 1.1)))
    else:
      _draw_face_parts(d, pen, color)
  return kind


def _draw_face_parts(d: _Draws, pen: _Pen, color) -> None:
  """Isolated or scrambled face parts: an eye pair, a mouth, but never a whole face."""
  if d.p(0.6):  # Often on a skin-coloured patch, so texture and colour look right.
    pen.poly([[-1.6, -1.2], [1.6, -1.2], [1.6, 1.2], [-1.6, 1.2]], color)
  part = d.choice(("eyes", "mouth", "scrambled", "glasses"))
  dark = _shade(color, 0.5)
  if part in ("eyes", "glasses", "scrambled"):
    ys = (-0.1, 0.5) if part == "scrambled" else (-0.1, -0.1)
    for side, y in zip((-1, 1), ys):
      x = side * d.u(0.3, 0.45)
      pen.ellipse(x, y, 0.15, 0.06, (235, 232, 228))
      pen.ellipse(x, y, 0.055, 0.055, (40, 30, 25))
      pen.poly([[x - 0.18, y - 0.22], [x, y - 0.27], [x + 0.18, y - 0.2]], (40, 30, 25),
               width=0.07, closed=False)
    if part == "glasses":
      for side in (-1, 1):
        pen.ellipse(side * 0.38, -0.1, 0.2, 0.18, (20, 20, 20), width=0.05)
  if part in ("mouth", "scrambled"):
    y = -0.7 if part == "scrambled" else d.u(-0.3, 0.5)
    pen.ellipse(0.0, y, 0.35, 0.06, _mix(color, (170, 40, 50), 0.5))
    pen.poly([[-0.33, y], [0.33, y]], dark, width=0.03, closed=False)


# ----------------------------------------------------------------------- camera

_NOISE_BANK_SIZE = 192
_NOISE_LEVELS = (2, 3, 4, 5, 6, 7, 8, 9)  # Sensor noise std in 8-bit grey levels.


@functools.lru_cache(maxsize=None)
def _noise_bank(bank_size: int, level: int) -> tuple[np.ndarray, np.ndarray]:
  """Positive and negative parts (uint8) of a fixed bank of rounded Gaussian noise.

  Split in two so the camera adds noise with two saturating uint8 ops instead of a
  mixed uint8/int16 one; as one part is zero wherever the other is not, the result
  equals saturating ``image + noise`` exactly.
  """
  rng = np.random.default_rng([20240611, bank_size, level])
  noise = np.round(rng.standard_normal((bank_size, bank_size, 3)) * level)
  return (np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8))


def _add_noise(d: _Draws, img: np.ndarray) -> np.ndarray:
  """Adds Gaussian sensor noise to ``img`` (uint8 [S,S,3]) from a random bank crop.

  A fixed bank per noise level with a random crop is deterministic and far cheaper
  than drawing fresh normals for every image.
  """
  size = img.shape[0]
  pos, neg = _noise_bank(max(_NOISE_BANK_SIZE, 2 * size), d.choice(_NOISE_LEVELS))
  y = int(d.u() * (pos.shape[0] - size))
  x = int(d.u() * (pos.shape[1] - size))
  img = cv2.add(img, pos[y:y + size, x:x + size])
  return cv2.subtract(img, neg[y:y + size, x:x + size], dst=img)


@functools.lru_cache(maxsize=None)
def _light_basis(size: int) -> np.ndarray:
  """Channels (1, x, y) of the image plane, x and y in [-0.5, 0.5], float32 [S,S,3].

  ``cv2.transform`` with a 3x3 matrix turns it into any per-channel linear light
  field in one pass.
  """
  ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
  basis = np.ones((size, size, 3), np.float32)
  basis[:, :, 1] = ramp[None, :]
  basis[:, :, 2] = ramp[:, None]
  return basis


_LUT_X = np.arange(256, dtype=np.float32) / 255.0


def _camera(d: _Draws, canvas: np.ndarray, out_size: int) -> np.ndarray:
  """Lighting gradient, exposure, gamma, blur and sensor noise, identical for all groups.

  Exposure is set for the scene, not the face; the gamma > 1 tail and additive noise
  compress and mask dark details, as a cheap camera does with darker skin.
  """
  img = canvas
  if img.shape[0] != out_size:
    img = cv2.resize(img, (out_size, out_size), interpolation=cv2.INTER_AREA)
  # Directional light times exposure, with a slight colour cast (saturating uint8 maths).
  theta, strength = d.u(0.0, 2 * math.pi), d.u(0.0, 0.45)
  gain = d.u(0.75, 1.1)
  tint = np.array([d.normal(1.0, 0.04), 1.0, d.normal(1.0, 0.04)], np.float32) * gain
  # light[..., c] = tint[c] * (1 + strength * (cos(theta) x + sin(theta) y)).
  coeffs = np.array([1.0, strength * math.cos(theta), strength * math.sin(theta)], np.float32)
  light = cv2.transform(_light_basis(out_size), tint[:, None] * coeffs[None, :])
  img = cv2.multiply(img, light, dtype=cv2.CV_8U)
  # Camera response: a gamma curve as a lookup table, then blur and noise.
  gamma = d.u(1.0, 1.25)
  lut = (np.power(_LUT_X, gamma) * 255.0 + 0.5).astype(np.uint8)
  img = cv2.LUT(img, lut, dst=img)
  sigma = d.choice((0.0, 0.5, 0.8, 1.1), (0.3, 0.3, 0.25, 0.15)) * out_size / 64.0
  if sigma > 0:  # An explicit small kernel: OpenCV's default size is ~2x wider than needed.
    k = 2 * int(math.ceil(2 * sigma)) + 1
    img = cv2.GaussianBlur(img, (k, k), sigma)
  return _add_noise(d, img)


# ------------------------------------------------------------------------- public


def _canvas_size(image_size: int) -> int:
  # Small images are drawn at twice the size and area-averaged: smoother edges on
  # the few-pixel features of a 64 px face at ~4 draw-call cost per pixel.
  return image_size * 2 if image_size < 96 else image_size


def render_example(seed: int, index: int, *, image_size: int, is_face: bool, darker: bool,
                   male: bool, young: bool, nonface_darker_fraction: float,
                   blond: bool | None = None, blond_contrast: float = 1.0,
                   sex_ambiguity: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, int], np.ndarray]:
  """Renders example ``index`` of the dataset with ``seed`` (pure function of its args).

  ``sex_ambiguity`` > 0 blurs the face's sex cues (:func:`blur_sex_cues`) with draws
  from a stream of its own, so everything else about the face stays the same.

  Returns:
    ``(image uint8 [S,S,3], mask bool [S,S], attributes, hair_mask bool [S,S])``.
  """
  d = _Draws(np.random.default_rng([seed, _RENDER_STREAM, index]))
  size = _canvas_size(image_size)
  canvas = _background(d, size)
  mask = np.zeros((size, size), np.uint8)
  hair_mask = np.zeros((size, size), np.uint8)
  if is_face:
    f = sample_face(d, darker=darker, male=male, young=young, blond=blond,
                    blond_contrast=blond_contrast)
    if sex_ambiguity > 0.0:
      e = _Draws(np.random.default_rng([seed, _AMBIGUITY_STREAM, index]))
      blur_sex_cues(f, e, sex_ambiguity, blond=blond, blond_contrast=blond_contrast)
    render_face(f, canvas, mask, hair_mask)
    attrs = face_attributes(f)
  else:
    render_nonface(d, canvas, nonface_darker_fraction)
    attrs = {name: -1 for name in ATTRIBUTE_NAMES}
    attrs["is_face"] = 0
  image = _camera(d, canvas, image_size)
  if size != image_size:
    mask = cv2.resize(mask, (image_size, image_size), interpolation=cv2.INTER_AREA)
    hair_mask = cv2.resize(hair_mask, (image_size, image_size), interpolation=cv2.INTER_AREA)
  # Hair needs a strict majority of its 2x2 block: a block split evenly with skin
  # stays skin, so the two masks never overlap.
  return image, mask >= 128, attrs, hair_mask > 128


def generate(num: int, *, seed: int, image_size: int = 64, task: str = "faces_vs_nonfaces",
             **knobs) -> dict[str, Any]:
  """Generates the synthetic biased-faces dataset.

  Args:
    num: number of images.
    seed: non-negative integer; the same seed and arguments give the same arrays.
    image_size: side of the square images (e.g. 64 or 128).
    task: ``"faces_vs_nonfaces"`` (label = is_face), ``"sex"`` (all faces,
      label = Male) or ``"blond"`` (all faces, label = Blond_Hair, with sex as the
      spurious attribute: the ``blond_fraction_*`` knobs).
    **knobs: group imbalance, see ``DEFAULT_KNOBS`` (``darker_fraction``,
      ``male_fraction_lighter``, ``male_fraction_darker``, ``young_fraction``,
      ``face_fraction``, ``nonface_darker_fraction``, ``balanced``, ``sex_ambiguity``).

  Returns:
    Dict with ``image`` uint8 [N,H,W,3] RGB, ``label`` int32 [N], ``attributes``
    (name -> int32 [N]; face attributes are -1 on non-face images), ``mask`` bool
    [N,H,W] (visible face skin; empty for non-faces) and ``hair_mask`` bool [N,H,W]
    (visible scalp hair, not facial hair).

  Raises:
    ValueError: bad ``num``, ``seed``, ``image_size``, task or knobs.
  """
  full = validate_knobs(task, **knobs)
  if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0:
    raise ValueError(f"num must be a non-negative integer, got {num!r}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
  if (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
      or image_size < 16):
    raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}")
  num, seed, image_size = int(num), int(seed), int(image_size)
  plan = _plan(num, seed, task, full)
  images = np.empty((num, image_size, image_size, 3), np.uint8)
  masks = np.empty((num, image_size, image_size), bool)
  hair_masks = np.empty((num, image_size, image_size), bool)
  # Attributes gather in Python lists: one array per column at the end is far
  # cheaper than a NumPy scalar store per attribute and example.
  values = {name: [] for name in ATTRIBUTE_NAMES}
  blonds = plan["blond"].tolist() if "blond" in plan else [None] * num
  flags = zip(plan["is_face"].tolist(), plan["darker"].tolist(), plan["male"].tolist(),
              plan["young"].tolist(), blonds)
  for i, (is_face, darker, male, young, blond) in enumerate(flags):
    images[i], masks[i], attrs, hair_masks[i] = render_example(
        seed, i, image_size=image_size, is_face=is_face, darker=darker, male=male, young=young,
        nonface_darker_fraction=full["nonface_darker_fraction"], blond=blond,
        blond_contrast=full["blond_contrast"], sex_ambiguity=full["sex_ambiguity"])
    for name in ATTRIBUTE_NAMES:
      values[name].append(attrs[name])
  columns = {name: np.array(v, np.int32).reshape(num) for name, v in values.items()}
  label = {"sex": "Male", "blond": "Blond_Hair"}.get(task, "is_face")
  label = columns[label]
  return {"image": images, "label": label.astype(np.int32).copy(), "attributes": columns,
          "mask": masks, "hair_mask": hair_masks}


def sample_grid(path: str | None = None, *, image_size: int = 64, per_group: int = 6,
                seed: int = 0, scale: int = 2) -> np.ndarray:
  """Labelled grid of example faces, one row per skin x sex x age group, plus non-faces.

  Each row's first tiles spell the group (e.g. "darker" "female" "young").

  Args:
    path: where to save the PNG (optional).
    image_size: rendered size of each example.
    per_group: examples per row (at least 3, for the caption).
    seed: generator seed.
    scale: integer upscaling of the tiles.

  Returns:
    The grid as a uint8 RGB image.
  """
  if per_group < 3:
    raise ValueError(f"sample_grid needs per_group >= 3 to caption each row, got {per_group}")
  # Balanced over skin x sex with half young: 16 x per_group leaves every group full.
  data = generate(16 * per_group, seed=seed, image_size=image_size, task="sex",
                  balanced=True, young_fraction=0.5)
  names = groups.assign_groups(data["attributes"], "skin,Male,Young")
  tiles, labels = [], []
  for skin in ("lighter", "darker"):
    for sex in ("female", "male"):
      for age in ("young", "old"):
        idx = np.flatnonzero(names == f"{skin}_{sex}_{age}")[:per_group]
        tiles.extend(data["image"][idx])
        labels.extend([skin, sex, age] + [""] * (per_group - 3))
  negatives = generate(4 * per_group, seed=seed + 1, image_size=image_size, face_fraction=0.0)
  tiles.extend(negatives["image"][:per_group])
  labels.extend(["non-face", "", ""] + [""] * (per_group - 3))
  grid = imaging.tile_grid(np.stack(tiles), labels, ncols=per_group, scale=scale)
  if path:
    imaging.save_image(path, grid)
  return grid


def main(argv: list[str] | None = None) -> int:
  """``python -m facebias_jax.data.synthetic --grid=PATH``: writes the sample grid."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--grid", required=True, help="PNG path for the labelled group grid")
  parser.add_argument("--image_size", type=int, default=64, help="rendered image side")
  parser.add_argument("--per_group", type=int, default=6, help="examples per group row")
  parser.add_argument("--seed", type=int, default=0, help="generator seed")
  parser.add_argument("--scale", type=int, default=2, help="tile upscaling factor")
  args = parser.parse_args(argv)
  sample_grid(args.grid, image_size=args.image_size, per_group=args.per_group, seed=args.seed,
              scale=args.scale)
  print(f"Wrote {args.grid}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
