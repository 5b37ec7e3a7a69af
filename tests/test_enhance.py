"""Enhancement ops against direct per-frame OpenCV / NumPy / SciPy computations."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from actlumos_jax import enhance

RNG = np.random.default_rng(0)
# (B, T, H, W, C) dark clips: values in [0, 0.25], as ARID frames mostly are.
CLIP = (RNG.random((2, 2, 12, 16, 3)) * 0.25).astype(np.float32)


def frames_of(clip):
    return clip.reshape((-1,) + clip.shape[-3:])


def cv2_log_ratio(frame, sigma):
    """Retinex log-ratio of one (H, W, C) frame, channel by channel, with OpenCV's blur."""
    out = np.empty(frame.shape, np.float64)
    for c in range(frame.shape[-1]):
        shifted = frame[..., c].astype(np.float64) * 255.0 + 1.0
        blurred = cv2.GaussianBlur(shifted, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        out[..., c] = np.log(shifted) - np.log(blurred)
    return out


def numpy_stretch(ratio, clip_percent=0.0):
    out = np.empty_like(ratio)
    for c in range(ratio.shape[-1]):
        r = ratio[..., c]
        if clip_percent > 0:
            low, high = np.quantile(r, [clip_percent / 100, 1 - clip_percent / 100])
            r = np.clip(r, low, high)
        else:
            low, high = r.min(), r.max()
        out[..., c] = (r - low) / (high - low)
    return out


@pytest.mark.parametrize("sigma", [1.0, 3.3, 15.0, 80.0, 250.0])
def test_gaussian_blur_matches_opencv_even_when_kernel_exceeds_frame(sigma):
    frame = RNG.random((9, 13, 2)) * 255 + 1
    got = np.asarray(enhance.gaussian_blur(jnp.asarray(frame, jnp.float32), sigma))
    for c in range(2):
        want = cv2.GaussianBlur(frame[..., c], (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(got[..., c], want, rtol=1e-5)


def test_blur_matrix_is_a_reflect101_convolution():
    n, sigma = 7, 2.0
    ksize = enhance.opencv_gaussian_ksize(sigma)
    assert ksize == 17  # OpenCV: cvRound(2 * 4 * sigma + 1) | 1
    taps = cv2.getGaussianKernel(ksize, sigma).ravel()
    signal = RNG.random(n)
    padded = np.pad(signal, ksize // 2, mode="reflect")  # numpy's "reflect" is reflect-101
    want = np.array([padded[i:i + ksize] @ taps for i in range(n)])
    matrix = enhance.gaussian_blur_matrix(n, sigma)
    np.testing.assert_allclose(matrix @ signal, want, rtol=1e-6)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)


def test_ssr_matches_per_frame_opencv():
    got = np.asarray(enhance.single_scale_retinex(jnp.asarray(CLIP), 15.0))
    want = np.stack([numpy_stretch(cv2_log_ratio(f, 15.0)) for f in frames_of(CLIP)])
    np.testing.assert_allclose(frames_of(got), want, atol=2e-4)


@pytest.mark.parametrize("clip_percent", [0.0, 2.0])
def test_msr_matches_per_frame_opencv(clip_percent):
    sigmas = (15.0, 80.0, 250.0)
    got = np.asarray(enhance.multi_scale_retinex(jnp.asarray(CLIP), sigmas, clip_percent))
    want = np.stack([
        numpy_stretch(sum(cv2_log_ratio(f, s) for s in sigmas) / 3, clip_percent)
        for f in frames_of(CLIP)])
    np.testing.assert_allclose(frames_of(got), want, atol=2e-4)


def test_retinex_is_invariant_to_global_scaling():
    x = (0.3 + 0.2 * RNG.random((12, 16, 3))).astype(np.float32)
    a = np.asarray(enhance.single_scale_retinex(jnp.asarray(x), 15.0), np.float64)
    b = np.asarray(enhance.single_scale_retinex(jnp.asarray(2 * x), 15.0), np.float64)
    # Only the +1 offset breaks the invariance: log(cI + 1) - log(cI) <= 1 / (c I_min)
    # for the pixel and for its blur, so the log-ratios differ by at most twice
    # 1 / (255 x_min); the stretch divides that by the smaller log-ratio span.
    ratio = cv2_log_ratio(x, 15.0)
    span = (ratio.max(axis=(0, 1)) - ratio.min(axis=(0, 1))).min()
    bound = 2 * 2 / (255 * x.min()) / span
    assert np.abs(a - b).max() < bound
    assert bound < 0.2  # the check is not vacuous
    # Without the offset (I >> 1) it is exact.
    big = np.asarray(enhance.retinex_log_ratio(jnp.asarray(1000 * x), 15.0))
    bigger = np.asarray(enhance.retinex_log_ratio(jnp.asarray(4000 * x), 15.0))
    np.testing.assert_allclose(big, bigger, atol=2e-5)


def test_gamma_is_darklights_lookup_table():
    levels = np.arange(256)
    lut = 255.0 * (levels / 255.0) ** (1 / 1.8)
    got = np.asarray(enhance.gamma_correction(jnp.asarray(levels / 255.0, jnp.float32)[:, None, None]))
    np.testing.assert_allclose(got.ravel() * 255.0, lut, atol=1e-3)
    assert np.all(np.diff(got.ravel()) > 0)  # strictly monotone
    assert got.ravel()[0] == 0.0 and got.ravel()[-1] == 1.0


def lime_reference_illumination(t_hat, alpha, eps):
    """Assembles the LIME normal equations edge by edge and solves them exactly."""
    h, w = t_hat.shape
    n = h * w
    rows, cols, vals = list(range(n)), list(range(n)), [1.0] * n  # the identity term
    for i in range(h):
        for j in range(w):
            for di, dj in ((1, 0), (0, 1)):
                if i + di < h and j + dj < w:
                    p, q = i * w + j, (i + di) * w + (j + dj)
                    weight = alpha / (abs(t_hat[i + di, j + dj] - t_hat[i, j]) + eps)
                    # weight * (t_q - t_p)^2 contributes [[w, -w], [-w, w]] on (p, q).
                    rows += [p, q, p, q]
                    cols += [p, q, q, p]
                    vals += [weight, weight, -weight, -weight]
    a = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsc()
    return scipy.sparse.linalg.spsolve(a, t_hat.ravel()).reshape(h, w)


def test_lime_matches_sparse_direct_solve():
    frame = CLIP[0, 0].copy()
    frame[3:8, 4:10] = 0.02  # a flat patch: the stiffest part of the system (weights 1/eps)
    got_t = np.asarray(enhance.lime_illumination(jnp.asarray(frame), alpha=0.15, eps=1e-3))
    want_t = lime_reference_illumination(frame.max(axis=-1).astype(np.float64), 0.15, 1e-3)
    # CG stops at a 1e-6 relative residual; the error is then ~cond * 1e-6 relative,
    # far below an 8-bit display step (1/255 = 4e-3). 1e-5 absolute holds with margin.
    np.testing.assert_allclose(got_t, want_t, atol=1e-5)
    got = np.asarray(enhance.lime(jnp.asarray(frame), gamma=0.8))
    want = np.clip(frame / np.maximum(want_t, 1e-3)[..., None] ** 0.8, 0, 1)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_lime_brightens_dark_and_keeps_uniform_uniform():
    out = np.asarray(enhance.lime(jnp.asarray(CLIP)))
    assert out.mean() > 2 * CLIP.mean()
    uniform = np.full((10, 12, 3), 0.1, np.float32)
    out = np.asarray(enhance.lime(jnp.asarray(uniform), gamma=0.8))
    np.testing.assert_allclose(out, 0.1 ** 0.2, rtol=1e-5)  # I / I^0.8, the same everywhere


ALL = [
    ("ssr", dict(sigma=15.0)),
    ("msr", {}),
    ("lime", {}),
    ("gamma", {}),
]


@pytest.mark.parametrize("method,kwargs", ALL)
def test_range_shape_dtype_jit_and_per_frame(method, kwargs):
    fn = jax.jit(lambda x: enhance.enhance(x, method, **kwargs))
    out = fn(jnp.asarray(CLIP))
    assert out.shape == CLIP.shape and out.dtype == jnp.float32
    out = np.asarray(out)
    assert out.min() >= 0.0 and out.max() <= 1.0
    single = np.stack([np.asarray(fn(jnp.asarray(f))) for f in frames_of(CLIP)[:2]])
    np.testing.assert_allclose(frames_of(out)[:2], single, atol=1e-6)

    bf16_in = jnp.asarray(CLIP, jnp.bfloat16)
    out_bf16 = fn(bf16_in)
    assert out_bf16.dtype == jnp.bfloat16
    # Same computation on the same (bf16-rounded) input, in float32: only the bf16
    # rounding of the output may differ, at most half an ulp at 1 (2^-9).
    want = np.asarray(fn(bf16_in.astype(jnp.float32)))
    np.testing.assert_allclose(np.asarray(out_bf16, np.float32), want, atol=2 ** -9 + 1e-6)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown enhancement method 'clahe'.*msr"):
        enhance.enhance(jnp.asarray(CLIP), "clahe")
    with pytest.raises(TypeError, match="uint8"):
        enhance.enhance(jnp.zeros((4, 4, 3), jnp.uint8), "gamma")
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, C\)"):
        enhance.single_scale_retinex(jnp.zeros((4, 4)), 15.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        enhance.single_scale_retinex(jnp.zeros((4, 4, 3)), 0.0)
