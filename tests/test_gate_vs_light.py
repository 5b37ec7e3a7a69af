"""bench/gate_vs_light.py: the gate-versus-light statistics against a direct computation, and its figure."""

import json
from types import SimpleNamespace

import ml_collections
import numpy as np
import pytest

from bench import gate_vs_light


def _records(tmp_path, curves):
    records = []
    for i, curve in enumerate(curves):
        path = tmp_path / f"clip{i}.mp4"
        path.with_suffix(".json").write_text(json.dumps({"mean_luma_per_frame": list(map(float, curve))}))
        records.append(SimpleNamespace(path=str(path), clip_id=f"Class/clip{i}.mp4"))
    return records


def test_statistics_match_a_direct_computation(tmp_path):
    rng = np.random.default_rng(0)
    config = ml_collections.ConfigDict(dict(data=dict(num_frames=16, frame_stride=2)))
    curves = [rng.uniform(0.02, 0.12, 40) for _ in range(9)]  # 40 frames: the 31-frame span is centred
    records = _records(tmp_path, curves)
    weights = rng.uniform(0, 1, (9, 2, 2))  # (clips, 16 / 8 latent steps, streams); only [..., 1] is read
    stats = gate_vs_light.gate_light_stats(weights, records, config)
    # Independently: frames 4, 6, ..., 34 (centred, stride 2); step t averages 8 consecutive samples.
    light = np.array([[c[4:36:2][:8].mean(), c[4:36:2][8:].mean()] for c in curves])
    w = weights[..., 1]
    assert stats["gate_light_pearson"] == pytest.approx(np.corrcoef(w.ravel(), light.ravel())[0, 1], rel=1e-9)
    order = np.argsort(light.ravel())
    assert stats["gate_retinex_dark_third"] == pytest.approx(w.ravel()[order[:6]].mean(), rel=1e-9)
    assert stats["gate_retinex_bright_third"] == pytest.approx(w.ravel()[order[-6:]].mean(), rel=1e-9)
    within = np.corrcoef((w - w.mean(1, keepdims=True)).ravel(), (light - light.mean(1, keepdims=True)).ravel())
    assert stats["gate_within_clip_pearson"] == pytest.approx(within[0, 1], rel=1e-9)
    # A gate that follows the light exactly (more retinex where darker) has r = -1.
    follows = np.stack([light, 1 - light / light.max()], axis=-1)
    assert gate_vs_light.gate_light_stats(follows, records, config)["gate_light_pearson"] == pytest.approx(-1)
    gate_vs_light.plot(weights, records, config, tmp_path / "gate.png", num_clips=4)
    assert (tmp_path / "gate.png").stat().st_size > 10_000


def test_clips_without_a_light_sidecar_are_refused(tmp_path):
    config = ml_collections.ConfigDict(dict(data=dict(num_frames=8, frame_stride=1)))
    record = SimpleNamespace(path=str(tmp_path / "real.avi"), clip_id="Drink/real.avi")
    with pytest.raises(FileNotFoundError, match="real.json: no light sidecar"):
        gate_vs_light.gate_light_stats(np.zeros((1, 1, 2)), [record], config)
