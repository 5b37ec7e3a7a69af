"""The existing R(2+1)D backbone against FACTS.md and torchvision's VideoResNet.

Shapes come from abstract evaluation (no real forward pass at 64x112x112).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn
from torchvision.models.video import r2plus1d_18
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

from actlumos_jax.models.r2plus1d import (AxisFactoredConv, R2Plus1D, R2Plus1DSpec, block_midplanes, midplanes,
                                         parameter_count)


def abstract(spec):
    return nnx.eval_shape(lambda: R2Plus1D(spec, rngs=nnx.Rngs(0)))


def feature_shape(spec, clip_shape):
    graphdef, state = nnx.split(abstract(spec))
    clip = jax.ShapeDtypeStruct(clip_shape, jnp.float32)
    return jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).features(x), state, clip).shape


def torch_ig65m_34(num_classes):
    """The IG-65M construction from FACTS.md, in torchvision."""
    model = VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem, num_classes=num_classes)
    model.layer2[0].conv2[0] = Conv2Plus1D(128, 128, 288)
    model.layer3[0].conv2[0] = Conv2Plus1D(256, 256, 576)
    model.layer4[0].conv2[0] = Conv2Plus1D(512, 512, 1152)
    return model


def torch_midplanes(model):
    """(conv1 mid, conv2 mid) per block, read off the torch modules."""
    return [[(block.conv1[0][0].out_channels, block.conv2[0][0].out_channels) for block in layer]
            for layer in (model.layer1, model.layer2, model.layer3, model.layer4)]


def torch_count(model):
    return sum(p.numel() for p in model.parameters())


def closed_form_count(blocks, mids, num_classes):
    """Parameters of R(2+1)D written out by hand: bias-free convs, BN (scale, bias), fc."""
    total = 3 * 45 * 49 + 2 * 45 + 45 * 64 * 3 + 2 * 64
    in_planes = 64
    for stage, planes in enumerate((64, 128, 256, 512)):
        for b in range(blocks[stage]):
            src = in_planes if b == 0 else planes
            mid1, mid2 = mids[stage][b]
            total += src * mid1 * 9 + 2 * mid1 + mid1 * planes * 3 + 2 * planes  # conv1 + bn1
            total += planes * mid2 * 9 + 2 * mid2 + mid2 * planes * 3 + 2 * planes  # conv2 + bn2
            if b == 0 and stage > 0:
                total += src * planes + 2 * planes  # downsample conv + BN
        in_planes = planes
    return total + (512 * num_classes + num_classes if num_classes else 0)


FACTS_IG65M_MIDPLANES = [
    [(144, 144)] * 3,
    [(230, 288)] + [(288, 288)] * 3,
    [(460, 576)] + [(576, 576)] * 5,
    [(921, 1152)] + [(1152, 1152)] * 2,
]


def test_midplanes_formula():
    assert midplanes(64, 64) == 144
    assert midplanes(64, 128) == 230
    assert midplanes(128, 256) == 460
    assert midplanes(256, 512) == 921
    assert midplanes(512, 512) == 1152


def test_ig65m_midplanes_match_facts_and_torch():
    spec = R2Plus1DSpec(34, "ig65m")
    got = [list(map(tuple, stage)) for stage in block_midplanes(spec)]
    assert got == FACTS_IG65M_MIDPLANES
    assert got == torch_midplanes(torch_ig65m_34(359))
    # And the built module really has those widths.
    model = abstract(spec)
    built = [[(b.conv1.spatial.out_features, b.conv2.spatial.out_features) for b in layer] for layer in model.layers]
    assert built == FACTS_IG65M_MIDPLANES


def test_torchvision_variant_midplanes_match_r2plus1d_18():
    spec = R2Plus1DSpec(18, "torchvision")
    got = [list(map(tuple, stage)) for stage in block_midplanes(spec)]
    assert got == torch_midplanes(r2plus1d_18(weights=None))
    assert got[1][0] == (230, 230)  # no Caffe2 change in the stock model


def test_parameter_counts():
    ig65m = parameter_count(abstract(R2Plus1DSpec(34, "ig65m", num_classes=359)))
    assert ig65m == torch_count(torch_ig65m_34(359))
    assert ig65m == closed_form_count((3, 4, 6, 3), FACTS_IG65M_MIDPLANES, 359)
    backbone = parameter_count(abstract(R2Plus1DSpec(34, "ig65m")))
    assert backbone == closed_form_count((3, 4, 6, 3), FACTS_IG65M_MIDPLANES, None)
    assert round(backbone / 1e6, 2) == 63.49
    stock = parameter_count(abstract(R2Plus1DSpec(18, "torchvision", num_classes=400)))
    assert stock == torch_count(r2plus1d_18(weights=None))


def test_batchnorm_eps_per_variant():
    ig65m, stock = abstract(R2Plus1DSpec(10, "ig65m")), abstract(R2Plus1DSpec(10, "torchvision"))
    assert ig65m.stem.spatial_bn.epsilon == 1e-3 and ig65m.layers[3][0].down_bn.epsilon == 1e-3
    assert stock.stem.spatial_bn.epsilon == 1e-5
    # torch momentum 0.9 (IG-65M) is Flax momentum 0.1.
    assert ig65m.stem.spatial_bn.momentum == pytest.approx(0.1)
    assert stock.stem.spatial_bn.momentum == pytest.approx(0.9)


def test_feature_map_shapes():
    assert feature_shape(R2Plus1DSpec(34, "ig65m"), (1, 64, 112, 112, 3)) == (1, 8, 7, 7, 512)
    assert feature_shape(R2Plus1DSpec(10, "ig65m", width=0.125), (2, 8, 32, 32, 3)) == (2, 1, 2, 2, 64)
    # torchvision's own model agrees on the time/space reduction (small clip, real forward).
    with torch.no_grad():
        torch_model = r2plus1d_18(weights=None).eval()
        x = torch.zeros(1, 3, 16, 48, 48)
        for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(torch_model, name)(x)
    assert feature_shape(R2Plus1DSpec(18, "torchvision"), (1, 16, 48, 48, 3)) == (1, 2, 3, 3, 512)
    assert tuple(x.shape) == (1, 512, 2, 3, 3)


def test_bad_inputs():
    model = abstract(R2Plus1DSpec(10, "ig65m", width=0.125))
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        model.features(jnp.zeros((1, 3, 8, 32, 32)))
    with pytest.raises(ValueError, match="depth"):
        R2Plus1DSpec(depth=50)
    with pytest.raises(ValueError, match="variant"):
        R2Plus1DSpec(variant="caffe2")
    with pytest.raises(ValueError, match="without a classifier head"):
        model(jnp.zeros((1, 8, 32, 32, 3)))


@pytest.mark.parametrize("kernel,stride,padding", [
    ((1, 3, 3), (1, 2, 2), (0, 1, 1)),  # a block's spatial conv, downsampling
    ((1, 7, 7), (1, 2, 2), (0, 3, 3)),  # the stem
    ((3, 1, 1), (2, 1, 1), (1, 0, 0)),  # a block's temporal conv, downsampling
    ((3, 1, 1), (1, 1, 1), (1, 0, 0)),
    ((1, 1, 1), (2, 2, 2), (0, 0, 0)),  # the shortcut projection
    ((3, 3, 3), (1, 2, 2), (1, 1, 1)),  # not factorable: falls back to the 3-D convolution
    ((1, 3, 3), (1, 1, 1), (0, 2, 1)),  # padding wider than the kernel needs
])
# Fewer output than input channels sends a stride-1 kernel gradient down conv2d_nhwc's shifted-gradient path.
@pytest.mark.parametrize("channels", [(3, 5), (5, 3)])
def test_axis_factored_conv_equals_the_3d_convolution(kernel, stride, padding, channels):
    args = dict(kernel_size=kernel, strides=stride, padding=tuple((p, p) for p in padding), use_bias=False)
    factored = AxisFactoredConv(*channels, **args, rngs=nnx.Rngs(0))
    direct = nnx.Conv(*channels, **args, rngs=nnx.Rngs(1))
    direct.kernel[...] = factored.kernel[...]
    x = jax.random.normal(jax.random.key(2), (2, 5, 9, 11, channels[0]))  # odd sizes: stride-2 edges matter

    def loss(module, x):
        return jnp.sum(jnp.sin(module(x)))

    y_factored, y_direct = factored(x), direct(x)
    assert y_factored.shape == y_direct.shape
    assert jnp.allclose(y_factored, y_direct, atol=1e-5)
    g_factored = nnx.grad(loss, argnums=(0, 1))(factored, x)
    g_direct = nnx.grad(loss, argnums=(0, 1))(direct, x)
    # Each kernel-gradient entry sums, over every output pixel, x times cos(y) with |cos| <= 1, so
    # sum |x| bounds its terms; a float32 sum of P terms, in any order or blocking, errs by at most
    # ~log2(P) * eps * sum |terms| (taken x4 for the two sides' different orders). A misplaced
    # tap is off by O(1).
    pixels = x.size // x.shape[-1]
    kernel_tol = 4 * np.log2(pixels) * np.finfo(np.float32).eps * float(jnp.abs(x).sum(axis=(0, 1, 2, 3)).max())
    assert jnp.allclose(g_factored[0].kernel[...], g_direct[0].kernel[...], rtol=0, atol=kernel_tol)
    assert jnp.allclose(g_factored[1], g_direct[1], atol=1e-5)
