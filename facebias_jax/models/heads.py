"""Classification heads shared by the models.

A *linear chain* is a stack of ``nnx.Linear`` layers with no nonlinearity in between,
e.g. torchvision's ``fc`` (512 -> 1000) followed by ``Linear(1000, 2)`` as in
``Sequential(resnet18, Linear(1000, 2))`` of the original CAM studies. Because the chain
is affine and global average pooling is linear, it composes into one affine map
``(w [C, K], b [K])`` -- the matrix CAM (Zhou et al. 2016) projects the feature map with.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

# Said by every model whose head is not GAP + linear, so CAM users get one clear hint.
_NOT_LINEAR_HINT = (
    "CAM needs a head that is global average pooling followed by linear layers; "
    "use method='gradcam' (or another gradient/perturbation method) for this model.")


def not_linear_head_error(model_name: str, why: str) -> ValueError:
  """Builds the ValueError raised by ``linear_head()`` of non-GAP+linear models.

  Args:
    model_name: name shown to the user, e.g. ``"standard_cnn"``.
    why: what the head does instead, e.g. ``"flattens the feature map into an MLP"``.

  Returns:
    The error to raise.
  """
  return ValueError(f"{model_name} has no linear head: it {why}. {_NOT_LINEAR_HINT}")


class LinearChain(nnx.Module):
  """Linear layers applied one after another without activations.

  Args:
    in_features: input width (channels of the pooled feature map).
    hidden_dims: widths of the intermediate layers; ``()`` is a single Linear layer.
    out_features: number of outputs (classes).
    rngs: parameter initialisation keys.
  """

  def __init__(self, in_features: int, hidden_dims: Sequence[int], out_features: int, *,
               rngs: nnx.Rngs):
    widths = [int(in_features), *(int(d) for d in hidden_dims), int(out_features)]
    if any(w <= 0 for w in widths):
      raise ValueError(f"Head widths must be positive, got {widths} "
                       f"(in_features, *hidden_dims, out_features).")
    self.layers = nnx.List([
        nnx.Linear(d_in, d_out, rngs=rngs) for d_in, d_out in zip(widths[:-1], widths[1:])
    ])

  @property
  def hidden_dims(self) -> tuple[int, ...]:
    """Widths of the intermediate layers (empty for a single Linear layer)."""
    return tuple(layer.out_features for layer in self.layers[:-1])

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    for layer in self.layers:
      x = layer(x)
    return x

  def compose(self) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Composes the chain into a single affine map.

    Returns:
      ``(w [in_features, out_features], b [out_features])`` with
      ``chain(x) == x @ w + b`` (up to float rounding).
    """
    first = self.layers[0]
    w, b = first.kernel[...], first.bias[...]
    for layer in self.layers[1:]:
      # (x @ w + b) @ k + c == x @ (w @ k) + (b @ k + c)
      k = layer.kernel[...]
      w, b = w @ k, b @ k + layer.bias[...]
    return w, b
