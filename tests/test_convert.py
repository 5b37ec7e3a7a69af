"""IG-65M / torchvision .pth -> Flax conversion, checked against torchvision itself."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from actlumos_jax import convert
from actlumos_jax.models import pretrained
from actlumos_jax.models.pretrained import CheckpointError
from actlumos_jax.models.r2plus1d import R2Plus1DSpec, parameter_count
import torch_reference  # tests/ is on sys.path (pytest rootdir conftest)

# Small clip: 8 frames keep the depth-34 CPU forward cheap while every stride,
# padding and BN still acts (T: 8 -> 1, H, W: 64 -> 4).
CLIP_SHAPE = (2, 8, 64, 64, 3)  # N, T, H, W, C
RTOL = 1e-4
MEASURED = {}


def _forward(graphdef, state, clip):
    model = nnx.merge(graphdef, state)
    return model.features(clip), model(clip)


_forward_jit = jax.jit(_forward, static_argnums=0)


def flax_outputs(model, clip):
    """(features, logits) in float32 at full matmul precision; one compile per architecture."""
    graphdef, state = nnx.split(model)
    with jax.default_matmul_precision("highest"):
        feats, logits = _forward_jit(graphdef, state, jnp.asarray(clip))
    return np.asarray(feats), np.asarray(logits)


def _rel_err(ours, ref):
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


class _Case:
    """A random torchvision model saved as .pth, with its outputs on one clip."""

    def __init__(self, torch_model, path: Path, seed: int):
        torch_reference.randomize(torch_model, seed)
        torch.save(torch_model.state_dict(), path)
        self.path = path
        self.torch_params = sum(p.numel() for p in torch_model.parameters())
        self.clip = np.random.default_rng(seed).normal(size=CLIP_SHAPE).astype(np.float32)
        clip_ncthw = torch.from_numpy(self.clip).permute(0, 4, 1, 2, 3).contiguous()
        with torch.no_grad():
            self.logits = torch_model(clip_ncthw).numpy()
            self.features = torch_reference.torch_features(torch_model, clip_ncthw).permute(0, 2, 3, 4, 1).numpy()
        self.model = convert.load_torch_checkpoint(path)  # arch "auto"
        self.flax_features, self.flax_logits = flax_outputs(self.model, self.clip)


@pytest.fixture(scope="module")
def ig65m(tmp_path_factory):
    path = tmp_path_factory.mktemp("ig65m") / "r2plus1d_34_clip32_ig65m_random.pth"
    return _Case(torch_reference.ig65m_r2plus1d_34(num_classes=359), path, seed=0)


@pytest.fixture(scope="module")
def tv18(tmp_path_factory):
    path = tmp_path_factory.mktemp("tv18") / "r2plus1d_18_random.pth"
    return _Case(torch_reference.torchvision_r2plus1d_18(num_classes=400), path, seed=1)


# ----------------------------------------------------------------- parity with torchvision


@pytest.mark.parametrize("case_name", ["ig65m", "tv18"])
def test_logits_and_features_match_torchvision(case_name, request):
    case = request.getfixturevalue(case_name)
    assert case.flax_logits.shape == case.logits.shape
    assert case.flax_features.shape == case.features.shape
    # The BN statistics are non-trivial, so the outputs are far from constant.
    assert np.std(case.logits) > 1e-3 * np.max(np.abs(case.logits))
    logits_err, feats_err = _rel_err(case.flax_logits, case.logits), _rel_err(case.flax_features, case.features)
    MEASURED[case_name] = dict(
        logits_max_abs=float(np.max(np.abs(case.flax_logits - case.logits))), logits_rel=logits_err,
        features_max_abs=float(np.max(np.abs(case.flax_features - case.features))), features_rel=feats_err,
    )
    print(f"\n{case_name}: {MEASURED[case_name]}")
    assert logits_err <= RTOL
    assert feats_err <= RTOL


def test_detected_specs_and_parameter_counts(ig65m, tv18):
    assert ig65m.model.spec == R2Plus1DSpec(depth=34, variant="ig65m", width=1.0, num_classes=359)
    assert tv18.model.spec == R2Plus1DSpec(depth=18, variant="torchvision", width=1.0, num_classes=400)
    assert parameter_count(ig65m.model) == ig65m.torch_params
    assert parameter_count(tv18.model) == tv18.torch_params
    backbone_params = ig65m.torch_params - (512 * 359 + 359)
    assert abs(backbone_params / 1e6 - 63.49) < 0.01  # FACTS.md: ~63.5 M


def test_detect_arch(ig65m, tv18):
    assert convert.detect_arch(convert.load_torch_state_dict(ig65m.path)) == "r2plus1d_34_ig65m"
    assert convert.detect_arch(convert.load_torch_state_dict(tv18.path)) == "r2plus1d_18"
    with pytest.raises(CheckpointError, match=r"blocks per layer \(0, 0, 0, 0\)"):
        convert.detect_arch({"conv.weight": np.zeros((3, 3))}, source="toy.pth")
    state = convert.load_torch_state_dict(tv18.path)
    state["layer2.0.conv2.0.0.weight"] = np.zeros((100, 128, 1, 3, 3), np.float32)
    with pytest.raises(CheckpointError, match="toy.pth: layer2.0.conv2.0.0.weight has 100 mid-planes"):
        convert.detect_arch(state, source="toy.pth")


def test_explicit_wrong_arch_lists_mismatches(tv18):
    with pytest.raises(CheckpointError) as err:
        convert.load_torch_checkpoint(tv18.path, arch="r2plus1d_18_ig65m")
    assert str(tv18.path) in str(err.value)
    assert "wrong shape for layer2.0.conv2.0.0.weight: expected (288, 128, 1, 3, 3), found (230, 128, 1, 3, 3)" in str(
        err.value
    )


def test_wrapped_features_form_converts_identically(tv18, tmp_path):
    plain = torch.load(tv18.path, weights_only=True)
    wrapped = {}
    rename = {"stem": "features.0", "layer1": "features.1", "layer2": "features.2", "layer3": "features.3",
              "layer4": "features.4"}
    for key, value in plain.items():
        head, rest = key.split(".", 1)
        wrapped["module." + (f"{rename[head]}.{rest}" if head in rename else key)] = value
    assert any(k.startswith("module.features.4.") for k in wrapped)
    path = tmp_path / "bert_wrapped.pth"
    torch.save({"epoch": 7, "arch": "rgb_r2plus1d", "state_dict": wrapped}, path)

    model = convert.load_torch_checkpoint(path)
    ours = pretrained.flat_variables(model)
    reference = pretrained.flat_variables(tv18.model)
    assert ours.keys() == reference.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key].get_value(), reference[key].get_value(), err_msg=str(key))
    _, logits = flax_outputs(model, tv18.clip)
    np.testing.assert_array_equal(logits, tv18.flax_logits)


# ----------------------------------------------------------------- CLI and the Orbax format


def test_cli_round_trip_and_backbone_loading(tv18, tmp_path, capsys):
    out = tmp_path / "ckpt"
    assert convert.run([str(tv18.path), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "R(2+1)D-18 torchvision" in printed and f"{parameter_count(tv18.model):,}" in printed
    assert str(out) in printed

    record = json.loads((out / pretrained.METADATA_FILE).read_text())
    assert record["spec"] == dict(depth=18, variant="torchvision", width=1.0, num_classes=400)
    assert record["source"]["file"] == tv18.path.name
    assert record["source"]["sha256"] == convert.sha256_of(tv18.path)
    assert record["arch"] == "r2plus1d_18"
    assert pretrained.read_backbone_spec(out) == tv18.model.spec

    loaded = pretrained.load(out)
    _, logits = flax_outputs(loaded, tv18.clip)
    np.testing.assert_array_equal(logits, tv18.flax_logits)

    # A fresh headless backbone takes everything but the head.
    headless = pretrained.build_abstract(R2Plus1DSpec(depth=18, variant="torchvision"))
    pretrained.load_backbone(headless, out)
    reference = pretrained.flat_variables(tv18.model)
    got = pretrained.flat_variables(headless)
    assert set(got) == {k for k in reference if k[0] != "fc"}
    for key, var in got.items():
        np.testing.assert_array_equal(var.get_value(), reference[key].get_value(), err_msg=str(key))

    # A model with a new 11-way head takes the backbone and leaves its head alone.
    small = pretrained.build_abstract(R2Plus1DSpec(depth=18, variant="torchvision", num_classes=11))
    pretrained.load_backbone(small, out)
    np.testing.assert_array_equal(small.stem.spatial.kernel.get_value(), tv18.model.stem.spatial.kernel.get_value())
    assert isinstance(small.fc.kernel.get_value(), jax.ShapeDtypeStruct)
    with pytest.raises(CheckpointError, match="spec num_classes: model has 11, checkpoint has 400"):
        pretrained.load_backbone(small, out, load_head=True)

    # The CLI refuses to clobber an existing checkpoint unless asked.
    assert convert.run([str(tv18.path), str(out)]) == 2  # the shared boundary's exit code for bad input
    assert capsys.readouterr().err.startswith(f"error: {out}: already exists")
    assert convert.run([str(tv18.path), str(out), "--overwrite", "--arch", "r2plus1d_18"]) == 0


@pytest.mark.parametrize(
    "spec, expected",
    [
        (R2Plus1DSpec(depth=18, variant="torchvision", width=0.5), ["spec width: model has 0.5, checkpoint has 1.0",
                                                                    "wrong shape for layers.0.0.bn1.bias: expected (32,), found (64,)",
                                                                    "... and 161 more"]),
        (R2Plus1DSpec(depth=34, variant="torchvision"), ["spec depth: model has 34, checkpoint has 18",
                                                         "missing layers.0.2.bn1.scale"]),
        (R2Plus1DSpec(depth=18, variant="ig65m"), ["spec variant: model has 'ig65m', checkpoint has 'torchvision'",
                                                   "wrong shape for layers.1.0.conv2.spatial.kernel"]),
    ],
)
def test_load_backbone_into_wrong_architecture_lists_mismatches(tv18, tmp_path_factory, spec, expected):
    out = tmp_path_factory.getbasetemp() / "tv18_orbax"
    if not out.exists():
        pretrained.save_backbone(tv18.model, out, metadata={"source": "test"})
    model = pretrained.build_abstract(spec)
    with pytest.raises(CheckpointError) as err:
        pretrained.load_backbone(model, out)
    message = str(err.value)
    assert message.startswith(str(out))
    for line in expected:
        assert line in message
    # Nothing was loaded: the model is still shape-only.
    assert isinstance(model.stem.spatial.kernel.get_value(), jax.ShapeDtypeStruct)


# ----------------------------------------------------------------- refusals


class _Payload:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch_zip", "raw_pickle"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if writer == "torch_zip":
        torch.save({"stem.0.weight": torch.zeros(1), "stem.1.weight": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"stem.1.weight": _Payload(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match=f"{path}: refused") as err:
        convert.load_torch_state_dict(path)
    assert "system, not only tensors; nothing was run" in str(err.value)
    assert not marker.exists()

    # The payload is live: a plain (unsafe) unpickle of the raw form does run it.
    if writer == "raw_pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_missing_extra_wrong_shape_and_nan_are_listed_together(tv18, tmp_path):
    state = torch.load(tv18.path, weights_only=True)
    del state["layer3.1.conv2.1.running_var"]
    state["layer5.0.conv1.0.0.weight"] = torch.zeros(3, 3)
    state["layer1.0.conv1.0.3.weight"] = torch.zeros(64, 144, 3, 1, 2)
    state["stem.1.running_mean"][0] = float("nan")
    path = tmp_path / "damaged.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        convert.load_torch_checkpoint(path, arch="r2plus1d_18")
    message = str(err.value)
    assert message.startswith(str(path))
    assert "4 mismatch(es)" in message
    assert "missing layer3.1.conv2.1.running_var (expected shape (256,))" in message
    assert "unexpected layer5.0.conv1.0.0.weight (shape (3, 3))" in message
    assert ("wrong shape for layer1.0.conv1.0.3.weight: expected (64, 144, 3, 1, 1), found (64, 144, 3, 1, 2)"
            in message)
    assert "non-finite values in stem.1.running_mean" in message


def test_non_tensor_entries_are_refused(tmp_path):
    path = tmp_path / "mixed.pth"
    torch.save({"stem.0.weight": torch.zeros(1), "note": "hello"}, path)
    with pytest.raises(CheckpointError, match=f"{path}: entry 'note' is a str, not a tensor"):
        convert.load_torch_state_dict(path)


def test_truncated_and_garbage_files_name_the_file(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save({f"layer1.{i}.weight": torch.randn(64, 64, 3) for i in range(8)}, whole)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match=f"{path}: not a readable PyTorch checkpoint"):
            convert.load_torch_state_dict(path)
    with pytest.raises(CheckpointError, match="no such file"):
        convert.load_torch_state_dict(tmp_path / "absent.pth")

    # The CLI, as a separate process: exit 2, one line naming the file, no traceback, nothing written.
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "actlumos_jax.convert", str(truncated), str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(error_lines) == 1 and str(truncated) in error_lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def _siblings(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_failed_write_leaves_nothing_and_keeps_a_good_checkpoint(tv18, tmp_path, monkeypatch):
    good = tmp_path / "good"
    pretrained.save_backbone(tv18.model, good, metadata={"source": "first"})
    good_files = {p.relative_to(good): p.read_bytes() for p in good.rglob("*") if p.is_file()}

    def failing_write_text(self, *args, **kwargs):  # the state is already written by then
        raise OSError("disk full (injected)")

    monkeypatch.setattr(pretrained.Path, "write_text", failing_write_text)
    with pytest.raises(OSError, match="injected"):
        pretrained.save_backbone(tv18.model, tmp_path / "new", metadata={"source": "second"})
    with pytest.raises(OSError, match="injected"):
        pretrained.save_backbone(tv18.model, good, metadata={"source": "second"}, overwrite=True)
    monkeypatch.undo()

    assert _siblings(tmp_path) == ["good"]  # no "new", no temporary or backup directories
    assert {p.relative_to(good): p.read_bytes() for p in good.rglob("*") if p.is_file()} == good_files
    assert json.loads((good / pretrained.METADATA_FILE).read_text())["source"] == "first"

    with pytest.raises(CheckpointError, match=f"{good}: already exists"):
        pretrained.save_backbone(tv18.model, good, metadata={})
    pretrained.save_backbone(tv18.model, good, metadata={"source": "third"}, overwrite=True)
    assert json.loads((good / pretrained.METADATA_FILE).read_text())["source"] == "third"
    assert _siblings(tmp_path) == ["good"]


def test_unreadable_backbone_dir_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path}: not a backbone checkpoint"):
        pretrained.load(tmp_path)


def test_shape_only_backbone_is_not_saved(tmp_path):
    abstract = pretrained.build_abstract(R2Plus1DSpec(depth=10, variant="torchvision", width=0.25))
    with pytest.raises(ValueError, match="unfilled"):
        pretrained.save_backbone(abstract, tmp_path / "ckpt", metadata={})
    assert not (tmp_path / "ckpt").exists()
