"""Where inference windows go, and which crops they take: pure index arithmetic, no model."""

import numpy as np
import pytest

from actlumos_jax.inference import clips
from actlumos_jax.inference.model import Preprocessing
from data_pipelines import sampling, transforms
from data_pipelines.bad_input import InputError

PREP = Preprocessing(num_frames=8, frame_stride=4, resize=(36, 48), crop=(32, 32), interpolation="area")  # span 29


def starts(length, views):
    windows, wrapped = clips.plan_windows(length, PREP, views)
    return [w.start for w in windows], wrapped


@pytest.mark.parametrize("length", [29, 30, 40, 57])
def test_one_window_is_the_evaluations_centred_clip(length):
    windows, wrapped = clips.plan_windows(length, PREP, clips.Views())
    assert not wrapped and len(windows) == 1
    np.testing.assert_array_equal(windows[0].indices, sampling.clip_indices(length, 8, 4))
    windows, _ = clips.plan_windows(length, PREP, clips.Views(temporal=1))
    np.testing.assert_array_equal(windows[0].indices, sampling.clip_indices(length, 8, 4))


def test_sliding_windows_are_centred_and_stride_apart():
    assert starts(58, clips.Views()) == ([0, 29], False)
    assert starts(60, clips.Views()) == ([1, 30], False)  # one frame left over at each end
    assert starts(40, clips.Views(stride=4)) == ([1, 5, 9], False)
    windows, _ = clips.plan_windows(40, PREP, clips.Views(stride=4))
    np.testing.assert_array_equal(windows[2].indices, 9 + 4 * np.arange(8))
    assert (windows[2].start, windows[2].end) == (9, 38)


def test_temporal_views_spread_from_first_to_last_frame():
    assert starts(100, clips.Views(temporal=3)) == ([0, 35, 71], False)
    windows, _ = clips.plan_windows(100, PREP, clips.Views(temporal=3))
    assert windows[-1].indices[-1] == 99
    assert starts(29, clips.Views(temporal=3)) == ([0], False)  # identical clips are scored once


def test_a_short_video_wraps_as_training_does():
    windows, wrapped = clips.plan_windows(24, PREP, clips.Views(stride=2))
    assert wrapped and len(windows) == 1
    np.testing.assert_array_equal(windows[0].indices, sampling.clip_indices(24, 8, 4))
    assert windows[0].indices.max() < 24 and windows[0].end == 24


def test_spatial_crops():
    (centre,) = clips.spatial_crops(PREP, 1)
    assert centre == transforms.centre_crop((36, 48), (32, 32))
    three = clips.spatial_crops(PREP, 3)
    assert [(d.top, d.left) for d in three] == [(2, 0), (2, 8), (2, 16)]
    five = clips.spatial_crops(PREP, 5)
    assert (centre.top, centre.left) in [(d.top, d.left) for d in five] and len(set(five)) == 5
    ten = clips.spatial_crops(PREP, 10)
    assert [d.flip for d in ten] == [False] * 5 + [True] * 5
    for d in ten:
        assert d.top + d.height <= 36 and d.left + d.width <= 48


def test_views_are_checked():
    assert clips.parse_views("3x3") == (3, 3)
    assert clips.parse_views(" 1X1 ") == (1, 1)
    for bad in ("3", "0x1", "2x4", "ax1"):
        with pytest.raises(InputError):
            clips.parse_views(bad)
    with pytest.raises(InputError, match="not both"):
        clips.Views(temporal=2, stride=3)


def test_directories_expand_to_their_videos(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.MP4").write_bytes(b"1")
    (tmp_path / "a" / "notes.txt").write_text("no")
    (tmp_path / "b.avi").write_bytes(b"1")
    found = clips.expand_inputs([tmp_path, tmp_path / "given.bin"])
    assert found == [tmp_path / "a" / "x.MP4", tmp_path / "b.avi", tmp_path / "given.bin"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: directory holds no video files"):
        clips.expand_inputs([tmp_path / "empty"])
