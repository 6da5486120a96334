"""L1-regularised logistic regression, the last-layer fit of DFR.

Solves the problem LIBLINEAR solves for ``LogisticRegression(penalty="l1",
solver="liblinear", C=c)`` (what Kirichenko et al. 2022 use), with its intercept
convention: the intercept is the weight of a constant feature 1 and is penalised like
the others::

    min_{w, b}  |w|_1 + |b| + C * sum_i log(1 + exp(-y_i (w . x_i + b))),  y_i in {-1, 1}

by FISTA (Beck & Teboulle 2009, accelerated proximal gradient, soft-thresholding as
the proximal step) with adaptive restart (O'Donoghue & Candes 2015), in float64. The
problem is convex, so any solver that converges reaches the same minimiser; the tests
compare the result with scikit-learn's on the same inputs.
"""

from __future__ import annotations

import numpy as np


def _loss_grad(theta: np.ndarray, x1: np.ndarray, y: np.ndarray, c: float
               ) -> tuple[float, np.ndarray]:
  margins = y * (x1 @ theta)
  # log(1 + exp(-m)) and its derivative -sigmoid(-m), both stable for large |m|.
  loss = c * float(np.sum(np.logaddexp(0.0, -margins)))
  grad = x1.T @ (-y * c * 0.5 * (1.0 - np.tanh(0.5 * margins)))
  return loss, grad


def _soft_threshold(v: np.ndarray, t: float) -> np.ndarray:
  return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def l1_logistic_regression(x: np.ndarray, y: np.ndarray, *, c: float, tol: float = 1e-9,
                           max_iter: int = 50_000) -> tuple[np.ndarray, float]:
  """Fits ``(w, b)`` of the L1-penalised logistic regression above.

  Args:
    x: features float [N, D].
    y: binary labels [N] (0/1 or -1/1).
    c: inverse regularisation strength (scikit-learn's ``C``), > 0.
    tol: stop when no coefficient moved more than ``tol * max(1, max |theta|)`` in an
      iteration.
    max_iter: iteration cap (a ``RuntimeError`` if reached).

  Returns:
    ``(w float64 [D], b float)``; decision values are ``x @ w + b``.
  """
  x = np.asarray(x, np.float64)
  labels = np.asarray(y)
  if x.ndim != 2 or labels.shape != (x.shape[0],):
    raise ValueError(f"need features [N, D] and labels [N], got {x.shape} and {labels.shape}")
  values = set(np.unique(labels).tolist())
  if not values <= {0, 1} and not values <= {-1, 1}:
    raise ValueError(f"labels must be binary (0/1 or -1/1), got values {sorted(values)}")
  if len(values) < 2:
    raise ValueError("logistic regression needs examples of both classes")
  if not c > 0:
    raise ValueError(f"C must be > 0, got {c}")
  signs = np.where(labels > 0, 1.0, -1.0)
  x1 = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
  # Lipschitz constant of the smooth part's gradient: C ||X||_2^2 / 4.
  step = 1.0 / (c * np.linalg.norm(x1, 2) ** 2 / 4.0)
  theta = np.zeros(x1.shape[1])
  momentum, t = theta.copy(), 1.0
  for _ in range(max_iter):
    _, grad = _loss_grad(momentum, x1, signs, c)
    new = _soft_threshold(momentum - step * grad, step)
    moved = float(np.max(np.abs(new - theta)))
    # Restart the momentum when it points uphill (the gradient-mapping test).
    if np.dot(momentum - new, new - theta) > 0:
      t_next, momentum = 1.0, new.copy()
    else:
      t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
      momentum = new + ((t - 1.0) / t_next) * (new - theta)
    theta, t = new, t_next
    if moved <= tol * max(1.0, float(np.max(np.abs(theta)))):
      return theta[:-1], float(theta[-1])
  raise RuntimeError(f"L1 logistic regression did not converge in {max_iter} iterations "
                     f"(C={c}); lower C or standardise the features")


def objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, *, c: float) -> float:
  """The objective above at ``(w, b)`` (to compare solvers)."""
  signs = np.where(np.asarray(y) > 0, 1.0, -1.0)
  margins = signs * (np.asarray(x, np.float64) @ w + b)
  return float(np.sum(np.abs(w)) + abs(b) + c * np.sum(np.logaddexp(0.0, -margins)))
