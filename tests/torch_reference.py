"""Minimal torchvision-layout ResNet in plain torch, the reference for weight import tests.

torchvision is not installed in the test environment, so this re-implements its ResNet
(v1.5 bottleneck, same module names, so ``state_dict()`` keys match torchvision's) with
an optional ``width`` multiplier for tiny models.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU()
    self.downsample = _downsample(inplanes, planes * self.expansion, stride)

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU()
    self.downsample = _downsample(inplanes, planes * self.expansion, stride)

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


def _downsample(inplanes, outplanes, stride):
  if stride == 1 and inplanes == outplanes:
    return None
  return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False),
                       nn.BatchNorm2d(outplanes))


class TorchResNet(nn.Module):
  """torchvision.models.ResNet with the same parameter names."""

  def __init__(self, block, layers, num_classes=1000, width=1.0):
    super().__init__()
    base = max(1, int(round(64 * width)))
    self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(base)
    self.relu = nn.ReLU()
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = base
    for i, n in enumerate(layers):
      blocks = []
      for j in range(n):
        blocks.append(block(inplanes, base * 2 ** i, 2 if (i > 0 and j == 0) else 1))
        inplanes = base * 2 ** i * block.expansion
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(inplanes, num_classes)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
  """Gives every BatchNorm non-trivial affine parameters and running statistics."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        n = m.num_features
        m.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
        m.bias.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(n, generator=gen))


def resnet18(num_classes=1000, width=1.0):
  return TorchResNet(BasicBlock, (2, 2, 2, 2), num_classes, width)


def resnet50(num_classes=1000, width=1.0):
  return TorchResNet(Bottleneck, (3, 4, 6, 3), num_classes, width)
