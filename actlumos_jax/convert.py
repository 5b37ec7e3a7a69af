"""Converts the IG-65M (and torchvision) R(2+1)D PyTorch checkpoints to Flax.

    actlumos-convert r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth ckpt/ig65m_34
    python -m actlumos_jax.convert INPUT.pth OUTPUT_DIR [--arch auto] [--overwrite]

The .pth is read with ``torch.load(weights_only=True)``: a pickle that would run
code is refused, never executed. Every tensor of the file must land in the model
and every model tensor must come from the file; all mismatches are reported
together. torch is only needed here, never in training.

The CLI runs behind the project's error boundary (``data_pipelines.bad_input.run_cli``),
as ``main.py`` and ``check`` do: a refused input prints as one ``error: ...`` message
(a mismatch list may follow it) with no traceback and exits 2; ``--verbose`` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from actlumos_jax.models import pretrained
from actlumos_jax.models.pretrained import CheckpointError
from actlumos_jax.models.r2plus1d import DEPTHS, R2Plus1D, R2Plus1DSpec, midplanes, parameter_count
from data_pipelines.bad_input import InputError, run_cli

CONVERTER_VERSION = "1"


class ConversionError(InputError):
    """A .pth, an output directory or an --arch that the converter cannot use as given."""

# Architectures by name; the released IG-65M files are "r2plus1d_34_ig65m",
# torchvision's stock model is "r2plus1d_18".
ARCHS: dict[str, tuple[int, str]] = {}
for _depth in DEPTHS:
    ARCHS[f"r2plus1d_{_depth}"] = (_depth, "torchvision")
    ARCHS[f"r2plus1d_{_depth}_ig65m"] = (_depth, "ig65m")

# Flax submodule -> torchvision submodule, inside the stem and inside a BasicBlock.
_STEM = {"spatial": "0", "spatial_bn": "1", "temporal": "3", "temporal_bn": "4"}
_BLOCK = {
    ("conv1", "spatial"): "conv1.0.0", ("conv1", "mid_bn"): "conv1.0.1", ("conv1", "temporal"): "conv1.0.3",
    ("bn1",): "conv1.1",
    ("conv2", "spatial"): "conv2.0.0", ("conv2", "mid_bn"): "conv2.0.1", ("conv2", "temporal"): "conv2.0.3",
    ("bn2",): "conv2.1",
    ("down_conv",): "downsample.0", ("down_bn",): "downsample.1",
}
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
# The BERT ancestors keep nn.Sequential(*children[:-2]) of the VideoResNet.
_FEATURES = {"0": "stem", "1": "layer1", "2": "layer2", "3": "layer3", "4": "layer4"}


def torch_key(path: tuple[Any, ...]) -> str:
    """torchvision state-dict key of one Flax variable path."""
    *module, leaf = path
    if module[0] == "stem":
        prefix = f"stem.{_STEM[module[1]]}"
    elif module[0] == "layers":
        prefix = f"layer{module[1] + 1}.{module[2]}.{_BLOCK[tuple(module[3:])]}"
    elif module[0] == "fc":
        prefix = "fc"
    else:
        raise KeyError(f"no torch name for Flax variable {path}")
    return f"{prefix}.{_LEAF[leaf]}"


def to_flax_layout(array: np.ndarray, ndim_kind: str) -> np.ndarray:
    """torch layout -> Flax layout: conv (O,I,T,H,W) -> (T,H,W,I,O); linear (K,C) -> (C,K)."""
    if ndim_kind == "conv":
        return np.transpose(array, (2, 3, 4, 1, 0))
    if ndim_kind == "linear":
        return array.T
    return array


def _layout_kind(path: tuple[Any, ...]) -> str:
    if path[-1] != "kernel":
        return "vector"
    return "linear" if path[0] == "fc" else "conv"


def _torch_shape(flax_shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    if kind == "conv":
        t, h, w, i, o = flax_shape
        return (o, i, t, h, w)
    if kind == "linear":
        return tuple(reversed(flax_shape))
    return tuple(flax_shape)


# ----------------------------------------------------------------- reading .pth


def _normalise_key(key: str) -> str:
    if key.startswith("module."):
        key = key[len("module."):]
    match = re.match(r"features\.(\d+)\.(.*)", key)
    if match and match.group(1) in _FEATURES:
        key = f"{_FEATURES[match.group(1)]}.{match.group(2)}"
    return key


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a .pth into plain torchvision keys -> float32 NumPy arrays.

    Accepts a state dict or a dict wrapping one under "state_dict"/"model";
    strips ``module.``; maps ``features.0..4`` to stem/layer1..4; drops
    ``num_batches_tracked``. Refuses (without running it) any pickle that is not
    plain tensors and containers.
    """
    import pickle  # only for its exception type

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's weights-only unpickler stops at the first global it does not allow,
        # before anything is imported or called.
        blocked = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(e), re.IGNORECASE)
        if blocked:
            raise CheckpointError(
                f"{path}: refused: the pickle would load {blocked.group(1)}, not only tensors; nothing was run"
            ) from None
        reason = re.search(r"Unsupported operand[^\n]*", str(e))
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (weights-only unpickling failed: "
            f"{reason.group(0).strip() if reason else str(e).strip().splitlines()[0]})"
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, ... for damaged files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None

    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")

    state: dict[str, np.ndarray] = {}
    for raw_key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {raw_key!r} is a {type(value).__name__}, not a tensor")
        if str(raw_key).endswith("num_batches_tracked"):
            continue
        key = _normalise_key(str(raw_key))
        if key in state:
            raise CheckpointError(f"{path}: two entries map to {key!r} (one is {raw_key!r})")
        tensor = value.detach().cpu()
        state[key] = (tensor.float() if tensor.is_floating_point() else tensor).numpy()
    if not state:
        raise CheckpointError(f"{path}: the state dict is empty")
    return state


# ----------------------------------------------------------------- architecture


def detect_arch(state_dict: Mapping[str, Any], *, source: str = "state dict") -> str:
    """Architecture name from the keys (blocks per layer) and the conv2 mid-planes of layer2.0.

    BN eps is not stored; the variant follows from the Caffe2 mid-plane count
    (288 in IG-65M, 230 in torchvision's construction).
    """
    blocks = []
    for layer in range(1, 5):
        ids = {int(m.group(1)) for k in state_dict if (m := re.match(rf"layer{layer}\.(\d+)\.", k))}
        blocks.append(max(ids) + 1 if ids else 0)
    depth = next((d for d, counts in DEPTHS.items() if tuple(blocks) == counts), None)
    if depth is None:
        raise CheckpointError(
            f"{source}: not an R(2+1)D state dict: blocks per layer {tuple(blocks)} match no known depth "
            f"(known: {DEPTHS})"
        )
    key = "layer2.0.conv2.0.0.weight"
    if key not in state_dict:
        raise CheckpointError(f"{source}: not an R(2+1)D (2+1)D-conv state dict: {key} is missing")
    mid = int(np.shape(state_dict[key])[0])
    variants = {midplanes(128, 128): "ig65m", midplanes(64, 128): "torchvision"}
    if mid not in variants:
        raise CheckpointError(
            f"{source}: {key} has {mid} mid-planes; expected {midplanes(128, 128)} (IG-65M) "
            f"or {midplanes(64, 128)} (torchvision)"
        )
    return f"r2plus1d_{depth}" + ("_ig65m" if variants[mid] == "ig65m" else "")


def spec_for(arch: str, state_dict: Mapping[str, Any], *, source: str = "state dict") -> R2Plus1DSpec:
    """Spec of ``arch`` ("auto": detected) with the head size of the file's fc."""
    if arch == "auto":
        arch = detect_arch(state_dict, source=source)
    if arch not in ARCHS:
        raise ConversionError(f"unknown arch {arch!r}; expected 'auto' or one of {sorted(ARCHS)}")
    depth, variant = ARCHS[arch]
    num_classes = int(np.shape(state_dict["fc.weight"])[0]) if "fc.weight" in state_dict else None
    return R2Plus1DSpec(depth=depth, variant=variant, width=1.0, num_classes=num_classes)


def torch_to_flax(state_dict: Mapping[str, np.ndarray], spec: R2Plus1DSpec, *, source: str = "state dict") -> R2Plus1D:
    """A Flax R2Plus1D holding every tensor of ``state_dict`` (torchvision keys).

    Missing, unexpected, wrongly shaped and non-finite tensors are all listed in
    one error before anything is built.
    """
    model = pretrained.build_abstract(spec)
    variables = pretrained.flat_variables(model)
    key_of = {path: torch_key(path) for path in variables}
    expected = {
        key_of[p]: _torch_shape(tuple(v.get_value().shape), _layout_kind(p)) for p, v in variables.items()
    }
    found = {k: tuple(np.shape(v)) for k, v in state_dict.items()}
    problems = pretrained.shape_problems(expected, found)
    problems += [f"non-finite values in {k}" for k in sorted(expected.keys() & found.keys())
                 if not np.all(np.isfinite(state_dict[k]))]
    if problems:
        raise CheckpointError(pretrained.format_problems(f"{source} (as {spec})", problems))
    values = {p: to_flax_layout(np.asarray(state_dict[key_of[p]], np.float32), _layout_kind(p)) for p in variables}
    pretrained.fill_variables(model, values)
    return model


def _convert_file(path: str | os.PathLike, arch: str) -> tuple[R2Plus1D, str]:
    state_dict = load_torch_state_dict(path)
    if arch == "auto":
        arch = detect_arch(state_dict, source=str(path))
    model = torch_to_flax(state_dict, spec_for(arch, state_dict, source=str(path)), source=str(path))
    model.eval()
    return model, arch


def load_torch_checkpoint(path: str | os.PathLike, arch: str = "auto") -> R2Plus1D:
    """The Flax R(2+1)D of a .pth, with the file's classifier head, in eval mode."""
    return _convert_file(path, arch)[0]


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------- CLI


def convert(input_path: str | os.PathLike, output_dir: str | os.PathLike, *, arch: str = "auto",
            overwrite: bool = False) -> R2Plus1D:
    """.pth -> backbone checkpoint directory (see ``actlumos_jax.models.pretrained``)."""
    input_path = Path(input_path)
    if Path(output_dir).exists() and not overwrite:  # say so before reading a 250 MB file
        raise CheckpointError(f"{Path(output_dir).absolute()}: already exists; pass --overwrite to replace it")
    model, arch = _convert_file(input_path, arch)
    metadata = {
        "source": {"file": input_path.name, "sha256": sha256_of(input_path)},
        "arch": arch,
        "converter": f"actlumos_jax.convert v{CONVERTER_VERSION}",
    }
    pretrained.save_backbone(model, output_dir, metadata=metadata, overwrite=overwrite)
    return model


def _run(args: argparse.Namespace) -> int:
    try:
        model = convert(args.input, args.output_dir, arch=args.arch, overwrite=args.overwrite)
    except (CheckpointError, OSError) as e:
        # Both are about the files the user named (a damaged .pth, an unwritable
        # output directory), so they print as a message, not a traceback.
        raise ConversionError(str(e)) from e
    spec = model.spec
    print(f"architecture: R(2+1)D-{spec.depth} {spec.variant} (--arch {args.arch}), "
          f"head: {f'{spec.num_classes} classes' if spec.num_classes else 'none'}")
    print(f"parameters: {parameter_count(model):,}")
    print(f"wrote: {Path(args.output_dir).absolute()}")
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actlumos-convert", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="PyTorch .pth checkpoint")
    parser.add_argument("output_dir", help="directory to write the Flax backbone checkpoint to")
    parser.add_argument("--arch", default="auto", choices=["auto", *sorted(ARCHS)])
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT_DIR")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    # One line says what went wrong; a mismatch list follows it, if there is one.
    return run_cli(_run, args, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(run())
