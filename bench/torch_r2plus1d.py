"""R(2+1)D in plain torch.nn, for the PyTorch side of bench/gpu_bench.py.

The same network as torchvision's ``VideoResNet`` built the IG-65M way
(tests/torch_reference.py: Caffe2 mid-plane counts in the second convolution
of the first block of layers 2-4, BatchNorm eps 1e-3), written with torch.nn
alone so that the GPU benchmark needs no torchvision: a GPU machine may have
torch without it. ``layers`` and ``width`` shrink it for ``--dry-run``;
``layers=(3, 4, 6, 3), width=1`` is R(2+1)D-34, whose parameter count
tests/test_gpu_bench.py checks against torchvision's.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

DEPTHS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-3, momentum=0.1)


def _midplanes(inplanes: int, planes: int) -> int:
    """The (2+1)D mid-plane count that matches a full 3x3x3 convolution's parameters."""
    return (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)


class Conv2Plus1D(nn.Sequential):
    def __init__(self, inplanes: int, planes: int, midplanes: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(inplanes, midplanes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            _bn(midplanes), nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, caffe2_midplanes: bool):
        super().__init__()
        mid1 = _midplanes(inplanes, planes)
        # torchvision computes both mid-plane counts from inplanes; the IG-65M (Caffe2) weights
        # use planes for the second convolution.
        mid2 = _midplanes(planes, planes) if caffe2_midplanes else mid1
        self.conv1 = nn.Sequential(Conv2Plus1D(inplanes, planes, mid1, stride), _bn(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, mid2), _bn(planes))
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv3d(inplanes, planes, 1, stride, bias=False), _bn(planes))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class R2Plus1D(nn.Module):
    """(N, 3, T, H, W) clips -> (N, num_classes) logits."""

    def __init__(self, num_classes: int, layers: Sequence[int] = DEPTHS[34], width: float = 1.0):
        super().__init__()
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        stem = max(1, round(45 * width))
        self.stem = nn.Sequential(
            nn.Conv3d(3, stem, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), _bn(stem), nn.ReLU(inplace=True),
            nn.Conv3d(stem, widths[0], (3, 1, 1), 1, (1, 0, 0), bias=False), _bn(widths[0]), nn.ReLU(inplace=True),
        )
        stages, inplanes = [], widths[0]
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(inplanes, planes, stride, caffe2_midplanes=i > 0)]
            stage += [BasicBlock(planes, planes, 1, caffe2_midplanes=False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            inplanes = planes
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(x.mean(dim=(2, 3, 4)))
