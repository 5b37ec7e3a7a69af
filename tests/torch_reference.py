"""torchvision's own VideoResNet, built as the IG-65M release and as stock r2plus1d_18.

The independent reference for the Flax R(2+1)D and its weight converter: the
construction follows moabitcoin/ig65m-pytorch (FACTS.md "The backbone"), with
random weights and random, non-trivial BatchNorm statistics so that a swapped
mean/var, a wrong eps or a wrong transpose shows up in the logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.video import r2plus1d_18
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet


def ig65m_r2plus1d_34(num_classes: int) -> VideoResNet:
    """R(2+1)D-34 exactly as the IG-65M weights expect it."""
    model = VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=[3, 4, 6, 3], stem=R2Plus1dStem)
    model.fc = nn.Linear(512, num_classes)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.eps, module.momentum = 1e-3, 0.9
    # Caffe2 mid-plane counts in the first block of layers 2-4 (and their BNs, eps 1e-3).
    model.layer2[0].conv2[0] = Conv2Plus1D(128, 128, 288)
    model.layer3[0].conv2[0] = Conv2Plus1D(256, 256, 576)
    model.layer4[0].conv2[0] = Conv2Plus1D(512, 512, 1152)
    for layer in (model.layer2, model.layer3, model.layer4):
        for module in layer[0].conv2[0].modules():
            if isinstance(module, nn.BatchNorm3d):
                module.eps, module.momentum = 1e-3, 0.9
    return model


def torchvision_r2plus1d_18(num_classes: int) -> VideoResNet:
    """torchvision's stock r2plus1d_18 (no weights are downloaded)."""
    return r2plus1d_18(weights=None, num_classes=num_classes)


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random conv/linear weights and random BN affine + running statistics; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv3d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif isinstance(module, nn.BatchNorm3d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) * 1.0 + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                module.num_batches_tracked.fill_(1000)
    return model.eval()


def torch_features(model: VideoResNet, clip_ncthw: torch.Tensor) -> torch.Tensor:
    """layer4 output (N, C, T, H, W): torchvision's forward up to the pool."""
    x = model.stem(clip_ncthw)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
    return x
