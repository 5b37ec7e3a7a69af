"""Low-light enhancement on device: retinex (SSR / MSR), LIME, gamma and Zero-DCE.

Every function takes float frames in [0, 1] shaped (..., H, W, C) (any leading
dims: (B, T, H, W, C) clips, (T, H, W, C) or a single (H, W, C) frame) and returns
frames in [0, 1] of the same shape and dtype. Everything is pure jnp with static
shapes, so the teacher's jitted train step can enhance its dark clips on the
accelerator: no host callbacks and no Python loops over frames. Internals run in
float32 whatever the input dtype (bf16 in, bf16 out).

Choices the paper leaves open (FACTS.md, "Enhancement"), fixed here:

* Gaussian blur: OpenCV's kernel, ``exp(-d^2 / 2 sigma^2)`` normalised to sum 1,
  with OpenCV's default size for float images, ``ksize = round(8 sigma + 1) | 1``
  (radius ~4 sigma), and OpenCV's default border, BORDER_REFLECT_101
  (``dcb|abcd|cba``). The kernel is never truncated to the frame: for sigma = 80 or
  250 on 112-pixel frames the reflection is repeated as OpenCV does (the extended
  signal is periodic with period 2(n - 1)). The blur along each axis is therefore
  a fixed (n, n) matrix built once on the host from the static shape, applied as
  two matmuls; this is exact for any sigma, costs 2n MACs per pixel whatever
  sigma is, and equals ``cv2.GaussianBlur(x, (0, 0), sigma)`` on float64 frames.
  dm-pix's ``gaussian_blur`` cannot stand in: it pads the frame with zeros
  where OpenCV reflects it, and at sigma 80 or 250 on a 112-pixel frame most of
  the kernel falls outside the frame.
* Retinex display range: the log-ratio of every frame and channel is stretched
  to [0, 1] by its own min and max, optionally after clipping the lowest and
  highest ``clip_percent`` percent (the "simplest colour balance" of common MSR
  code; quantiles with linear interpolation, as ``np.quantile``). A channel whose
  log-ratio is constant maps to 0.
* LIME: the illumination solve is the quadratic of LIME's sped-up solver with
  strategy-II weights, ``w_d = 1 / (|d_d T^| + eps)``, forward differences that
  stop at the frame edge (no wrap-around), solved per frame by preconditioned
  conjugate gradients with a fixed iteration budget (see ``lime_illumination``).
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

METHODS = ("msr", "ssr", "lime", "gamma", "zero_dce")


def _check_frames(x: jax.Array, name: str) -> None:
    if x.ndim < 3:
        raise ValueError(f"{name}: expected frames shaped (..., H, W, C), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name}: expected float frames in [0, 1], got dtype {x.dtype} "
            "(convert uint8 frames with x / 255 first)")


def opencv_gaussian_ksize(sigma: float) -> int:
    """OpenCV's default Gaussian kernel size for float images (odd, ~8 sigma + 1)."""
    return int(round(sigma * 8 + 1)) | 1


def reflect101_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Maps any integer index onto [0, n) as repeated BORDER_REFLECT_101 does."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx < n, idx, period - idx)


@functools.lru_cache(maxsize=64)
def gaussian_blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) matrix B with ``blurred = B @ signal`` for a length-n signal.

    Row i holds the Gaussian taps of output i folded back onto the signal by the
    reflect-101 border, so every row sums to 1.
    """
    if not sigma > 0:
        raise ValueError(f"Gaussian sigma must be positive, got {sigma}")
    ksize = opencv_gaussian_ksize(sigma)
    radius = ksize // 2
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-(offsets.astype(np.float64) ** 2) / (2.0 * sigma**2))
    taps /= taps.sum()
    rows = np.repeat(np.arange(n), offsets.size)
    cols = reflect101_index((np.arange(n)[:, None] + offsets[None, :]).ravel(), n)
    matrix = np.zeros((n, n), np.float64)
    np.add.at(matrix, (rows, cols), np.tile(taps, n))
    return matrix.astype(np.float32)


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur over the H and W axes of (..., H, W, C) float32 frames."""
    height, width = x.shape[-3], x.shape[-2]
    blur_h = jnp.asarray(gaussian_blur_matrix(height, float(sigma)))
    blur_w = jnp.asarray(gaussian_blur_matrix(width, float(sigma)))
    hp = jax.lax.Precision.HIGHEST  # TPU/GPU default matmuls would round to bf16/tf32.
    x = jnp.einsum("gh,...hwc->...gwc", blur_h, x, precision=hp)
    return jnp.einsum("vw,...hwc->...hvc", blur_w, x, precision=hp)


def retinex_log_ratio(x: jax.Array, sigma: float) -> jax.Array:
    """``log(I + 1) - log(G_sigma * (I + 1))`` with I = 255 x, float32."""
    shifted = x.astype(jnp.float32) * 255.0 + 1.0
    return jnp.log(shifted) - jnp.log(gaussian_blur(shifted, sigma))


def stretch_to_unit(r: jax.Array, clip_percent: float = 0.0) -> jax.Array:
    """Per frame and channel: clip to the [p, 100 - p] percentiles, then min-max to [0, 1]."""
    if not 0.0 <= clip_percent < 50.0:
        raise ValueError(f"clip_percent must be in [0, 50), got {clip_percent}")
    if clip_percent > 0:
        q = jnp.array([clip_percent / 100.0, 1.0 - clip_percent / 100.0], r.dtype)
        low, high = jnp.quantile(r, q, axis=(-3, -2), keepdims=True)
        r = jnp.clip(r, low, high)
    else:
        low = jnp.min(r, axis=(-3, -2), keepdims=True)
        high = jnp.max(r, axis=(-3, -2), keepdims=True)
    span = high - low
    out = (r - low) / jnp.where(span > 0, span, 1.0)
    return jnp.clip(out, 0.0, 1.0)


def single_scale_retinex(x: jax.Array, sigma: float, clip_percent: float = 0.0) -> jax.Array:
    """Single-scale retinex (the paper's R(.)): log-ratio to the blurred image, stretched."""
    _check_frames(x, "single_scale_retinex")
    return stretch_to_unit(retinex_log_ratio(x, sigma), clip_percent).astype(x.dtype)


def multi_scale_retinex(
    x: jax.Array, sigmas: Sequence[float] = (15.0, 80.0, 250.0), clip_percent: float = 0.0,
) -> jax.Array:
    """Multi-scale retinex: the mean of the SSR log-ratios over ``sigmas``, stretched."""
    _check_frames(x, "multi_scale_retinex")
    if len(sigmas) == 0:
        raise ValueError("multi_scale_retinex: sigmas is empty")
    ratio = sum(retinex_log_ratio(x, s) for s in sigmas) / len(sigmas)
    return stretch_to_unit(ratio, clip_percent).astype(x.dtype)


def _forward_diff(t: jax.Array, axis: int) -> jax.Array:
    """Differences t[k+1] - t[k] along ``axis`` (one shorter: no wrap-around)."""
    n = t.shape[axis]
    return jax.lax.slice_in_dim(t, 1, n, axis=axis) - jax.lax.slice_in_dim(t, 0, n - 1, axis=axis)


def _forward_diff_transpose(g: jax.Array, axis: int) -> jax.Array:
    """Adjoint of ``_forward_diff``: (D^T g)[k] = g[k-1] - g[k], with g[-1] = g[n-1] = 0."""
    pad_before = [(0, 0)] * g.ndim
    pad_after = [(0, 0)] * g.ndim
    pad_before[axis] = (1, 0)
    pad_after[axis] = (0, 1)
    return jnp.pad(g, pad_before) - jnp.pad(g, pad_after)


def lime_weights(t_hat: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """Strategy-II smoothness weights ``1 / (|d T^| + eps)`` on the (H-1, W) and (H, W-1) edges."""
    w_v = 1.0 / (jnp.abs(_forward_diff(t_hat, -2)) + eps)
    w_h = 1.0 / (jnp.abs(_forward_diff(t_hat, -1)) + eps)
    return w_v, w_h


def _lime_solve_frame(t_hat: jax.Array, alpha: float, eps: float, iterations: int) -> jax.Array:
    """Solves (I + alpha sum_d D_d^T W_d D_d) t = t^ for one (H, W) frame."""
    w_v, w_h = lime_weights(t_hat, eps)

    def operator(t):
        smooth = (_forward_diff_transpose(w_v * _forward_diff(t, 0), 0)
                  + _forward_diff_transpose(w_h * _forward_diff(t, 1), 1))
        return t + alpha * smooth

    # Jacobi preconditioner: the diagonal is 1 + alpha * (sum of the weights of the
    # pixel's edges); it evens out the 1/eps weights of flat regions.
    edge_sum = (jnp.pad(w_v, ((1, 0), (0, 0))) + jnp.pad(w_v, ((0, 1), (0, 0)))
                + jnp.pad(w_h, ((0, 0), (1, 0))) + jnp.pad(w_h, ((0, 0), (0, 1))))
    inv_diag = 1.0 / (1.0 + alpha * edge_sum)
    t, _ = jax.scipy.sparse.linalg.cg(
        operator, t_hat, x0=t_hat, tol=1e-6, maxiter=iterations, M=lambda r: inv_diag * r)
    return t


def lime_illumination(
    x: jax.Array, alpha: float = 0.15, eps: float = 1e-3, iterations: int = 100,
) -> jax.Array:
    """LIME illumination map (..., H, W): refined per-pixel max over channels.

    Minimises ``||T - T^||^2 + alpha sum_d sum_x w_d(x) (d_d T(x))^2`` with
    T^ = max over channels and w_d from ``lime_weights``. The normal equations
    are symmetric positive definite; each frame is solved by Jacobi-preconditioned
    CG started at T^, stopping at ``iterations`` steps or a relative residual of
    1e-6 (the floor float32 can reach).
    """
    _check_frames(x, "lime_illumination")
    if x.shape[-3] < 2 or x.shape[-2] < 2:
        raise ValueError(f"lime_illumination: frames must be at least 2x2, got shape {x.shape}")
    t_hat = jnp.max(x.astype(jnp.float32), axis=-1)
    frames = t_hat.reshape((-1,) + t_hat.shape[-2:])
    solve = functools.partial(_lime_solve_frame, alpha=alpha, eps=eps, iterations=iterations)
    return jax.vmap(solve)(frames).reshape(t_hat.shape)


def lime(
    x: jax.Array, gamma: float = 0.8, alpha: float = 0.15, eps: float = 1e-3,
    iterations: int = 100, floor: float = 1e-3,
) -> jax.Array:
    """LIME enhancement (Guo et al. 2016): ``I / max(T, floor)^gamma``, clipped to [0, 1]."""
    _check_frames(x, "lime")
    t = lime_illumination(x, alpha=alpha, eps=eps, iterations=iterations)
    t = jnp.maximum(t, floor)[..., None] ** gamma
    return jnp.clip(x.astype(jnp.float32) / t, 0.0, 1.0).astype(x.dtype)


def gamma_correction(x: jax.Array, gamma: float = 1.8) -> jax.Array:
    """DarkLight's gamma stream: ``x^(1/gamma)`` (the lookup 255 (i/255)^(1/gamma) on [0, 1])."""
    _check_frames(x, "gamma_correction")
    if not gamma > 0:
        raise ValueError(f"gamma_correction: gamma must be positive, got {gamma}")
    # adjust_gamma clips to [0, 1] first: a slightly negative input (resampling overshoot) would give NaN.
    return dm_pix.adjust_gamma(x.astype(jnp.float32), 1.0 / gamma).astype(x.dtype)


@functools.lru_cache(maxsize=8)
def _zero_dce_model(path: str):
    from actlumos_jax.models.zero_dce import load_zero_dce  # flax only when the method is used

    # The first call may come while a step is being traced: built eagerly, the cached weights
    # are concrete arrays, not tracers of that step that a later trace would find leaked.
    with jax.ensure_compile_time_eval():
        return load_zero_dce(path)


def zero_dce(x: jax.Array, zero_dce_weights: str | None = None) -> jax.Array:
    """Zero-DCE (DCE-Net, 8 curve iterations) with the weights at ``zero_dce_weights``.

    The weights (a .npz from ``convert_zero_dce`` or ``zero_dce_train``, or its
    run directory) are read once per path and held as concrete arrays, so inside
    a jitted step they are constants of the program, not arguments to trace. A
    file rewritten at the same path is not re-read by the same process.
    """
    _check_frames(x, "zero_dce")
    if not zero_dce_weights:
        raise ValueError(
            'enhance method "zero_dce" needs zero_dce_weights=<path to a Zero-DCE .npz> '
            "(python -m actlumos_jax.convert_zero_dce Epoch99.pth OUT.npz, or python -m actlumos_jax.zero_dce_train)")
    model = _zero_dce_model(os.path.abspath(os.fspath(zero_dce_weights)))
    # Clipped first: a slight overshoot from resampling would be squared eight times.
    enhanced, _ = model(jnp.clip(x.astype(jnp.float32), 0.0, 1.0))
    return jnp.clip(enhanced, 0.0, 1.0).astype(x.dtype)


def enhance(x: jax.Array, method: str, **kwargs) -> jax.Array:
    """Config dispatcher: ``method`` in METHODS, ``kwargs`` passed to that function.

    "ssr" defaults to sigma = 80 (the middle MSR scale; the paper does not state it).
    "zero_dce" needs ``zero_dce_weights=<path>``.
    """
    if method == "msr":
        return multi_scale_retinex(x, **kwargs)
    if method == "ssr":
        kwargs.setdefault("sigma", 80.0)
        return single_scale_retinex(x, **kwargs)
    if method == "lime":
        return lime(x, **kwargs)
    if method == "gamma":
        return gamma_correction(x, **kwargs)
    if method == "zero_dce":
        return zero_dce(x, **kwargs)
    raise ValueError(f"unknown enhancement method {method!r}; choose one of {METHODS}")
