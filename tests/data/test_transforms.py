"""Spatial augmentation against worked examples and OpenCV; normalisation by hand."""

import cv2
import numpy as np
import pytest

from data_pipelines import transforms
from data_pipelines.frame_reader import YuvClip


def _smooth_clip(rng, t=3, h=128, w=170):
    base = rng.integers(0, 256, (t, 12, 16, 3)).astype(np.uint8)
    return np.stack([cv2.resize(b, (w, h), interpolation=cv2.INTER_CUBIC) for b in base])


def test_multi_scale_crop_sizes_worked_example():
    # Short side 128: int(128 * s) = 128, 112, 96, 84; neighbouring scales may pair.
    sizes = transforms.multi_scale_crop_sizes((128, 170), (112, 112))
    assert sizes == [(128, 128), (128, 112), (112, 128), (112, 112), (112, 96), (96, 112),
                     (96, 96), (96, 84), (84, 96), (84, 84)]
    # Sizes within 3 px of the output snap to it (64 * .875 = 56 exactly; 64 * .66 = 42).
    assert (56, 56) in transforms.multi_scale_crop_sizes((64, 85), (56, 56))
    assert transforms.multi_scale_crop_sizes((100, 100), (74, 74))[-1] == (66, 66)
    assert (74, 74) in transforms.multi_scale_crop_sizes((100, 100), (74, 74))  # 75 snaps to 74


def test_fixed_offsets_worked_example():
    offsets = transforms.fixed_crop_offsets((128, 170), (96, 84))  # steps 8 and 21
    assert len(offsets) == 13 and len(set(offsets)) == 13
    assert {(0, 0), (0, 84), (32, 0), (32, 84), (16, 42), (8, 21), (24, 63)} <= set(offsets)


def test_sampled_draws_stay_inside_and_flip_half_the_time():
    rng = np.random.default_rng(0)
    draws = [transforms.sample_multi_scale_crop(rng, (128, 170), (112, 112)) for _ in range(2000)]
    assert all(d.top + d.height <= 128 and d.left + d.width <= 170 for d in draws)
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55
    assert len({(d.height, d.width) for d in draws}) == 10


def test_centre_crop_and_errors():
    assert transforms.centre_crop((128, 170), (112, 112)) == transforms.CropDraw(8, 29, 112, 112, False)
    with pytest.raises(ValueError, match="larger"):
        transforms.centre_crop((64, 85), (112, 112))


def test_normalize_matches_a_hand_computation():
    x = np.array([[0, 128, 255], [10, 20, 30]], np.uint8)
    mean, std = [0.43216, 0.394666, 0.37645], [0.22803, 0.22145, 0.216989]
    expected = np.array([[(v / 255.0 - mean[c]) / std[c] for c, v in enumerate(row)] for row in x.tolist()])
    # float32 rounds x / 255, the mean and their difference (all <= 1 in size) by <= 6e-8 each,
    # and dividing by std >= 0.217 magnifies that 4.6x (~8e-7); std's own rounding and the
    # quotient's add <= 2 x 6e-8 relative of values <= 2.9 (~3.5e-7): ~1.2e-6 in all.
    # A constant wrong in its 4th significant digit moves a value by >= 4e-4.
    np.testing.assert_allclose(np.asarray(transforms.normalize(x)), expected, rtol=0, atol=2e-6)
    import jax.numpy as jnp
    assert transforms.normalize(x, jnp.bfloat16).dtype == jnp.bfloat16
    # x / 255 <= 1, one float32 rounding: <= 6e-8 absolute.
    np.testing.assert_allclose(np.asarray(transforms.to_unit_range(x)), x / 255.0, rtol=0, atol=1.2e-7)


def test_source_box_worked_example_and_bounds():
    # 128x170 -> 240x320: edges 16 -> 30, 112 -> 210; 42 -> 79.06 -> 80, 126 -> 237.2 -> 238.
    draw = transforms.CropDraw(top=16, left=42, height=96, width=84)
    assert transforms.source_box(draw, (128, 170), (240, 320)) == (30, 80, 180, 158)
    rng = np.random.default_rng(3)
    for _ in range(300):
        d = transforms.sample_multi_scale_crop(rng, (128, 170), (112, 112))
        top, left, h, w = transforms.source_box(d, (128, 170), (240, 320))
        assert top % 2 == left % 2 == h % 2 == w % 2 == 0 and top + h <= 240 and left + w <= 320
        assert abs(top - d.top * 240 / 128) <= 1 and abs(top + h - (d.top + d.height) * 240 / 128) <= 1
        assert abs(left - d.left * 320 / 170) <= 1 and abs(left + w - (d.left + d.width) * 320 / 170) <= 1


def _yuv_clip(rgb):
    """Encode-free 4:2:0 planes of RGB frames (cv2's BT.601 limited-range I420)."""
    i420 = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420) for f in rgb])
    t, h, w = rgb.shape[:3]
    u = i420[:, h:h + h // 4].reshape(t, h // 2, w // 2)
    v = i420[:, h + h // 4:].reshape(t, h // 2, w // 2)
    return YuvClip(i420[:, :h], u, v, np.arange(t), colorspace=5, full_range=False)


def test_crop_yuv_to_rgb_matches_the_resize_crop_resize_reference():
    rgb = _smooth_clip(np.random.default_rng(4), t=3, h=240, w=320)
    clip = _yuv_clip(rgb)
    for draw in [transforms.CropDraw(16, 42, 96, 84, flip=True), transforms.CropDraw(0, 0, 128, 128),
                 transforms.CropDraw(8, 29, 112, 112)]:
        got = transforms.crop_yuv_to_rgb(clip, draw, (128, 170), (112, 112))
        assert got.shape == (3, 112, 112, 3) and got.dtype == np.uint8
        # Reference: the original two resizes in RGB (cv2 INTER_LINEAR), as the reference code does.
        small = [cv2.resize(f, (170, 128), interpolation=cv2.INTER_LINEAR) for f in rgb]
        ref = np.stack([cv2.resize(f[draw.top:draw.top + draw.height, draw.left:draw.left + draw.width],
                                   (112, 112), interpolation=cv2.INTER_LINEAR) for f in small])
        if draw.flip:
            ref = ref[:, :, ::-1]
        diff = np.abs(got.astype(int) - ref.astype(int))
        assert diff.mean() < 5.0 and np.percentile(diff, 99) <= 16, (draw, diff.mean())  # 4:2:0 chroma, box snap
        # The other flip, or the box one 128x170 pixel off, is clearly worse.
        assert np.abs(got.astype(int) - ref[:, :, ::-1].astype(int)).mean() > 3 * diff.mean()
    # One draw, two clips: the same pixels for the same frames.
    a = transforms.crop_yuv_to_rgb(clip, draw, (128, 170), (112, 112))
    assert np.array_equal(a, got)
    with pytest.raises(ValueError, match="does not fit"):
        transforms.crop_yuv_to_rgb(clip, transforms.CropDraw(20, 0, 112, 112), (128, 170), (112, 112))


def test_area_interpolation_box_filters_a_large_shrink_and_bilinear_samples_it():
    # A dark, noisy frame shrunk 4x: the box filter averages 16 pixels per output pixel.
    rng = np.random.default_rng(7)
    rgb = np.clip(12 + 4 * rng.standard_normal((2, 128, 172, 3)), 0, 255).round().astype(np.uint8)
    clip = _yuv_clip(rgb)
    draw = transforms.CropDraw(0, 0, 36, 36)  # in the 36 x 48 frame: a 128 x 128 source box
    area = transforms.crop_yuv_to_rgb(clip, draw, (36, 48), (32, 32), "area")
    bilinear = transforms.crop_yuv_to_rgb(clip, draw, (36, 48), (32, 32), "bilinear")
    # Independent reference: OpenCV's INTER_AREA on the RGB source box.
    box = transforms.source_box(draw, (36, 48), (128, 172))
    ref = np.stack([cv2.resize(f[box[0]:box[0] + box[2], box[1]:box[1] + box[3]], (32, 32),
                               interpolation=cv2.INTER_AREA) for f in rgb])
    assert np.abs(area.astype(int) - ref.astype(int)).mean() < 1.5
    luma = lambda x: x.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
    # Luma noise sd ~2.7: bilinear averages ~2x2 pixels (-> ~1.35), the box 4x4 (-> ~0.7, plus rounding).
    assert luma(area).std() < 0.6 * luma(bilinear).std(), (luma(area).std(), luma(bilinear).std())
    assert abs(luma(area).mean() - luma(bilinear).mean()) < 1.0  # same exposure, less noise
    # Enlarging: area falls back to bilinear (INTER_AREA would replicate pixels there).
    small = transforms.CropDraw(0, 0, 96, 84)
    assert np.array_equal(transforms.crop_yuv_to_rgb(clip, small, (128, 170), (112, 112), "area"),
                          transforms.crop_yuv_to_rgb(clip, small, (128, 170), (112, 112), "bilinear"))
    with pytest.raises(ValueError, match="interpolation"):
        transforms.crop_yuv_to_rgb(clip, draw, (36, 48), (32, 32), "lanczos")
