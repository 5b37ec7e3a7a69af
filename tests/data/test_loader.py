"""The grain loader end to end on tiny real mp4 clips.

Every frame encodes (clip, frame index) in its colour: green = 20 * clip + 10,
red = 12 * frame + 6, so a batch can be checked for the right clip, label and
consecutive frames after decode, sampling, crop and flip.
"""

import collections

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from data_pipelines.device_prefetch import device_prefetch
from data_pipelines.loader import make_loader
from data_pipelines.records import ClipRecord, SplitInfo
from data_pipelines.video_io import VideoError, encode_video, write_video

INFO = SplitInfo("synthetic", "test_split", ("a", "b", "c"))
TINY = dict(num_frames=6, resize=(32, 44), crop=28)


def _clip_frames(clip, length):
    frames = np.zeros((length, 32, 44, 3), np.uint8)
    frames[..., 0] = (12 * np.arange(length) + 6)[:, None, None]
    frames[..., 1] = 20 * clip + 10
    return frames


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    out = []
    for clip in range(10):
        path = root / f"c{clip}.mp4"
        write_video(path, _clip_frames(clip, 12 + clip % 5))
        out.append(ClipRecord(f"k/c{clip}.mp4", clip % 3, str(path)))
    return out


@pytest.fixture(scope="module")
def bad_records(records, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "garbage.mp4").write_bytes(b"not a video at all" * 50)
    good = encode_video(_clip_frames(3, 16))
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    return records[:4] + [ClipRecord("k/garbage.mp4", 0, str(root / "garbage.mp4"))] + records[4:7] + [
        ClipRecord("k/truncated.mp4", 1, str(root / "truncated.mp4"))] + records[7:]


def _clips(video):
    return np.rint((video[..., 1].mean(axis=(-1, -2)) - 10) / 20).astype(int)  # (B, T)


def _frames(video):
    return np.rint((video[..., 0].mean(axis=(-1, -2)) - 6) / 12).astype(int)


def _check_batch(batch, records, num_frames, stride=1):
    clips = _clips(batch["video"])
    for b in np.flatnonzero(batch["mask"]):
        clip = clips[b, 0]
        assert np.all(clips[b] == clip)
        assert batch["label"][b] == records[clip].label
        length = 12 + clip % 5
        assert np.all(np.diff(_frames(batch["video"])[b]) % length == stride % length)


def test_supervised_training_epochs(records):
    loader = make_loader(records, INFO, mode="supervised", train=True, global_batch_size=4,
                         frame_stride=2, num_workers=0, num_epochs=2, seed=1, **TINY)
    assert loader.steps_per_epoch == 2
    batches = list(loader)
    assert len(batches) == 4
    for b in batches:
        assert b["video"].shape == (4, 6, 28, 28, 3) and b["video"].dtype == np.uint8
        assert b["label"].dtype == np.int32 and b["mask"].all() and int(b["skipped"]) == 0
        _check_batch(b, records, 6, stride=2)
    epochs = [np.concatenate([_clips(b["video"])[:, 0] for b in batches[i:i + 2]]) for i in (0, 2)]
    assert all(len(set(e.tolist())) == 8 for e in epochs)  # no repeat within an epoch
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled


def test_eval_visits_every_clip_once_and_processes_split_each_batch(records):
    kwargs = dict(mode="supervised", train=False, global_batch_size=4, num_workers=0, **TINY)
    whole = list(make_loader(records, INFO, **kwargs))
    assert [b["mask"].sum() for b in whole] == [4, 4, 2]
    seen = np.concatenate([_clips(b["video"])[b["mask"], 0] for b in whole])
    assert sorted(seen.tolist()) == list(range(10))
    for b in whole:
        _check_batch(b, records, 6)
    parts = [list(make_loader(records, INFO, process_index=p, process_count=2, **kwargs)) for p in (0, 1)]
    for k, b in enumerate(whole):
        joined = np.concatenate([parts[0][k]["video"], parts[1][k]["video"]])
        assert np.array_equal(joined, b["video"])  # process p holds slots [2p, 2p + 2) of each batch
    with pytest.raises(ValueError, match="not divisible by 3"):
        make_loader(records, INFO, process_index=0, process_count=3, **kwargs)


def test_ssl_and_balanced_modes(records):
    ssl = next(iter(make_loader(records, INFO, mode="ssl", train=True, global_batch_size=2, ssl_strides=(1, 2),
                                num_workers=0, **TINY)))
    assert ssl["fast"].shape == ssl["slow"].shape == (2, 6, 28, 28, 3)
    assert np.array_equal(_clips(ssl["fast"]), _clips(ssl["slow"]))
    for b in range(2):
        length = 12 + _clips(ssl["fast"])[b, 0] % 5
        assert np.all(np.diff(_frames(ssl["fast"])[b]) % length == 1)
        assert np.all(np.diff(_frames(ssl["slow"])[b]) % length == 2)
    loader = make_loader(records, INFO, mode="balanced", train=True, global_batch_size=4, balanced_classes=2,
                         balanced_clips=2, num_workers=0, num_epochs=1, **TINY)
    batches = list(loader)
    assert len(batches) == loader.steps_per_epoch == 2
    for b in batches:
        _check_batch(b, records, 6)
        assert sorted(collections.Counter(b["label"].tolist()).values()) == [2, 2]
    with pytest.raises(ValueError, match="multiple of"):
        make_loader(records, INFO, mode="balanced", train=True, global_batch_size=6, balanced_classes=2,
                    balanced_clips=2, num_workers=0, **TINY)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_from_iterator_state_is_bit_identical(records, num_workers):
    kwargs = dict(mode="supervised", train=True, global_batch_size=2, num_workers=num_workers, seed=5, **TINY)
    it = iter(make_loader(records, INFO, **kwargs))
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]  # crosses the epoch boundary (5 batches per epoch)
    fresh = iter(make_loader(records, INFO, **kwargs))
    fresh.set_state(state)
    for want in expected:
        got = next(fresh)
        for key in want:
            assert np.array_equal(got[key], want[key]), key
    if num_workers:
        it.close()
        fresh.close()


def test_bad_clip_fails_naming_the_clip(bad_records):
    loader = make_loader(bad_records, INFO, mode="supervised", train=False, global_batch_size=4, num_workers=0,
                         on_bad_input="fail", **TINY)
    with pytest.raises(VideoError, match="k/garbage.mp4"):
        list(loader)


def test_skipped_clips_are_counted_across_worker_processes(bad_records):
    loader = make_loader(bad_records, INFO, mode="supervised", train=True, global_batch_size=3, num_workers=2,
                         on_bad_input="skip", num_epochs=1, **TINY)
    it = iter(loader)
    batches = list(it)
    it.close()
    assert sum(int(b["skipped"]) for b in batches) == 2
    # 12 positions, 2 dropped: 3 full batches and a last one padded with one masked slot.
    assert [int(b["mask"].sum()) for b in batches] == [3, 3, 3, 1]
    seen = np.concatenate([_clips(b["video"])[b["mask"], 0] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))  # every good clip once, no bad one
    for b in batches:
        _check_batch(b, bad_records_by_clip(bad_records), 6)
    # In evaluation the bad clips stay as masked slots, so every process keeps the same batch count.
    ev = list(make_loader(bad_records, INFO, mode="supervised", train=False, global_batch_size=4, num_workers=0,
                          on_bad_input="skip", **TINY))
    assert sum(int(b["skipped"]) for b in ev) == 2 and sum(int(b["mask"].sum()) for b in ev) == 10


def bad_records_by_clip(bad_records):
    return {int(r.clip_id[3:-4]): r for r in bad_records if r.clip_id[3:-4].isdigit()}


def test_device_prefetch_builds_global_arrays_and_resumes(records):
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    kwargs = dict(mode="supervised", train=True, global_batch_size=8, num_workers=0, seed=2, **TINY)
    reference = iter(make_loader(records, INFO, **kwargs))
    prefetched = device_prefetch(make_loader(records, INFO, **kwargs), sharding, size=2)
    first = next(prefetched)
    assert isinstance(first["video"], jax.Array) and first["video"].sharding == sharding
    assert first["video"].shape == (8, 6, 28, 28, 3) and len(first["video"].addressable_shards) == 8
    assert np.array_equal(np.asarray(first["video"]), next(reference)["video"])
    state = prefetched.get_state()  # state after the consumed batch, despite read-ahead
    second = next(prefetched)
    prefetched.close()
    resumed = iter(make_loader(records, INFO, **kwargs))
    resumed.set_state(state)
    assert np.array_equal(next(resumed)["label"], np.asarray(second["label"]))
