"""actlumos-export: the trained student as a self-contained StableHLO artifact (``jax.export``).

  python -m actlumos_jax.inference.export WORKDIR OUT_DIR [--platforms cpu,cuda]

writes ``OUT_DIR/model.stablehlo`` (``jax.export.Exported.serialize()``) and
``OUT_DIR/meta.json``. The artifact maps raw uint8 RGB clips (N, T, H, W, 3),
N symbolic, to float32 logits (N, K): the scaling to [0, 1] and the IG-65M
normalisation run inside it, the weights are constants of the module, and the
SSL projection head is not part of it. It runs with jax alone::

    import jax, numpy as np
    exported = jax.export.deserialize(bytearray(open("OUT_DIR/model.stablehlo", "rb").read()))
    logits = exported.call(clips_uint8)   # (N, T, H, W, 3) -> (N, K)

``meta.json`` says how the clips must be made (``preprocessing``: frames,
stride, resize, crop, interpolation, as the stage's evaluation made them) and
names the classes. ``actlumos-predict OUT_DIR VIDEO...`` reads both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from actlumos_jax.inference.model import (ARTIFACT_FILE, META_FILE, Preprocessing, load_student_model,
                                          resolve_student_workdir, student_logits)
from data_pipelines import transforms
from data_pipelines.bad_input import InputError, run_cli

PROG = "actlumos-export"
DEFAULT_PLATFORMS = ("cpu", "cuda")
KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
ONNX_FILE = "model.onnx"


def export_student(workdir: str | Path, out_dir: str | Path,
                   platforms: Sequence[str] = DEFAULT_PLATFORMS, onnx: bool = False) -> dict:
    """Exports the student of ``workdir`` (a stage or pipeline directory) to ``out_dir``; returns the meta."""
    unknown = [p for p in platforms if p not in KNOWN_PLATFORMS]
    if unknown or not platforms:
        raise InputError(f"platforms must be among {KNOWN_PLATFORMS}, got {list(platforms)}")
    if onnx:
        _onnx_tools()  # before any work
    stage_dir, _ = resolve_student_workdir(workdir)
    model, config, step, class_names = load_student_model(stage_dir)
    return export_model(model, config, class_names, out_dir, platforms, onnx,
                        {"stage": config.stage, "step": step, "source_workdir": str(Path(stage_dir).absolute())})


def export_model(model: nnx.Module, config, class_names: Sequence[str], out_dir: str | Path,
                 platforms: Sequence[str] = DEFAULT_PLATFORMS, onnx: bool = False, source: dict | None = None) -> dict:
    """Exports a Student in evaluation mode built from ``config`` (its ``data`` and ``model``) to ``out_dir``."""
    prep = Preprocessing.from_config(config)
    dtype = config.model.dtype
    # Closed over, the concrete weights become constants of the module: the artifact needs no weights file.
    graphdef, state = nnx.split(model)

    def student(video_uint8):
        m = nnx.merge(graphdef, state)
        m.eval()
        return student_logits(m, video_uint8, dtype)

    (batch,) = jax.export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, prep.num_frames, *prep.crop, 3), jnp.uint8)
    started = time.perf_counter()
    exported = jax.export.export(jax.jit(student), platforms=tuple(platforms))(spec)
    blob = exported.serialize()
    seconds = time.perf_counter() - started

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ARTIFACT_FILE).write_bytes(bytes(blob))
    meta = {
        "format": "jax.export serialized Exported (StableHLO); load with jax.export.deserialize",
        "class_names": list(class_names),
        "input": {"layout": "NTHWC", "shape": ["batch", prep.num_frames, *prep.crop, 3], "dtype": "uint8",
                  "channels": "RGB", "range": [0, 255],
                  "normalisation": {"inside_the_model": True, "scale": 1 / 255, "mean": list(transforms.IG65M_MEAN),
                                    "std": list(transforms.IG65M_STD)}},
        "output": {"name": "logits", "shape": ["batch", len(class_names)], "dtype": "float32",
                   "probabilities": "softmax over the last axis"},
        "preprocessing": prep.to_json() | {
            "span": prep.span,
            "sampling": "num_frames frame indices frame_stride apart; evaluation takes the centred span "
                        "(indices wrap around modulo the length for a shorter video)",
            "spatial": "resize every frame to `resize` (height, width), take the centred `crop` (height, width); "
                       "YUV->RGB with the video's own matrix (data_pipelines.transforms.crop_yuv_to_rgb)"},
        "platforms": list(exported.platforms),
        "calling_convention_version": exported.calling_convention_version,
        "jax_version": jax.__version__,
        **(source or {}),
        "dataset": config.dataset.to_dict(),
        "model": {"backbone": config.model.backbone.to_dict(), "dtype": dtype},
        "bytes": len(blob),
        "export_seconds": round(seconds, 2),
    }
    if onnx:
        meta["onnx"] = export_onnx(student, spec, out_dir / ONNX_FILE, model, dtype)
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def _onnx_tools():
    """jax2onnx, onnxruntime and the converter's version; an ``InputError`` saying how to install them."""
    try:
        import importlib.metadata  # pylint: disable=g-import-not-at-top
        import jax2onnx  # pylint: disable=g-import-not-at-top
        import onnxruntime  # pylint: disable=g-import-not-at-top
    except ImportError as e:
        raise InputError(f"--onnx needs jax2onnx and onnxruntime ({e}). jax2onnx 0.17 declares "
                         "orbax-checkpoint<0.11.37 while this project pins 0.12.8, so install it beside, without "
                         "its dependencies: pip install --no-deps jax2onnx==0.17.1 onnx-ir onnx onnxruntime") from None
    return jax2onnx, onnxruntime, importlib.metadata.version("jax2onnx")


def export_onnx(student, spec: jax.ShapeDtypeStruct, path: Path, model: nnx.Module, dtype: str,
                tolerance: float = 1e-5) -> dict:
    """The same function through jax2onnx (ONNX opset 23, batch dynamic), checked with onnxruntime on random dark
    clips against the Student's own forward pass: the max difference must stay within ``tolerance`` of the
    logits' scale."""
    jax2onnx, onnxruntime, version = _onnx_tools()
    import logging as std_logging  # pylint: disable=g-import-not-at-top
    serde = std_logging.getLogger("onnx_ir.serde")  # one warning per shape constant it cannot type
    previous = serde.level
    serde.setLevel(std_logging.ERROR)
    try:
        started = time.perf_counter()
        proto = jax2onnx.to_onnx(student, [spec], model_name="actlumos_student", input_names=["clips_uint8"],
                                 output_names=["logits"])
        seconds = time.perf_counter() - started
    finally:
        serde.setLevel(previous)
    path.write_bytes(proto.SerializeToString())
    clips = np.random.default_rng(0).integers(0, 60, (3, *spec.shape[1:]), dtype=np.uint8)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: clips})[0]
    want = np.asarray(model(transforms.normalize(clips, dtype)).logits)
    diff, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    if not diff <= tolerance * max(scale, 1e-6):
        raise RuntimeError(f"the ONNX model's logits differ from the library model's by {diff:.3g} "
                           f"(scale {scale:.3g}); {path} is not usable")
    return {"file": path.name, "converter": f"jax2onnx {version}",
            "opset": 23, "onnxruntime_max_abs_diff": diff, "logit_scale": scale, "convert_seconds": round(seconds, 2)}


def _main(args: argparse.Namespace) -> int:
    platforms = tuple(p.strip() for p in args.platforms.split(",") if p.strip())
    meta = export_student(args.workdir, args.out_dir, platforms, onnx=args.onnx)
    print(f"{PROG}: wrote {Path(args.out_dir) / ARTIFACT_FILE} ({meta['bytes'] / 1e6:.2f} MB, "
          f"{', '.join(meta['platforms'])}; input uint8 {tuple(meta['input']['shape'])}, "
          f"{len(meta['class_names'])} classes) and {META_FILE} in {meta['export_seconds']:.1f} s")
    if "onnx" in meta:
        o = meta["onnx"]
        print(f"{PROG}: wrote {Path(args.out_dir) / o['file']} ({o['converter']}, opset {o['opset']}); onnxruntime "
              f"logits within {o['onnxruntime_max_abs_diff']:.2g} of the library model's (scale {o['logit_scale']:.2g})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("workdir", help="a trained student's stage directory (or a pipeline workdir)")
    parser.add_argument("out_dir", help="where model.stablehlo and meta.json go")
    parser.add_argument("--platforms", default=",".join(DEFAULT_PLATFORMS),
                        help="comma-separated lowering platforms (default cpu,cuda)")
    parser.add_argument("--onnx", action="store_true",
                        help="also write model.onnx through jax2onnx, checked against the library model with "
                             "onnxruntime (needs jax2onnx and onnxruntime)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(_main, args, verbose=args.verbose, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
