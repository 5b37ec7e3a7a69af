"""actlumos-export: the StableHLO artifact runs with jax alone and gives the library model's logits."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from flax import nnx

from actlumos_jax.inference import export, predict
from actlumos_jax.inference.model import load_predictor, load_student_model, student_logits
from data_pipelines import transforms

# Run in a fresh interpreter with -I (no PYTHONPATH, no working directory on sys.path, no user site), and
# any import of this project's packages refused, so the artifact is shown to need jax and numpy only.
LOADER = textwrap.dedent("""
    import importlib.abc, json, sys
    BLOCKED = ("actlumos_jax", "data_pipelines", "configs", "tests", "bench")

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"the artifact test must not import {name}")
            return None

    sys.meta_path.insert(0, Refuse())
    import jax
    import numpy as np

    artifact, clips_file, out_file = sys.argv[1:]
    exported = jax.export.deserialize(bytearray(open(artifact + "/model.stablehlo", "rb").read()))
    meta = json.load(open(artifact + "/meta.json"))
    clips = np.load(clips_file)
    assert clips.dtype == np.uint8 and list(clips.shape[1:]) == meta["input"]["shape"][1:]
    np.save(out_file, np.asarray(exported.call(clips)))
    loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert not loaded, loaded
    print(json.dumps({"platforms": list(exported.platforms), "in": str(exported.in_avals[0])}))
""")


@pytest.fixture(scope="module")
def artifact(student_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("artifact")
    assert export.main([str(student_dir), str(out)]) == 0
    return out


def test_meta_describes_the_input(artifact):
    meta = json.loads((artifact / "meta.json").read_text())
    assert meta["platforms"] == ["cpu", "cuda"]
    assert meta["input"]["shape"] == ["batch", 8, 32, 32, 3] and meta["input"]["dtype"] == "uint8"
    assert meta["class_names"][:2] == ["Drink", "Jump"] and len(meta["class_names"]) == 11
    expected = {"num_frames": 8, "frame_stride": 4, "resize": [36, 48], "crop": [32, 32], "interpolation": "area",
                "span": 29}
    assert {k: meta["preprocessing"][k] for k in expected} == expected


def test_artifact_runs_without_this_package_and_matches_the_library_model(artifact, student_dir, tmp_path):
    model, config, _, _ = load_student_model(student_dir)
    # Dark clips like the data's, and a batch size the export never saw (the batch is symbolic).
    clips = np.random.default_rng(0).integers(0, 60, (5, 8, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "clips.npy", clips)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)} | {"JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-I", "-c", LOADER, str(artifact), str(tmp_path / "clips.npy"),
                           str(tmp_path / "logits.npy")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1])["platforms"] == ["cpu", "cuda"]
    exported = np.load(tmp_path / "logits.npy")

    # The library model: the Student's own __call__ on the training's normalisation.
    library = np.asarray(model(transforms.normalize(clips)).logits)
    assert exported.shape == library.shape == (5, 11)
    # Tolerance: both sides are the same float32 ops on XLA's CPU backend, but in the artifact the weights
    # are constants, so XLA may fold them (e.g. BatchNorm's scale into a kernel) and fuse differently:
    # a few float32 roundings (~6e-8 relative each) per layer over ~20 layers. 1e-5 of the logits' scale
    # leaves a margin of ~10x over that and is still far below any change of the weights or the input
    # pipeline (a one-level change of one pixel moves these logits by ~1e-3).
    scale = np.abs(library).max()
    np.testing.assert_allclose(exported, library, rtol=1e-5, atol=1e-5 * scale)
    # The projection-free path the artifact was traced from gives the same logits.
    np.testing.assert_allclose(np.asarray(student_logits(model, clips)), library, rtol=1e-5, atol=1e-5 * scale)
    assert "projection" in nnx.to_pure_dict(nnx.state(model, nnx.Param))  # the library model has it ...
    assert f"tensor<{model.head.in_features}x{config.model.projection_dim}xf32>" not in \
        __import__("jax").export.deserialize(bytearray((artifact / "model.stablehlo").read_bytes())).mlir_module()


def test_predict_reads_the_artifact(artifact, student_dir, dataset, tmp_path, capsys):
    videos = sorted((dataset.root / "Walk").iterdir())
    results = {}
    for name, model_dir in (("workdir", student_dir), ("artifact", artifact)):
        out = tmp_path / f"{name}.jsonl"
        assert predict.main([str(model_dir), *map(str, videos), "-o", str(out), "--window-stride", "8",
                             "--no-progress"]) == 0
        results[name] = [json.loads(line) for line in out.read_text().splitlines()]
    assert load_predictor(artifact).kind == "artifact"
    for a, b in zip(results["workdir"], results["artifact"]):
        assert [n for n, _ in a["top_k"]] == [n for n, _ in b["top_k"]]
        assert [p for _, p in a["top_k"]] == pytest.approx([p for _, p in b["top_k"]], abs=1e-5)
        assert len(a["windows"]) == len(b["windows"]) == 2
    capsys.readouterr()


def test_export_refuses_a_teacher(teacher_dir, tmp_path, capsys):
    assert export.main([str(teacher_dir), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("actlumos-export: error: ") and "is a teacher stage" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_onnx_export_matches_the_library_model(student_dir, tmp_path):
    """Runs where jax2onnx and onnxruntime are installed (not a dependency: see export._onnx_tools)."""
    pytest.importorskip("jax2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    meta = export.export_student(student_dir, tmp_path, ("cpu",), onnx=True)
    assert meta["onnx"]["onnxruntime_max_abs_diff"] <= 1e-5 * meta["onnx"]["logit_scale"]
    model, _, _, _ = load_student_model(student_dir)
    clips = np.random.default_rng(1).integers(0, 255, (2, 8, 32, 32, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"clips_uint8": clips})[0]
    want = np.asarray(model(transforms.normalize(clips)).logits)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_onnx_without_the_converter_is_one_line(student_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax2onnx", None)  # import fails as if not installed
    assert export.main([str(student_dir), str(tmp_path / "out"), "--onnx"]) == 2
    err = capsys.readouterr().err
    assert "--onnx needs jax2onnx" in err and "pip install --no-deps jax2onnx" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any work
