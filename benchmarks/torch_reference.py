"""PyTorch versions of the library's architectures, used only as benchmark references.

The layer sizes, optimiser (Adam) and losses match the JAX models in
`facebias_jax.models` so that throughput ratios compare like with like:

- ``standard_cnn``: the MIT 6.S191 debiasing-lab classifier (Conv 12 k5 s2, 24 k5 s2,
  48 k3 s2, 72 k3 s2, each ReLU then BatchNorm; flatten; Dense 512 + ReLU; Dense 1),
  sigmoid binary cross-entropy.
- ``dbvae``: that classifier as encoder (1 logit + 2 x latent outputs) and the lab's
  decoder (Dense 4x4x72, transposed convs 48 k3, 24 k3, 12 k5, 3 k5, all stride 2),
  loss = BCE + face-masked (KL weight x KL + mean |x - x_hat|), as in the lab.
- ``resnet18``: the torchvision ResNet-18 layout (BasicBlocks [2, 2, 2, 2]) with a
  global-average-pool and linear head.

Padding differs only where TensorFlow "SAME" is asymmetric for stride 2 (PyTorch pads
symmetrically); shapes and FLOPs are identical. Torch is imported by the benchmarks
only; the library never imports this module.

Each step comes in the ``VARIANTS`` a PyTorch user would try for speed on a CPU:
``eager``; ``channels_last`` (weights and input in NHWC memory format, so oneDNN runs
its NHWC kernels without layout conversions); ``compile`` (``torch.compile`` with the
default inductor backend of the model's forward and loss, or of the eval forward for
inference; backward comes from AOTAutograd, the Adam update stays eager); and
``compile_channels_last``. All compute the same step up to float rounding.

``RemoteStep`` runs one of these steps in a child process (``python -m
benchmarks.torch_reference``): PyTorch and the library's oneDNN convolutions both use
OpenMP, and in one process their thread teams together outnumber the cores, which makes
libgomp stop spinning between parallel regions and slows PyTorch's many small ones.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

KL_WEIGHT = 0.0005
LEARNING_RATE = 5e-4  # Adam, as in the JAX benchmarks.
# Variant name -> (torch.compile, channels-last memory format).
_VARIANT_FLAGS = {
    "eager": (False, False),
    "channels_last": (False, True),
    "compile": (True, False),
    "compile_channels_last": (True, True),
}
VARIANTS = tuple(_VARIANT_FLAGS)


class StandardCNN(nn.Module):
  """The MIT debiasing-lab CNN (NCHW, as PyTorch users run it)."""

  def __init__(self, num_outputs: int = 1, n_filters: int = 12, image_size: int = 64):
    super().__init__()
    widths = [n_filters, 2 * n_filters, 4 * n_filters, 6 * n_filters]
    kernels = [5, 5, 3, 3]
    layers = []
    in_ch = 3
    for width, k in zip(widths, kernels):
      layers += [nn.Conv2d(in_ch, width, k, stride=2, padding=k // 2), nn.ReLU(),
                 nn.BatchNorm2d(width)]
      in_ch = width
    self.features = nn.Sequential(*layers)
    spatial = image_size // 16
    self.head = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * spatial * spatial, 512),
                              nn.ReLU(), nn.Linear(512, num_outputs))

  def forward(self, x):
    return self.head(self.features(x))


class DBVAE(nn.Module):
  """The lab's DB-VAE: the standard CNN encoder plus a transposed-conv decoder."""

  def __init__(self, latent_dim: int = 100, n_filters: int = 12, image_size: int = 64):
    super().__init__()
    self.latent_dim = latent_dim
    self.encoder = StandardCNN(2 * latent_dim + 1, n_filters, image_size)
    self.spatial = image_size // 16
    self.n6 = 6 * n_filters
    self.fc = nn.Linear(latent_dim, self.spatial * self.spatial * self.n6)
    def up(cin, cout, k):
      return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=k // 2, output_padding=1)
    self.deconvs = nn.ModuleList([up(self.n6, 4 * n_filters, 3),
                                  up(4 * n_filters, 2 * n_filters, 3),
                                  up(2 * n_filters, n_filters, 5),
                                  up(n_filters, 3, 5)])

  def forward(self, x):
    out = self.encoder(x)
    logit = out[:, :1]
    mu = out[:, 1:1 + self.latent_dim]
    logvar = out[:, 1 + self.latent_dim:]
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    h = F.relu(self.fc(z)).view(-1, self.n6, self.spatial, self.spatial)
    for i, deconv in enumerate(self.deconvs):
      h = deconv(h)
      if i < len(self.deconvs) - 1:
        h = F.relu(h)
    return logit, mu, logvar, torch.sigmoid(h)


class BasicBlock(nn.Module):
  """ResNet basic block (two 3x3 convs, projection shortcut when shapes change)."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.down = None
    if stride != 1 or cin != cout:
      self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                nn.BatchNorm2d(cout))

  def forward(self, x):
    identity = x if self.down is None else self.down(x)
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return F.relu(out + identity)


class ResNet18(nn.Module):
  """torchvision-layout ResNet-18 with a GAP + linear head."""

  def __init__(self, num_outputs: int = 1):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                              nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    blocks = []
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
      blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
      cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(512, num_outputs)

  def forward(self, x):
    h = self.blocks(self.stem(x))
    return self.fc(h.mean(dim=(2, 3)))


def build(name: str, image_size: int) -> nn.Module:
  """Returns the PyTorch reference model called ``name``."""
  if name == "standard_cnn":
    return StandardCNN(1, image_size=image_size)
  if name == "dbvae":
    return DBVAE(image_size=image_size)
  if name == "resnet18":
    return ResNet18(1)
  raise ValueError(f"No PyTorch reference for model {name!r}; "
                   "choose standard_cnn, dbvae or resnet18.")


def loss_fn(name: str, model: nn.Module, images, labels):
  """The training loss of ``name`` (BCE; DB-VAE adds the face-masked VAE loss)."""
  if name == "dbvae":
    logit, mu, logvar, recon = model(images)
    bce = F.binary_cross_entropy_with_logits(logit[:, 0], labels, reduction="none")
    kl = 0.5 * torch.sum(torch.exp(logvar) + mu ** 2 - 1.0 - logvar, dim=1)
    rec = torch.mean(torch.abs(images - recon), dim=(1, 2, 3))
    return torch.mean(bce + labels * (KL_WEIGHT * kl + rec))
  logit = model(images)
  return F.binary_cross_entropy_with_logits(logit[:, 0], labels)


def parse_variants(text: str) -> tuple[str, ...]:
  """The variant names in the comma-separated ``text``, in ``VARIANTS`` order.

  Raises:
    ValueError: ``text`` names no variant or one not in ``VARIANTS``.
  """
  names = [v for v in text.split(",") if v]
  unknown = [v for v in names if v not in _VARIANT_FLAGS]
  if unknown or not names:
    raise ValueError(f"unknown variants {unknown or text!r}; choose a comma-separated "
                     f"subset of {', '.join(VARIANTS)}")
  return tuple(v for v in VARIANTS if v in names)


def _build_step(name: str, batch_size: int, image_size: int, *, threads: int,
                variant: str, lr: float = LEARNING_RATE,
                seed: int = 0) -> tuple[Callable[[], torch.Tensor], Callable[[], None]]:
  """``make_step``, with a train step that returns its (detached) loss."""
  if variant not in _VARIANT_FLAGS:
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
  compiled, channels_last = _VARIANT_FLAGS[variant]
  torch.set_num_threads(threads)
  torch.manual_seed(seed)
  model = build(name, image_size)
  rng = np.random.default_rng(seed)
  images = torch.from_numpy(
      rng.random((batch_size, 3, image_size, image_size), dtype=np.float32))
  labels = torch.from_numpy((rng.random(batch_size) < 0.5).astype(np.float32))
  if channels_last:
    # Weights and input both: a channels-last input to NCHW weights (or the reverse)
    # makes every convolution convert layouts.
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
  opt = torch.optim.Adam(model.parameters(), lr=lr)

  def train_loss():
    return loss_fn(name, model, images, labels)

  def predict():
    out = model(images)
    if isinstance(out, tuple):
      # The DB-VAE's reconstruction too, as the JAX benchmark returns: a compiled graph
      # would otherwise drop the whole decoder, whose output nobody reads.
      return torch.sigmoid(out[0]), out[3]
    return torch.sigmoid(out)

  if compiled:
    # Compiled lazily, on each function's first call: a process that only trains never
    # compiles the eval graph (and model.training is a guard, so the two never mix).
    train_loss, predict = torch.compile(train_loss), torch.compile(predict)

  def use_threads():
    # Several references with different thread counts share one process.
    if torch.get_num_threads() != threads:
      torch.set_num_threads(threads)

  def train_step() -> torch.Tensor:
    use_threads()
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = train_loss()
    loss.backward()
    opt.step()
    return loss.detach()

  def infer() -> None:
    use_threads()
    model.eval()
    with torch.inference_mode():
      predict()

  return train_step, infer


def make_step(name: str, batch_size: int, image_size: int, *, threads: int,
              variant: str = "eager", lr: float = LEARNING_RATE,
              seed: int = 0) -> tuple[Callable[[], None], Callable[[], None]]:
  """Builds one PyTorch training step and one inference call on a fixed batch.

  Args:
    name: ``standard_cnn``, ``dbvae`` or ``resnet18``.
    batch_size: images per step.
    image_size: square input side in pixels.
    threads: ``torch.set_num_threads`` value, applied on every call.
    variant: one of ``VARIANTS``. The compiled ones compile on their first call (tens
      of seconds) and may need a few more calls to reach steady state.
    lr: Adam learning rate.
    seed: seed for weights and data.

  Returns:
    ``(train_step, infer)``: zero-argument callables that run synchronously and return
    None (timing helpers take a returned number as the call's own timing).
  """
  train_step, infer = _build_step(name, batch_size, image_size, threads=threads,
                                  variant=variant, lr=lr, seed=seed)

  def step() -> None:
    train_step()

  return step, infer


def train_losses(name: str, batch_size: int, image_size: int, *, variant: str,
                 steps: int, threads: int = 1, seed: int = 0) -> list[float]:
  """The loss of each of ``steps`` consecutive train steps of ``make_step``'s step.

  Before each step's update, so the first is the loss of the initial weights.
  """
  train_step, _ = _build_step(name, batch_size, image_size, threads=threads,
                              variant=variant, seed=seed)
  return [float(train_step()) for _ in range(steps)]


class RemoteStep:
  """``make_step`` in a child process, called like the in-process step.

  Each call asks the child for one step and returns the seconds the child measured
  (so pipe latency is not charged to PyTorch). The child inherits this process's CPU
  affinity (``--single_core``) and waits on its pipe between calls, so it never runs
  at the same time as the caller's own work.

  Attributes:
    first_call_s: seconds of the step's first call, which the child makes before it
      reports ready: ``torch.compile``'s compilation for the compiled variants, cache
      and thread-pool set-up otherwise.
  """

  def __init__(self, name: str, batch_size: int, image_size: int, *, threads: int,
               mode: str = "train", variant: str = "eager"):
    if mode not in ("train", "infer"):
      raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")
    if variant not in _VARIANT_FLAGS:
      raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    self._proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.torch_reference", name, str(batch_size),
         str(image_size), str(threads), mode, variant],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = self._proc.stdout.readline().split()
    if len(ready) != 2 or ready[0] != "ready":
      self._proc.kill()
      raise RuntimeError(f"PyTorch reference process for {name} ({variant}, {mode}) "
                         f"failed to start (exit code {self._proc.wait()}; its error "
                         "is above)")
    self.first_call_s = float(ready[1])

  def __call__(self) -> float:
    self._proc.stdin.write("step\n")
    self._proc.stdin.flush()
    return float(self._proc.stdout.readline())

  def close(self) -> None:
    if self._proc.poll() is None:
      self._proc.stdin.close()
      self._proc.wait(timeout=60)


def _serve(argv: Sequence[str]) -> None:
  """Child side of ``RemoteStep``: one step per line read, its seconds written back.

  Makes the first (compiling) call before reporting ready, so that call's seconds are
  reported apart from the timed ones.
  """
  name, batch_size, image_size, threads, mode, variant = argv
  train_step, infer = make_step(name, int(batch_size), int(image_size),
                                threads=int(threads), variant=variant)
  step = train_step if mode == "train" else infer

  def timed() -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start

  print("ready", timed(), flush=True)
  for _ in sys.stdin:
    print(timed(), flush=True)


if __name__ == "__main__":
  _serve(sys.argv[1:])
