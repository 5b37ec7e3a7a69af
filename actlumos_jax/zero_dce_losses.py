"""The four non-reference losses of Zero-DCE, as the official code computes them.

Transcribed from Li-Chongyi/Zero-DCE ``Zero-DCE_code/Myloss.py`` (L_spa, L_exp,
L_color, L_TV) and weighted as its ``lowlight_train.py`` does:

  total = 1 * mean(L_spa(enhanced, low)) + 10 * mean(L_exp(enhanced))
        + 5 * mean(L_color(enhanced)) + 200 * L_TV(curves)

The code differs from the paper's equations in places, and the released
weights were trained with the code, so the code is followed:

* colour constancy takes the square root of the sum of the squared pairwise
  (squared) channel-mean differences, sqrt(sum_pq ((J_p - J_q)^2)^2), not the
  paper's sum_pq (J_p - J_q)^2;
* spatial consistency compares the 4 neighbour differences of 4x4 average-pooled
  grey images with zero padding, so a border cell is also compared with 0;
* illumination smoothness is the squared-gradient TV of the curve maps, summed
  over the 24 channels and averaged over positions and images, times 2.

Every function takes NHWC frames (..., H, W, C) with any leading dims, which are
flattened into one batch (the official B), and returns a float32 scalar.
Pooling drops the rows and columns that do not fill a window, as torch's
AvgPool2d does.
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp

# lowlight_train.py: loss = 200 * Loss_TV + loss_spa + 5 * loss_col + 10 * loss_exp
WEIGHTS = {"spatial": 1.0, "exposure": 10.0, "colour": 5.0, "smoothness": 200.0}
EXPOSURE_PATCH = 16
EXPOSURE_LEVEL = 0.6
SPATIAL_POOL = 4


def _batch(x: jax.Array, name: str) -> jax.Array:
    if x.ndim < 3:
        raise ValueError(f"{name}: expected frames shaped (..., H, W, C), got shape {x.shape}")
    frames, _ = einops.pack([x.astype(jnp.float32)], "* h w c")
    return frames


def average_pool(x: jax.Array, size: int) -> jax.Array:
    """Non-overlapping size x size means of (N, H, W, C); partial windows are dropped."""
    h, w = x.shape[1] // size, x.shape[2] // size
    if h == 0 or w == 0:
        raise ValueError(f"frames of {x.shape[1]}x{x.shape[2]} are smaller than one {size}x{size} window")
    x = x[:, :h * size, :w * size]
    return einops.reduce(x, "n (h a) (w b) c -> n h w c", "mean", a=size, b=size)


def _neighbour_differences(p: jax.Array) -> jax.Array:
    """(4, N, h, w) differences of each cell to its left, right, upper and lower neighbour.

    The official conv2d kernels with padding=1, e.g. left = [[0,0,0],[-1,1,0],[0,0,0]]:
    ``p[i, j] - p[i, j-1]`` with zeros outside the map.
    """
    q = jnp.pad(p, ((0, 0), (1, 1), (1, 1)))
    centre = q[:, 1:-1, 1:-1]
    return jnp.stack([centre - q[:, 1:-1, :-2], centre - q[:, 1:-1, 2:],
                      centre - q[:, :-2, 1:-1], centre - q[:, 2:, 1:-1]])


def spatial_consistency_loss(enhanced: jax.Array, original: jax.Array) -> jax.Array:
    """L_spa: keeps the differences between neighbouring 4x4 regions of the grey image.

    mean over cells of sum_{4 neighbours} (D_enhanced - D_original)^2, as
    ``torch.mean(L_spa(enhanced, original))``. The official module also builds a
    brightness weight (``weight_diff``, ``E_1``) that it never uses; it is left out.
    """
    if enhanced.shape != original.shape:
        raise ValueError(f"spatial_consistency_loss: shapes differ, {enhanced.shape} and {original.shape}")
    pool_e = average_pool(jnp.mean(_batch(enhanced, "spatial_consistency_loss"), -1, keepdims=True), SPATIAL_POOL)
    pool_o = average_pool(jnp.mean(_batch(original, "spatial_consistency_loss"), -1, keepdims=True), SPATIAL_POOL)
    d = _neighbour_differences(pool_e[..., 0]) - _neighbour_differences(pool_o[..., 0])
    return jnp.mean(jnp.sum(d * d, axis=0))


def exposure_control_loss(enhanced: jax.Array, patch: int = EXPOSURE_PATCH,
                          level: float = EXPOSURE_LEVEL) -> jax.Array:
    """L_exp: mean over 16x16 patches of (mean grey level - 0.6)^2."""
    grey = jnp.mean(_batch(enhanced, "exposure_control_loss"), -1, keepdims=True)
    return jnp.mean((average_pool(grey, patch) - level) ** 2)


def colour_constancy_loss(enhanced: jax.Array) -> jax.Array:
    """L_col: per image sqrt(D_rg^2 + D_rb^2 + D_gb^2) with D_pq = (mean_p - mean_q)^2, averaged.

    Where the sum is exactly 0 (a grey or black frame) torch's sqrt backward gives
    inf * 0 = NaN; here the gradient there is 0 instead, the value is unchanged.
    """
    x = _batch(enhanced, "colour_constancy_loss")
    if x.shape[-1] != 3:
        raise ValueError(f"colour_constancy_loss: expected 3 colour channels, got {x.shape[-1]}")
    mean = jnp.mean(x, axis=(1, 2))
    r, g, b = mean[:, 0], mean[:, 1], mean[:, 2]
    d_rg, d_rb, d_gb = (r - g) ** 2, (r - b) ** 2, (b - g) ** 2
    s = d_rg ** 2 + d_rb ** 2 + d_gb ** 2
    positive = s > 0
    k = jnp.where(positive, jnp.sqrt(jnp.where(positive, s, 1.0)), 0.0)
    return jnp.mean(k)


def illumination_smoothness_loss(curves: jax.Array) -> jax.Array:
    """L_TV of the curve maps: 2 (sum dH^2 / ((H-1) W) + sum dW^2 / (H (W-1))) / N."""
    a = _batch(curves, "illumination_smoothness_loss")
    n, h, w, _ = a.shape
    if h < 2 or w < 2:
        raise ValueError(f"illumination_smoothness_loss: curve maps must be at least 2x2, got {h}x{w}")
    h_tv = jnp.sum((a[:, 1:] - a[:, :-1]) ** 2)
    w_tv = jnp.sum((a[:, :, 1:] - a[:, :, :-1]) ** 2)
    return 2.0 * (h_tv / ((h - 1) * w) + w_tv / (h * (w - 1))) / n


def zero_dce_loss(original: jax.Array, enhanced: jax.Array, curves: jax.Array,
                  weights: dict[str, float] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(weighted total, unweighted terms) of the official training objective."""
    weights = WEIGHTS if weights is None else weights
    terms = {
        "spatial": spatial_consistency_loss(enhanced, original),
        "exposure": exposure_control_loss(enhanced),
        "colour": colour_constancy_loss(enhanced),
        "smoothness": illumination_smoothness_loss(curves),
    }
    total = sum(weights[name] * value for name, value in terms.items())
    return total, terms
