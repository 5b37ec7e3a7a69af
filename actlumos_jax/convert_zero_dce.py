"""Converts the released Zero-DCE PyTorch weights (``Epoch99.pth``) to the Flax DCE-Net.

    python -m actlumos_jax.convert_zero_dce Epoch99.pth zero_dce.npz [--overwrite]

The .pth is the state dict of the official ``enhance_net_nopool``: e_conv1.weight
... e_conv7.bias. It is read with ``torch.load(weights_only=True)`` (via
``actlumos_jax.convert.load_torch_state_dict``: a pickle that would run code is
refused, a ``module.`` prefix from DataParallel is stripped). Every tensor of
the file must land in the model and every model variable must come from the
file; all missing, unexpected and wrongly shaped keys are reported together.
The output is the .npz that ``models.zero_dce.load_zero_dce`` reads.

The CLI runs behind the project's error boundary (``data_pipelines.bad_input.run_cli``):
a refused input prints as one ``error: ...`` message (a mismatch list may follow
it) with no traceback and exits 2; ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from actlumos_jax.models import zero_dce
from actlumos_jax.models.zero_dce import CONV_CHANNELS, DCENet, ZeroDCEError
from data_pipelines.bad_input import run_cli


def torch_shapes() -> dict[str, tuple[int, ...]]:
    """The state-dict keys of ``enhance_net_nopool`` and their shapes, torch layout."""
    shapes = {}
    for name, (c_in, c_out) in CONV_CHANNELS.items():
        shapes[f"{name}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"{name}.bias"] = (c_out,)
    return shapes


def from_state_dict(state: Mapping[str, np.ndarray], *, source: str = "state dict") -> DCENet:
    """DCENet from torch-keyed arrays; conv weights (O, I, kh, kw) become Flax (kh, kw, I, O)."""
    problems = zero_dce.shape_problems(torch_shapes(), {k: np.shape(v) for k, v in state.items()})
    if problems:
        raise ZeroDCEError(f"{source}: {len(problems)} mismatch(es) with the official enhance_net_nopool:\n"
                           + "\n".join(f"  - {p}" for p in problems))
    params = {}
    for name in CONV_CHANNELS:
        params[f"{name}.kernel"] = np.transpose(np.asarray(state[f"{name}.weight"], np.float32), (2, 3, 1, 0))
        params[f"{name}.bias"] = np.asarray(state[f"{name}.bias"], np.float32)
    return zero_dce.from_params(params, source=source)


def convert(pth: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> DCENet:
    """Reads the .pth at ``pth``, checks it, writes the Flax weights to ``out`` (.npz); returns the model."""
    from actlumos_jax.convert import load_torch_state_dict  # needs torch; the rest of the package does not

    out = Path(out)
    if out.suffix != ".npz":
        raise ZeroDCEError(f"{out}: Zero-DCE weights are written as .npz; name the output file *.npz")
    if out.exists() and not overwrite:
        raise ZeroDCEError(f"{out}: already exists; pass --overwrite to replace it")
    state = load_torch_state_dict(pth)
    model = from_state_dict(state, source=str(pth))
    zero_dce.save_zero_dce(model, out, overwrite=overwrite)
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="the official Zero-DCE state dict, e.g. snapshots/Epoch99.pth")
    parser.add_argument("output", help="where to write the Flax weights (.npz)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_cli(_run, args, verbose=args.verbose)


def _run(args: argparse.Namespace) -> int:
    from actlumos_jax.convert import ConversionError  # pylint: disable=g-import-not-at-top  # needs torch

    try:
        model = convert(args.input, args.output, overwrite=args.overwrite)
    except (ZeroDCEError, OSError) as e:
        # About the files the user named (a .pth of another net, an unwritable output):
        # a message naming the file and key, not a traceback. convert's CheckpointError
        # (an unreadable or malicious .pth) is an InputError already.
        raise ConversionError(str(e)) from e
    count = sum(v.size for v in zero_dce.params_of(model).values())
    print(f"{args.output}: DCE-Net, {count} parameters, from {args.input} (sha256 {_sha256(Path(args.input))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
