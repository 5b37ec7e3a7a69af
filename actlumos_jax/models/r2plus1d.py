"""R(2+1)D video ResNets (Tran et al. 2018) in Flax NNX, channels last.

Two variants of one family:
  * ``torchvision``: torchvision's stock ``VideoResNet`` (BN eps 1e-5, torch
    momentum 0.1, one mid-plane count per block).
  * ``ig65m``: the IG-65M release (BN eps 1e-3, torch momentum 0.9, and the
    Caffe2 mid-plane count in conv2 of the first block of layers 2-4).

Inputs are (N, T, H, W, 3); torchvision's NCTHW maps to this by a transpose.
All padding is explicit and symmetric, as PyTorch's: Flax's "SAME" pads
stride-2 convolutions asymmetrically and gives different numbers.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import einops
import jax
import jax.numpy as jnp
from flax import nnx

DEPTHS: dict[int, tuple[int, int, int, int]] = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    26: (2, 3, 4, 3),
    34: (3, 4, 6, 3),
}
VARIANTS = ("torchvision", "ig65m")

# torch's BatchNorm momentum m updates running = (1-m)*running + m*batch; Flax's
# momentum is the weight of the running value, so flax = 1 - torch.
_BN = {
    "torchvision": dict(epsilon=1e-5, momentum=0.9),
    "ig65m": dict(epsilon=1e-3, momentum=0.1),
}


def midplanes(in_planes: int, out_planes: int) -> int:
    """Mid-plane count that matches a full 3x3x3 conv's parameter count."""
    return (in_planes * out_planes * 27) // (in_planes * 9 + 3 * out_planes)


@dataclasses.dataclass(frozen=True)
class R2Plus1DSpec:
    """Architecture of one R(2+1)D network; everything a checkpoint must match."""

    depth: int = 34
    variant: str = "ig65m"
    width: float = 1.0
    num_classes: int | None = None  # None: no classifier head.

    def __post_init__(self):
        if self.depth not in DEPTHS:
            raise ValueError(f"R(2+1)D depth must be one of {sorted(DEPTHS)}, got {self.depth}")
        if self.variant not in VARIANTS:
            raise ValueError(f"R(2+1)D variant must be one of {VARIANTS}, got {self.variant!r}")
        if not self.width > 0:
            raise ValueError(f"R(2+1)D width multiplier must be positive, got {self.width}")

    @property
    def stage_widths(self) -> tuple[int, int, int, int]:
        return tuple(max(1, round(c * self.width)) for c in (64, 128, 256, 512))

    @property
    def stem_width(self) -> int:
        return max(1, round(45 * self.width))

    @property
    def feature_dim(self) -> int:
        return self.stage_widths[-1]


class AxisFactoredConv(nnx.Conv):
    """An ``nnx.Conv`` over (N, T, H, W, C) whose kernel spans space only or time only.

    Such a 3-D convolution is a 2-D one with the untouched axis folded away:
    time into the batch for a (1, kh, kw) kernel, height x width into one axis
    for a (kt, 1, 1) kernel. It runs as that 2-D convolution because XLA's CPU
    backend has no fast 3-D convolution (``python -m bench.model_forward``
    times both paths). The parameters are exactly ``nnx.Conv``'s, so converted
    weights and checkpoints do not change.
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self._factorable(x):
            return super().__call__(x)
        (kt, kh, kw), (st, sh, sw) = self.kernel_size, self.strides
        (pt0, pt1), (ph0, ph1), (pw0, pw1) = self.padding
        x, kernel = self.promote_dtype((x, self.kernel[...]), dtype=self.dtype)
        if kt == 1 and (kh > 1 or kw > 1):  # spatial: frames are independent images
            frames = einops.rearrange(x, "n t h w c -> (n t) h w c")
            y = self._conv2d(frames, kernel[0], (sh, sw), ((ph0, ph1), (pw0, pw1)))
            return einops.rearrange(y, "(n t) h w c -> n t h w c", n=x.shape[0])
        # temporal or pointwise: a pointwise kernel's spatial stride is a subsampling
        x = x[:, :, ::sh, ::sw]
        pixels = einops.rearrange(x, "n t h w c -> n t (h w) c")
        y = self._conv2d(pixels, kernel[:, 0], (st, 1), ((pt0, pt1), (0, 0)))
        return einops.rearrange(y, "n t (h w) c -> n t h w c", h=x.shape[2])

    def _factorable(self, x: jax.Array) -> bool:
        explicit = all(isinstance(v, tuple) and len(v) == 3 for v in (self.kernel_size, self.strides, self.padding))
        if not (explicit and x.ndim == 5):
            return False
        (kt, kh, kw), st = self.kernel_size, self.strides[0]
        (pt0, pt1), (ph0, ph1), (pw0, pw1) = self.padding
        plain = all(d in (None, 1, (1, 1, 1)) for d in (self.input_dilation, self.kernel_dilation))
        plain = plain and self.feature_group_count == 1 and self.mask is None
        if kt == 1 and kh * kw > 1:
            return plain and st == 1 and pt0 == pt1 == 0
        return plain and kh == kw == 1 and ph0 == ph1 == pw0 == pw1 == 0

    def _conv2d(self, x, kernel, strides, padding):
        return conv2d_nhwc(x, kernel, strides, padding, self.precision)


def _lax_conv2d(x, kernel, strides, padding, precision):
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_nhwc(x, kernel, strides, padding, precision=None):
    """A 2-D NHWC x HWIO convolution whose kernel gradient is computed by matrix products.

    XLA's CPU backend computes a convolution's kernel gradient as another
    convolution with batch and features swapped, which misses its fast path:
    3-5x slower than PyTorch at R(2+1)D's shapes (``python -m bench.vs_torch
    --layers``). ``kernel_gradient`` writes it as plain 2-D matrix products,
    which XLA runs at full speed. The input gradient stays XLA's own transposed
    convolution, which is fast.
    """
    return _lax_conv2d(x, kernel, strides, padding, precision)


def _conv2d_fwd(x, kernel, strides, padding, precision):
    return _lax_conv2d(x, kernel, strides, padding, precision), (x, kernel)


def _conv2d_bwd(strides, padding, precision, residuals, g):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _lax_conv2d(x, kernel, strides, padding, precision), x)
    (dx,) = input_vjp(g)
    return dx, kernel_gradient(x, g, kernel.shape, strides, padding, precision).astype(kernel.dtype)


conv2d_nhwc.defvjp(_conv2d_fwd, _conv2d_bwd)


def kernel_gradient(x, g, kernel_shape, strides, padding, precision=None):
    """dL/dW of ``y = conv2d_nhwc(x, W)`` given g = dL/dy, as matrix products over the flattened pixels.

    Tap (i, j) of the kernel sees the input window ``X_ij``, so
    ``dW[i, j] = X_ij^T G``. Two ways to feed that to XLA's matrix product,
    whichever copies less:
      * one product per tap, each on its window of the input (copied out);
      * for a stride-1 convolution whose gradient has fewer channels than its
        input (R(2+1)D's temporal convolutions), the gradient shifted the
        opposite way, ``G_ij[h, w] = G[h - i + pad_h, w - j + pad_w]`` (zero
        outside), all taps side by side in one copy: ``dW = X^T [G_00 ... G_ij ...]``.
    ``python -m bench.vs_torch --layers`` times both against PyTorch. The pixels
    are flattened to one axis because XLA's CPU dot with several contracting
    axes is a slow generic loop.
    """
    (kh, kw, c_in, c_out), (sh, sw) = kernel_shape, strides
    (ph0, ph1), (pw0, pw1) = padding
    batch, height, width = x.shape[:3]
    out_h, out_w = g.shape[1], g.shape[2]
    taps = [(i, j) for i in range(kh) for j in range(kw)]
    if (sh, sw) == (1, 1) and c_out < c_in:
        g = jnp.pad(g, ((0, 0), (kh - 1, max(0, kh - 1 - ph1)), (kw - 1, max(0, kw - 1 - pw1)), (0, 0)))
        shifted = jnp.concatenate(
            [jax.lax.slice(g, (0, ph0 + kh - 1 - i, pw0 + kw - 1 - j, 0),
                           (batch, ph0 + kh - 1 - i + height, pw0 + kw - 1 - j + width, c_out)) for i, j in taps],
            axis=-1)
        dw = jnp.einsum("pc,pk->ck", x.reshape(-1, c_in), shifted.reshape(-1, kh * kw * c_out), precision=precision,
                        preferred_element_type=jnp.float32)
        return einops.rearrange(dw, "c (i j d) -> i j c d", i=kh, j=kw)
    x = jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
    g = g.reshape(-1, c_out)
    dw = [jnp.einsum("pc,pd->cd",
                     jax.lax.slice(x, (0, i, j, 0), (batch, i + sh * (out_h - 1) + 1, j + sw * (out_w - 1) + 1, c_in),
                                   (1, sh, sw, 1)).reshape(-1, c_in),
                     g, precision=precision, preferred_element_type=jnp.float32) for i, j in taps]
    return jnp.stack(dw).reshape(kh, kw, c_in, c_out)


def _conv(in_f, out_f, kernel, stride, padding, dtype, rngs):
    return AxisFactoredConv(
        in_f, out_f, kernel_size=kernel, strides=stride,
        padding=tuple((p, p) for p in padding), use_bias=False,
        dtype=dtype, param_dtype=jnp.float32,
        # torchvision's VideoResNet init: kaiming normal, fan_out, relu.
        kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
        rngs=rngs,
    )


def _bn(features, variant, dtype, rngs):
    return nnx.BatchNorm(features, dtype=dtype, param_dtype=jnp.float32, rngs=rngs, **_BN[variant])


class Conv2Plus1D(nnx.Module):
    """(1,3,3) spatial conv -> BN -> ReLU -> (3,1,1) temporal conv."""

    def __init__(self, in_planes, out_planes, mid_planes, stride, variant, dtype, rngs):
        self.spatial = _conv(in_planes, mid_planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), dtype, rngs)
        self.mid_bn = _bn(mid_planes, variant, dtype, rngs)
        self.temporal = _conv(mid_planes, out_planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), dtype, rngs)

    def __call__(self, x):
        return self.temporal(jax.nn.relu(self.mid_bn(self.spatial(x))))


class BasicBlock(nnx.Module):
    def __init__(self, in_planes, planes, stride, conv2_mid, variant, dtype, rngs):
        mid = midplanes(in_planes, planes)
        self.conv1 = Conv2Plus1D(in_planes, planes, mid, stride, variant, dtype, rngs)
        self.bn1 = _bn(planes, variant, dtype, rngs)
        self.conv2 = Conv2Plus1D(planes, planes, conv2_mid or mid, 1, variant, dtype, rngs)
        self.bn2 = _bn(planes, variant, dtype, rngs)
        if stride != 1 or in_planes != planes:
            self.down_conv = _conv(in_planes, planes, (1, 1, 1), (stride,) * 3, (0, 0, 0), dtype, rngs)
            self.down_bn = _bn(planes, variant, dtype, rngs)
        else:
            self.down_conv = self.down_bn = None

    def __call__(self, x):
        out = jax.nn.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.down_conv is None else self.down_bn(self.down_conv(x))
        return jax.nn.relu(out + shortcut)


class Stem(nnx.Module):
    """(1,7,7)/2 spatial conv to 45 maps, then a (3,1,1) temporal conv. No max-pool."""

    def __init__(self, spec: R2Plus1DSpec, dtype, rngs):
        w0, mid = spec.stage_widths[0], spec.stem_width
        self.spatial = _conv(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), dtype, rngs)
        self.spatial_bn = _bn(mid, spec.variant, dtype, rngs)
        self.temporal = _conv(mid, w0, (3, 1, 1), (1, 1, 1), (1, 0, 0), dtype, rngs)
        self.temporal_bn = _bn(w0, spec.variant, dtype, rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.spatial_bn(self.spatial(x)))
        return jax.nn.relu(self.temporal_bn(self.temporal(x)))


class R2Plus1D(nnx.Module):
    """R(2+1)D-{10,18,26,34}.

    ``features(x)`` gives the last stage's map (N, T/8, H/16, W/16, C);
    ``__call__(x)`` pools it and applies the classifier head, like torchvision.
    """

    def __init__(self, spec: R2Plus1DSpec, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.spec = spec
        self.stem = Stem(spec, dtype, rngs)
        layers = []
        in_planes = spec.stage_widths[0]
        for stage, (planes, blocks) in enumerate(zip(spec.stage_widths, DEPTHS[spec.depth])):
            stride = 1 if stage == 0 else 2
            # The IG-65M weights came from Caffe2, whose first block per stage sizes
            # conv2 from (planes, planes) rather than (in_planes, planes).
            caffe2_mid = midplanes(planes, planes) if spec.variant == "ig65m" and stage > 0 else None
            layer = [BasicBlock(in_planes, planes, stride, caffe2_mid, spec.variant, dtype, rngs)]
            layer += [BasicBlock(planes, planes, 1, None, spec.variant, dtype, rngs) for _ in range(blocks - 1)]
            layers.append(nnx.List(layer))
            in_planes = planes
        self.layers = nnx.List(layers)
        if spec.num_classes:
            self.fc = nnx.Linear(
                in_planes, spec.num_classes, dtype=dtype, param_dtype=jnp.float32,
                kernel_init=nnx.initializers.normal(0.01), rngs=rngs,
            )
        else:
            self.fc = None

    def features(self, x: jax.Array) -> jax.Array:
        if x.ndim != 5 or x.shape[-1] != 3:
            raise ValueError(f"R2Plus1D expects (N, T, H, W, 3) clips, got shape {x.shape}")
        x = self.stem(x)
        for layer in self.layers:
            for block in layer:
                x = block(x)
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.fc is None:
            raise ValueError("this R2Plus1D was built without a classifier head (num_classes=None)")
        pooled = einops.reduce(self.features(x), "n t h w c -> n c", "mean")
        return self.fc(pooled)


def parameter_count(module: nnx.Module) -> int:
    """Number of trainable scalars (BatchNorm statistics excluded)."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def block_midplanes(spec: R2Plus1DSpec) -> Sequence[Sequence[tuple[int, int]]]:
    """Per stage, per block: (conv1 mid, conv2 mid). Documents the Caffe2 change."""
    out, in_planes = [], spec.stage_widths[0]
    for stage, (planes, blocks) in enumerate(zip(spec.stage_widths, DEPTHS[spec.depth])):
        rows = []
        for b in range(blocks):
            src = in_planes if b == 0 else planes
            mid = midplanes(src, planes)
            mid2 = midplanes(planes, planes) if (b == 0 and stage > 0 and spec.variant == "ig65m") else mid
            rows.append((mid, mid2))
        out.append(rows)
        in_planes = planes
    return out
