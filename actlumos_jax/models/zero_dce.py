"""DCE-Net of Zero-DCE (Guo et al., CVPR 2020) in Flax NNX, and its weight file.

The network is the official ``enhance_net_nopool`` (Li-Chongyi/Zero-DCE,
``Zero-DCE_code/model.py``), layer for layer:

  x1 = relu(conv1(x));  x2 = relu(conv2(x1));  x3 = relu(conv3(x2));  x4 = relu(conv4(x3))
  x5 = relu(conv5([x3, x4]));  x6 = relu(conv6([x2, x5]))
  r  = tanh(conv7([x1, x6]))               24 channels: 8 curve maps of 3 channels
  x <- x + r_i (x^2 - x),  i = 1..8        the LE-curve, iterated

Every conv is 3x3, stride 1, zero padding 1, with bias; 32 channels except the
24 of conv7. The iteration is written as the code has it, ``x + r (x^2 - x)``;
the paper's ``x + a x (1 - x)`` is the same curve with a = -r, and the
released weights were trained with the code's sign. The official forward also
returns the image after 4 iterations; nothing uses it (training and testing
take the 8-iteration image), so it is not returned here.

Frames are NHWC floats in [0, 1] with any leading dims, (..., H, W, 3).

Weight file: a .npz holding one array per variable keyed by its Flax path
("e_conv1.kernel", ...: kernels in Flax layout (3, 3, in, out)) plus a "format"
entry. The trainer and the converter of the released .pth both write it;
``load_zero_dce`` checks every key and shape before building the module.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from typing import Any, Mapping

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

NUM_ITERATIONS = 8
WIDTH = 32
CONVS = tuple(f"e_conv{i}" for i in range(1, 8))
# (in, out) channels of each conv; conv5-7 read a concatenation of two 32-channel maps.
CONV_CHANNELS = {
    "e_conv1": (3, WIDTH), "e_conv2": (WIDTH, WIDTH), "e_conv3": (WIDTH, WIDTH), "e_conv4": (WIDTH, WIDTH),
    "e_conv5": (2 * WIDTH, WIDTH), "e_conv6": (2 * WIDTH, WIDTH), "e_conv7": (2 * WIDTH, 3 * NUM_ITERATIONS),
}
FORMAT = "actlumos-zero-dce-v1"
WEIGHTS_FILE = "zero_dce.npz"  # the name inside a training run's output directory


class ZeroDCEError(ValueError):
    """A Zero-DCE weight file (ours or a .pth) that cannot be used as given."""


def apply_curves(x: jax.Array, curves: jax.Array) -> jax.Array:
    """Iterates ``x <- x + r_i (x^2 - x)`` over the 3-channel maps r_i of ``curves``.

    ``x`` is (..., 3) and ``curves`` (..., 3 n) with the maps in order along the
    last axis (r_i = curves[..., 3 i : 3 i + 3], as torch.split(r, 3, dim=1));
    n = 8 for DCE-Net. With r_i in [-1, 1] and x in [0, 1] every step stays in
    [x^2, 2x - x^2], inside [0, 1].
    """
    channels = x.shape[-1]
    if curves.shape[-1] % channels:
        raise ValueError(f"apply_curves: {curves.shape[-1]} curve channels are not a multiple of "
                         f"the image's {channels}")
    for i in range(curves.shape[-1] // channels):
        r = curves[..., i * channels:(i + 1) * channels]
        x = x + r * (x * x - x)
    return x


def _torch_conv_init(fan_in: int):
    """The official init: weights N(0, 0.02) (``weights_init`` of lowlight_train.py),
    biases left at torch's Conv2d default U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def bias_init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nnx.initializers.normal(0.02), bias_init


class DCENet(nnx.Module):
    """``enhance_net_nopool``: (..., H, W, 3) in [0, 1] -> (enhanced, curve maps (..., H, W, 24))."""

    def __init__(self, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.dtype = dtype
        for name in CONVS:
            c_in, c_out = CONV_CHANNELS[name]
            kernel_init, bias_init = _torch_conv_init(c_in * 9)
            setattr(self, name, nnx.Conv(
                c_in, c_out, (3, 3), padding=((1, 1), (1, 1)), use_bias=True, dtype=dtype,
                param_dtype=jnp.float32, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs))

    def curve_maps(self, frames: jax.Array) -> jax.Array:
        """tanh(conv7(...)) of (N, H, W, 3) frames: (N, H, W, 24) float32."""
        relu = jax.nn.relu
        x = frames.astype(self.dtype)
        x1 = relu(self.e_conv1(x))
        x2 = relu(self.e_conv2(x1))
        x3 = relu(self.e_conv3(x2))
        x4 = relu(self.e_conv4(x3))
        x5 = relu(self.e_conv5(jnp.concatenate([x3, x4], axis=-1)))
        x6 = relu(self.e_conv6(jnp.concatenate([x2, x5], axis=-1)))
        return jnp.tanh(self.e_conv7(jnp.concatenate([x1, x6], axis=-1)).astype(jnp.float32))

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if x.ndim < 3 or x.shape[-1] != 3:
            raise ValueError(f"DCENet expects RGB frames shaped (..., H, W, 3), got shape {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"DCENet expects float frames in [0, 1], got dtype {x.dtype}")
        frames, packed = einops.pack([x], "* h w c")
        curves = self.curve_maps(frames)
        # The curves are applied in float32 whatever the conv dtype: eight
        # quadratic steps would compound bf16's 3 significant digits.
        enhanced = apply_curves(frames.astype(jnp.float32), curves)
        [enhanced] = einops.unpack(enhanced, packed, "* h w c")
        [curves] = einops.unpack(curves, packed, "* h w c")
        return enhanced, curves


# ----------------------------------------------------------------- weight file


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Flax path ("e_conv1.kernel") -> shape, for every variable of DCENet."""
    shapes = {}
    for name, (c_in, c_out) in CONV_CHANNELS.items():
        shapes[f"{name}.kernel"] = (3, 3, c_in, c_out)
        shapes[f"{name}.bias"] = (c_out,)
    return shapes


def shape_problems(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> list[str]:
    """Every missing, unexpected and wrongly shaped entry, named, sorted by name."""
    problems = [f"missing {k} (expected shape {tuple(expected[k])})" for k in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected {k} (shape {tuple(found[k])})" for k in sorted(found.keys() - expected.keys())]
    problems += [f"wrong shape for {k}: expected {tuple(expected[k])}, found {tuple(found[k])}"
                 for k in sorted(expected.keys() & found.keys()) if tuple(expected[k]) != tuple(found[k])]
    return problems


def params_of(model: DCENet) -> dict[str, np.ndarray]:
    """Flax path -> float32 array of every variable of ``model``."""
    return {".".join(str(p) for p in path): np.asarray(var.get_value(), np.float32)
            for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def from_params(params: Mapping[str, Any], *, source: str = "params", dtype: Any = jnp.float32) -> DCENet:
    """A DCENet holding ``params`` (Flax path -> array); all keys and shapes are checked first."""
    problems = shape_problems(expected_shapes(), {k: np.shape(v) for k, v in params.items()})
    if problems:
        raise ZeroDCEError(f"{source}: {len(problems)} mismatch(es) with DCE-Net:\n"
                           + "\n".join(f"  - {p}" for p in problems))
    model = DCENet(dtype=dtype, rngs=nnx.Rngs(0))
    for name in CONVS:
        conv = getattr(model, name)
        conv.kernel.set_value(jnp.asarray(params[f"{name}.kernel"], jnp.float32))
        conv.bias.set_value(jnp.asarray(params[f"{name}.bias"], jnp.float32))
    return model


def save_zero_dce(model: DCENet, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes ``model``'s weights to the .npz ``path`` (atomically: a temporary file renamed)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: Zero-DCE weights are written as .npz; name the file *.npz")
    if path.exists() and not overwrite:
        raise ZeroDCEError(f"{path}: already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}.npz"
    try:
        np.savez(tmp, format=np.array(FORMAT), **params_of(model))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_zero_dce(path: str | os.PathLike, *, dtype: Any = jnp.float32) -> DCENet:
    """The DCENet stored at ``path``: a .npz written by ``save_zero_dce``, or a directory holding one
    named ``zero_dce.npz`` (what ``python -m actlumos_jax.zero_dce_train --out DIR`` writes)."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Zero-DCE weight file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise ZeroDCEError(f"{path}: not a readable .npz ({e})") from None
    stored = arrays.pop("format", None)
    if stored is None or str(stored) != FORMAT:
        hint = " (a PyTorch .pth? convert it with python -m actlumos_jax.convert_zero_dce)" if stored is None else ""
        raise ZeroDCEError(f"{path}: not a Zero-DCE weight file: format {stored!s} instead of {FORMAT}{hint}")
    return from_params(arrays, source=str(path), dtype=dtype)
