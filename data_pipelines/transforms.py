"""Spatial augmentation of whole clips, and the input normalisation.

One draw (crop box + flip) applies to every frame of a view; the two SSL views
share one when their sampling asks for it (``SslIndices.same_spatial_draw``).
The teacher's retinex stream is computed on device from the cropped dark clip,
so both streams see the same crop. Draws live in the coordinates of the frame
resized to ``resize`` (128x170 by default), as in the reference pipeline
(resize, crop, resize). The loader never builds that resized frame:
``crop_yuv_to_rgb`` maps the box back to source pixels and resizes the
decoder's YUV planes straight to the crop size, then converts to RGB, on the
crop only. Pixels stay uint8 on the host: ``normalize`` runs on device.

Interpolation: ``bilinear`` (OpenCV ``INTER_LINEAR``) is what the reference
pipeline does, and is right for the paper's sizes (a ~1.1x shrink). ``area``
box-filters whatever it shrinks (``INTER_AREA``) and stays bilinear where it
enlarges. It matters for dark clips shrunk a lot (the CPU preset takes 32x32
crops out of ~128x128 boxes): bilinear reads ~4 of the ~16 source pixels
behind each output pixel, so the sensor noise passes through at almost full
strength, where a box filter averages it down ~4x.

jax is imported inside the device-side functions only: grain workers import
this module, and importing jax there costs seconds per worker.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_pipelines.frame_reader import YuvClip, yuv_to_rgb_matrix

# Normalisation of the IG-65M R(2+1)D weights, for pixels in [0, 1].
IG65M_MEAN = (0.43216, 0.394666, 0.37645)
IG65M_STD = (0.22803, 0.22145, 0.216989)
MULTI_SCALE_RATIOS = (1.0, 0.875, 0.75, 0.66)
INTERPOLATIONS = ("bilinear", "area")


@dataclasses.dataclass(frozen=True)
class CropDraw:
    """A crop box in the resized frame, and whether to flip left-right."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False


def multi_scale_crop_sizes(
    image_hw: tuple[int, int], output_hw: tuple[int, int],
    scales: tuple[float, ...] = MULTI_SCALE_RATIOS, max_distort: int = 1,
) -> list[tuple[int, int]]:
    """Candidate (height, width) crops of the reference's multi-scale crop.

    Each side is ``int(short_side * scale)`` (a size within 3 px of the output
    snaps to it); the height and width scales differ by at most ``max_distort``
    steps of the scale list.
    """
    base = min(image_hw)
    sizes = [int(base * s) for s in scales]
    heights = [output_hw[0] if abs(s - output_hw[0]) < 3 else s for s in sizes]
    widths = [output_hw[1] if abs(s - output_hw[1]) < 3 else s for s in sizes]
    return [(h, w) for i, h in enumerate(heights) for j, w in enumerate(widths) if abs(i - j) <= max_distort]


def fixed_crop_offsets(image_hw: tuple[int, int], crop_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """The 13 (top, left) positions of the reference's ``more_fix_crop``: corners,
    centre, edge centres and quarter points of a 4x4 grid over the slack."""
    h_step = (image_hw[0] - crop_hw[0]) // 4
    w_step = (image_hw[1] - crop_hw[1]) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2),
            (2, 0), (2, 4), (4, 2), (0, 2),
            (1, 1), (1, 3), (3, 1), (3, 3)]
    return [(r * h_step, c * w_step) for r, c in grid]


def sample_multi_scale_crop(
    rng: np.random.Generator, image_hw: tuple[int, int], output_hw: tuple[int, int],
    scales: tuple[float, ...] = MULTI_SCALE_RATIOS, flip_probability: float = 0.5,
) -> CropDraw:
    """A training draw: a multi-scale crop size, one of the fixed positions, a flip."""
    sizes = multi_scale_crop_sizes(image_hw, output_hw, scales)
    crop_h, crop_w = sizes[int(rng.integers(len(sizes)))]
    offsets = fixed_crop_offsets(image_hw, (crop_h, crop_w))
    top, left = offsets[int(rng.integers(len(offsets)))]
    return CropDraw(top, left, crop_h, crop_w, flip=bool(rng.random() < flip_probability))


def centre_crop(image_hw: tuple[int, int], output_hw: tuple[int, int]) -> CropDraw:
    """The evaluation draw: an ``output_hw`` box in the centre, no flip."""
    if output_hw[0] > image_hw[0] or output_hw[1] > image_hw[1]:
        raise ValueError(f"crop {output_hw} is larger than the resized frame {image_hw}")
    return CropDraw((image_hw[0] - output_hw[0]) // 2, (image_hw[1] - output_hw[1]) // 2, *output_hw)


def source_box(draw: CropDraw, resized_hw: tuple[int, int], source_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The draw's (top, left, height, width) in source pixels.

    Pixel edges scale with the frame (a box edge at x in the resized frame is
    at x * source / resized in the source). Edges snap to the nearest even
    pixel, where 4:2:0 chroma samples start, so every edge moves by at most
    one source pixel (0.53 px of a 128x170 frame from 240x320).
    """
    scale_y, scale_x = source_hw[0] / resized_hw[0], source_hw[1] / resized_hw[1]

    def edges(start: int, size: int, scale: float, limit: int) -> tuple[int, int]:
        lo = min(2 * round(start * scale / 2), max(limit - 2, 0))
        hi = min(max(2 * round((start + size) * scale / 2), lo + 2), limit)
        return lo, hi - lo

    top, height = edges(draw.top, draw.height, scale_y, source_hw[0])
    left, width = edges(draw.left, draw.width, scale_x, source_hw[1])
    return top, left, height, width


def crop_yuv_to_rgb(
    clip: YuvClip, draw: CropDraw, resized_hw: tuple[int, int], output_hw: tuple[int, int],
    interpolation: str = "bilinear",
) -> np.ndarray:
    """uint8 RGB (T, *output_hw, 3): the draw applied to every frame of ``clip``.

    Crops the box (``source_box``) from each Y, U and V plane, resizes each to
    ``output_hw`` (so chroma is upsampled in the same pass), converts with the
    clip's YUV matrix and flips. YUV -> RGB is affine, so it commutes with
    either (linear) resize up to rounding.
    """
    if draw.top + draw.height > resized_hw[0] or draw.left + draw.width > resized_hw[1]:
        raise ValueError(f"crop {draw} does not fit a frame of {resized_hw}")
    top, left, height, width = source_box(draw, resized_hw, clip.frame_hw)
    c_top, c_left = top // 2, left // 2
    c_bottom, c_right = -(-(top + height) // 2), -(-(left + width) // 2)
    out_h, out_w = output_hw
    luma_flag = _cv2_flag(interpolation, (height, width), output_hw)
    chroma_flag = _cv2_flag(interpolation, (c_bottom - c_top, c_right - c_left), output_hw)
    planes = np.empty((3, len(clip), out_h, out_w), np.uint8)
    for t, row in enumerate(clip.rows):
        cv2.resize(clip.y[row, top:top + height, left:left + width], (out_w, out_h),
                   dst=planes[0, t], interpolation=luma_flag)
        cv2.resize(clip.u[row, c_top:c_bottom, c_left:c_right], (out_w, out_h),
                   dst=planes[1, t], interpolation=chroma_flag)
        cv2.resize(clip.v[row, c_top:c_bottom, c_left:c_right], (out_w, out_h),
                   dst=planes[2, t], interpolation=chroma_flag)
    # One OpenCV call per clip: frames stacked along the rows are one tall image.
    yuv = cv2.merge([p.reshape(-1, out_w) for p in planes])
    rgb = cv2.transform(yuv, yuv_to_rgb_matrix(clip.colorspace, clip.full_range))
    if draw.flip:
        rgb = cv2.flip(rgb, 1)
    return rgb.reshape(len(clip), out_h, out_w, 3)


def _cv2_flag(interpolation: str, source_hw: tuple[int, int], output_hw: tuple[int, int]) -> int:
    """OpenCV's flag for one plane: INTER_AREA only where ``area`` shrinks both sides."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    shrinks = source_hw[0] > output_hw[0] and source_hw[1] > output_hw[1]
    return cv2.INTER_AREA if interpolation == "area" and shrinks else cv2.INTER_LINEAR


def normalize(x_uint8, dtype=None):
    """uint8 RGB (..., 3) to IG-65M-normalised floats (default float32); meant
    to run on device inside the jitted step."""
    return standardize(to_unit_range(x_uint8), dtype)


def standardize(x01, dtype=None):
    """[0, 1] RGB floats (..., 3), e.g. enhanced frames, to the IG-65M normalisation."""
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top  # keeps jax out of loader workers
    dtype = jnp.float32 if dtype is None else dtype
    mean = jnp.asarray(IG65M_MEAN, jnp.float32)
    std = jnp.asarray(IG65M_STD, jnp.float32)
    return ((x01.astype(jnp.float32) - mean) / std).astype(dtype)


def to_unit_range(x_uint8, dtype=None):
    """uint8 to [0, 1] floats on device (the retinex stream starts from these)."""
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    dtype = jnp.float32 if dtype is None else dtype
    return (x_uint8.astype(jnp.float32) / 255.0).astype(dtype)

