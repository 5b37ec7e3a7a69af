"""The embedded synthetic dataset: ARID layout, splits by actor, determinism, darkness, motion, caching."""

import json
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from data_pipelines import synthetic
from data_pipelines.bad_input import DatasetError
from data_pipelines.synthetic_scene import action_poses, make_actor, render_reflectance, skeleton
from data_pipelines.video_io import decode_video, probe_video

# ARID's ids, written out again rather than imported.
ARID_CLASSES = ["Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn", "Walk", "Wave"]
LINE = re.compile(r"^(\d+)\t(\d+)\t([A-Za-z]+)/([A-Za-z]+)_(\d+)_(\d+)\.mp4$")


def luma(frames):
    f = frames.astype(np.float64) / 255
    return (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]).mean(axis=(1, 2))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "tiny"
    start = time.time()
    got = synthetic.ensure_dataset("tiny", seed=0, root=root, workers=1)
    return got, time.time() - start


def parse_split(path):
    rows = []
    for n, line in enumerate(path.read_text().split("\n")[:-1]):
        m = LINE.match(line)
        assert m, f"{path.name}:{n}: not idx<TAB>label<TAB>Class/Class_a_b.mp4: {line!r}"
        idx, label, cls, cls2, actor, take = m.groups()
        assert int(idx) == n and cls == cls2 and ARID_CLASSES[int(label)] == cls
        rows.append((f"{cls}/{cls}_{actor}_{take}.mp4", int(label), int(actor)))
    assert path.read_text().endswith("\n")
    return rows


def test_layout_and_splits_are_aridlike_and_by_actor(tiny):
    root, seconds = tiny
    assert seconds < 60, f"tiny generation took {seconds:.1f} s"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(ARID_CLASSES)
    videos = {p.relative_to(root).as_posix() for p in root.glob("*/*.mp4")}
    for p in root.glob("*/*"):
        assert re.fullmatch(rf"{p.parent.name}_\d+_\d+\.(mp4|json)", p.name), p
    assert len(videos) == 33
    test_partitions = []
    for s in (1, 2, 3):
        train = parse_split(root / f"ARID_split{s}_train.txt")
        test = parse_split(root / f"ARID_split{s}_test.txt")
        assert {c for c, _, _ in train} | {c for c, _, _ in test} == videos
        assert not {c for c, _, _ in train} & {c for c, _, _ in test}
        assert {a for _, _, a in train}.isdisjoint({a for _, _, a in test}), f"split {s} shares an actor"
        assert {l for _, l, _ in train} == {l for _, l, _ in test} == set(range(11))
        test_partitions.append(frozenset(a for _, _, a in test))
    assert len(set(test_partitions)) == 3  # a different actor partition per split
    manifest = json.loads((root / "manifest.json").read_text())
    assert (manifest["preset"], manifest["seed"], manifest["version"]) == ("tiny", 0, synthetic.VERSION)
    assert manifest["num_clips"] == 33 and manifest["class_names"] == ARID_CLASSES
    info = probe_video(root / "Wave/Wave_1_1.mp4")
    assert (info.height, info.width, round(info.fps)) == (64, 86, 30)


def test_clips_are_dark_with_time_varying_light(tiny):
    root, _ = tiny
    steady_ratios, event_ratios, types = [], [], set()
    for path in sorted(root.glob("*/*.mp4")):
        frames = decode_video(path)
        assert frames.shape == (24, 64, 86, 3)
        per_frame = luma(frames)
        assert 0.02 <= per_frame.mean() <= 0.12, f"{path}: mean luma {per_frame.mean():.3f}"
        meta = json.loads(path.with_suffix(".json").read_text())
        # The sidecar is measured before H.264; the codec moves the mean a little only.
        np.testing.assert_allclose(meta["mean_luma_per_frame"], per_frame, atol=0.01)
        kind = meta["illumination"]["type"]
        (steady_ratios if kind == "steady" else event_ratios).append(per_frame.max() / per_frame.min())
        types.add(kind)
    # Some segments much darker than others in every clip with an event, none in a steady one.
    assert min(event_ratios) > 1.5 and np.median(event_ratios) > 2.0, sorted(event_ratios)
    assert max(steady_ratios) < 1.3, sorted(steady_ratios)
    assert len(types) >= 3


def test_illumination_events_darken_some_segments():
    seen = {}
    for i in range(60):
        field, event = synthetic.illumination(np.random.default_rng(i), 32, 16, 20)
        level = field.mean(axis=(1, 2))
        seen.setdefault(event["type"], []).append(level.max() / level.min())
    assert set(seen) == {"steady", "dimming", "flicker", "sweep", "switch"}
    assert max(seen["steady"]) < 1.2
    for kind in ("dimming", "flicker", "switch", "sweep"):
        assert min(seen[kind]) > 1.7, (kind, seen[kind])


def test_srgb_quantisation_matches_the_oetf():
    v = np.random.default_rng(0).uniform(-0.01, 1.1, 200_000).astype(np.float32)
    c = np.clip(v.astype(np.float64), 0, 1)
    oetf = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
    want = np.floor(oetf * 255 + 0.5)
    got = synthetic.quantise_srgb(v).astype(np.float64)
    assert np.abs(got - want).max() <= 1 and np.mean(got != want) < 1e-3


def test_exposure_hits_target_with_signal_dependent_noise():
    scene = np.ones((4, 32, 64, 3), np.float32)
    scene[:, :, 32:] = 4.0
    frames, sensor = synthetic.expose(scene, np.random.default_rng(0), target_luma=0.05)
    assert abs(luma(frames).mean() - 0.05) < 0.003
    c = frames.astype(np.float64) / 255  # back to linear (sRGB EOTF) to compare noise with signal
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) * sensor["white_level_electrons"]
    dark, bright = linear[:, :, :32], linear[:, :, 32:]
    assert 3.0 < bright.mean() / dark.mean() < 5.0
    # Shot noise: variance grows with the signal (read noise alone would not).
    assert bright.var() > 2.0 * dark.var()


def test_same_seed_same_bytes_under_parallel_and_concurrent_generation(tiny, tmp_path):
    root, _ = tiny
    other = tmp_path / "again"
    stale = tmp_path / ".again.tmp-crashed"  # what a killed generation leaves
    (stale / "Drink").mkdir(parents=True)
    results, errors = [], []

    def call():
        try:
            results.append(synthetic.ensure_dataset("tiny", seed=0, root=other, workers=2))
        except Exception as e:  # surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [other, other]
    assert not stale.exists() and not list(tmp_path.glob(".again.tmp-*"))
    for name in sorted(p.name for p in root.glob("*.txt")):
        assert (root / name).read_bytes() == (other / name).read_bytes()
    for path in sorted(root.glob("*/*.mp4")):
        rel = path.relative_to(root)
        np.testing.assert_array_equal(decode_video(path), decode_video(other / rel), err_msg=str(rel))


def test_different_seed_differs(tiny):
    root, _ = tiny
    preset = synthetic.get_preset("tiny")
    spec = synthetic.clip_specs(preset)[7]
    mine = decode_video(root / spec.clip_id).astype(np.float64)
    other, _ = synthetic.render_clip(preset, 1, spec)
    assert np.abs(mine - other).mean() > 1.0
    assert synthetic.split_lists(preset, 0) != synthetic.split_lists(preset, 1)


def test_interrupted_generation_is_never_accepted(tiny, tmp_path, monkeypatch):
    root, _ = tiny
    target = tmp_path / "broken"
    real_write, calls = synthetic._write_clip, []

    def crash_after_five(*args):
        calls.append(args)
        if len(calls) > 5:
            raise KeyboardInterrupt("simulated interruption")
        real_write(*args)

    monkeypatch.setattr(synthetic, "_write_clip", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure_dataset("tiny", seed=0, root=target, workers=1)
    assert not target.exists() and not list(tmp_path.glob(".broken.tmp-*"))

    # A copy without its manifest (or missing a clip) is not a dataset.
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "Run/Run_2_1.mp4").unlink()
    assert not synthetic.is_complete(copy, "tiny", 0)
    (copy / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="copy.*not a complete synthetic"):
        synthetic.ensure_dataset("tiny", seed=0, root=copy, workers=1)
    assert not synthetic.is_complete(root, "tiny", 1)  # other seed, same files: not accepted


def test_bad_preset_is_named():
    with pytest.raises(ValueError, match="'huge'"):
        synthetic.ensure_dataset("huge")


def _joint_speed(name, seed):
    """Mean image-plane speed of all joints, in actor heights per clip."""
    p, _ = action_poses(name, np.linspace(0, 1, 32), np.random.default_rng(seed))
    joints = np.stack([end for pair in skeleton(p).values() for end in pair])[..., :2]
    return np.linalg.norm(np.diff(joints, axis=1), axis=-1).sum(axis=1).mean()


def test_classes_differ_in_motion():
    speed = {name: np.mean([_joint_speed(name, s) for s in range(4)]) for name in ARID_CLASSES}
    assert speed["Run"] > 1.5 * speed["Walk"], speed
    assert speed["Push"] < speed["Walk"], speed
    # Sit and Stand share every static pose: one is the other played backwards.
    u = np.linspace(0, 1, 16)
    sit, _ = action_poses("Sit", u, np.random.default_rng(3))
    stand, _ = action_poses("Stand", u[::-1], np.random.default_rng(3))
    for key in sit:
        np.testing.assert_allclose(sit[key], stand[key], err_msg=key)
    head = skeleton(sit)["head"][0][:, 1]
    assert head[0] - head[-1] > 0.2  # seated at the end, ~a quarter of the height lower
    # Jump leaves the floor; Walk never does.
    for name, airborne in (("Jump", True), ("Walk", False)):
        p, _ = action_poses(name, u, np.random.default_rng(0))
        feet = np.minimum(skeleton(p)["shin_l"][1][:, 1], skeleton(p)["shin_r"][1][:, 1])
        assert (feet.max() > 0.1) == airborne, name
    # Waving raises one hand above the head and swings the forearm back and forth.
    p, _ = action_poses("Wave", np.linspace(0, 1, 48), np.random.default_rng(0))
    seg = skeleton(p)
    hand_x = seg["forearm_r"][1][:, 2]
    assert (seg["forearm_r"][1][:, 1] > seg["head"][0][:, 1]).mean() > 0.5
    assert np.sum(np.abs(np.diff(np.sign(np.diff(hand_x[8:40]))))) >= 4  # several reversals


def test_the_figure_stands_out_from_the_room_by_the_minimum_contrast():
    from data_pipelines.synthetic_scene import _MIN_CONTRAST, _silhouette_gain

    rng = np.random.default_rng(0)
    rec709 = np.array([0.2126, 0.7152, 0.0722])
    for _ in range(500):
        colours = [rng.uniform(0.0, 1.0, 3).astype(np.float32) for _ in range(int(rng.integers(1, 4)))]
        room = float(rng.uniform(0.02, 0.9))
        gain = _silhouette_gain(colours, room)
        figure = np.mean([c @ rec709 for c in colours]) * gain
        ratio = max(figure / room, room / figure)
        assert ratio >= _MIN_CONTRAST * (1 - 1e-5), (colours, room, gain)
        if gain > 1:  # made lighter: must stay a reflectance
            assert max(c @ rec709 for c in colours) * gain <= 1 + 1e-6
        already = max(figure / gain / room, room / (figure / gain)) >= _MIN_CONTRAST
        assert (gain == 1.0) == already
