"""The YUV frame reader: colour matrices against libswscale, frames against a
full RGB decode, decoding that stops early, shared frames and bad input."""

import av
import cv2
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter

from data_pipelines import frame_reader
from data_pipelines.frame_reader import read_yuv_frames, yuv_to_rgb_matrix
from data_pipelines.video_io import VideoError, decode_video, encode_video


def _smooth_video(rng, t=10, h=48, w=64):
    base = rng.integers(0, 256, (t, 6, 8, 3)).astype(np.uint8)
    return np.stack([cv2.resize(b, (w, h), interpolation=cv2.INTER_CUBIC) for b in base])


@pytest.fixture(scope="module")
def video():
    frames = _smooth_video(np.random.default_rng(0))
    return frames, encode_video(frames, crf=10)


def _to_rgb_full(clip, k):
    """RGB of frame k of a YuvClip at full size: chroma upsampled, then the matrix."""
    row = clip.rows[k]
    h, w = clip.frame_hw
    up = [cv2.resize(p[row], (w, h), interpolation=cv2.INTER_LINEAR) for p in (clip.u, clip.v)]
    yuv = np.stack([clip.y[row], *up], -1).astype(np.float64)
    m = yuv_to_rgb_matrix(clip.colorspace, clip.full_range).astype(np.float64)
    return np.clip(np.rint(yuv @ m[:, :3].T + m[:, 3]), 0, 255)


@pytest.mark.parametrize("colorspace,full_range", [(5, False), (1, False), (5, True), (2, False)])
def test_yuv_matrix_matches_libswscale(colorspace, full_range):
    # yuv444p has no chroma resampling, so only the matrix is compared.
    rng = np.random.default_rng(colorspace)
    yuv = np.stack([rng.integers(16, 236, (16, 16)), rng.integers(16, 241, (16, 16)),
                    rng.integers(16, 241, (16, 16))], -1).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.moveaxis(yuv, -1, 0)), format="yuvj444p" if full_range else "yuv444p")
    frame.colorspace = colorspace
    frame.color_range = 2 if full_range else 1
    want = VideoReformatter().reformat(frame, format="rgb24").to_ndarray().astype(int)
    m = yuv_to_rgb_matrix(colorspace, full_range).astype(np.float64)
    got = np.clip(np.rint(yuv.astype(np.float64) @ m[:, :3].T + m[:, 3]), 0, 255).astype(int)
    assert np.abs(got - want).max() <= 2  # libswscale works in 15-bit fixed point
    # A different matrix is far off somewhere: the test can tell them apart.
    other = yuv_to_rgb_matrix(1 if colorspace != 1 else 5, not full_range).astype(np.float64)
    wrong = np.clip(np.rint(yuv.astype(np.float64) @ other[:, :3].T + other[:, 3]), 0, 255)
    assert np.abs(wrong - want).max() > 10


def test_bt601_limited_worked_example():
    m = yuv_to_rgb_matrix(5, False)
    np.testing.assert_allclose(m @ [16, 128, 128, 1], [0, 0, 0], atol=1e-3)  # video black
    np.testing.assert_allclose(m @ [235, 128, 128, 1], [255, 255, 255], atol=1e-3)  # video white
    np.testing.assert_allclose(m[0, 2], 1.596, atol=1e-3)  # the textbook R from Cr gain


def test_frames_match_a_full_rgb_decode(video):
    frames, data = video
    reference = decode_video(data)
    fast, slow = read_yuv_frames(data, lambda n: [np.arange(2, 6), np.array([0, 4, 8])], name="v.mp4")
    assert len(fast) == 4 and len(slow) == 3
    assert fast.y is slow.y and fast.y.shape == (6, 48, 64)  # frames 0, 2-5, 8, each kept once
    assert fast.u.shape == (6, 24, 32)
    luma = np.array([0.299, 0.587, 0.114])
    for clip, wanted in ((fast, [2, 3, 4, 5]), (slow, [0, 4, 8])):
        for k, index in enumerate(wanted):
            got = _to_rgb_full(clip, k)
            # Luma does not depend on how 4:2:0 chroma is upsampled (bilinear
            # here, nearest in libswscale's unscaled path): it must agree.
            assert np.abs((got - reference[index]) @ luma).mean() < 2.0
            # Colour: at least as close to the encoded frames as libswscale's decode.
            ours, theirs = (np.abs(x.astype(float) - frames[index]).mean() for x in (got, reference[index]))
            assert ours <= theirs + 0.25, (index, ours, theirs)
    # The wrong frame is far off.
    assert np.abs(_to_rgb_full(fast, 0) - reference[3].astype(float)).mean() > 10


def test_decoding_stops_after_the_last_needed_frame(video, monkeypatch):
    _, data = video
    yielded = []
    real_open = frame_reader._open

    class Counting:
        def __init__(self, container):
            self._c = container
            self.streams = container.streams

        def decode(self, stream):
            for frame in self._c.decode(stream):
                yielded.append(frame)
                yield frame

        def close(self):
            self._c.close()

    monkeypatch.setattr(frame_reader, "_open", lambda s, n: Counting(real_open(s, n)))
    read_yuv_frames(data, lambda n: [np.array([1, 3])])
    assert len(yielded) == 4


def test_header_length_is_passed_and_bad_input_names_the_file(video):
    _, data = video
    lengths = []
    read_yuv_frames(data, lambda n: lengths.append(n) or [np.array([0])])
    assert lengths == [10]
    with pytest.raises(VideoError, match="bad.mp4"):
        read_yuv_frames(b"not a video" * 40, lambda n: [np.array([0])], name="bad.mp4")
    with pytest.raises(VideoError, match="cut.mp4"):
        read_yuv_frames(data[: len(data) // 2], lambda n: [np.arange(n)], name="cut.mp4")
    with pytest.raises(VideoError, match="outside"):
        read_yuv_frames(data, lambda n: [np.array([n])], name="v.mp4")


def test_other_pixel_formats_go_through_bt601_yuv420(tmp_path):
    # A 4:4:4 stream takes the libswscale route to 4:2:0 BT.601 limited range.
    # Chroma smooth enough that 4:2:0 subsampling loses little.
    frames = _smooth_video(np.random.default_rng(3), t=3)
    frames = cv2.GaussianBlur(frames.reshape(-1, 64, 3), (0, 0), 3).reshape(frames.shape)
    path = tmp_path / "444.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.options = {"crf": "10"}
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv444p")))
        out.mux(stream.encode())
    (clip,) = read_yuv_frames(str(path), lambda n: [np.arange(n)])
    assert clip.u.shape == (3, 24, 32) and clip.colorspace == 5 and not clip.full_range
    reference = decode_video(str(path))
    luma = np.array([0.299, 0.587, 0.114])
    for k in range(3):
        diff = _to_rgb_full(clip, k) - reference[k]
        assert np.abs(diff @ luma).mean() < 2.0 and np.abs(diff).mean() < 4.0  # chroma lost to 4:2:0
        assert np.abs(_to_rgb_full(clip, k) - reference[(k + 1) % 3].astype(float)).mean() > 10


def test_encoding_is_reproducible():
    # Multi-threaded x264 gave other bytes on each call for the same frames (decoded up to
    # 12 levels apart), so the embedded dataset depended on its generation's worker count.
    # A clip of the embedded dataset: one that did so on every call.
    from data_pipelines import synthetic

    preset = synthetic.get_preset("tiny")
    frames, _ = synthetic.render_clip(preset, 0, synthetic.clip_specs(preset)[0])
    encodings = {encode_video(frames) for _ in range(5)}
    assert len(encodings) == 1
