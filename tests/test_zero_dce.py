"""Zero-DCE: DCE-Net, its losses and its converter against the official PyTorch code.

The references below are transcriptions of Li-Chongyi/Zero-DCE
(Zero-DCE_code/model.py ``enhance_net_nopool`` and Myloss.py ``L_color``,
``L_spa``, ``L_exp``, ``L_TV``, with ``.cuda()`` dropped), run by torch in
float64 on the same float32 inputs, so the reference itself adds no rounding
worth counting.
"""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from actlumos_jax import convert_zero_dce, enhance, zero_dce_losses, zero_dce_train
from actlumos_jax.models import zero_dce
from actlumos_jax.models.zero_dce import DCENet, ZeroDCEError, apply_curves
from data_pipelines.bad_input import InputError

RNG = np.random.default_rng(0)
MEASURED = {}


# ----------------------------------------------------------------- torch reference


class EnhanceNetNoPool(nn.Module):
    """Official model.py, enhance_net_nopool (the unused maxpool/upsample omitted: no weights)."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        number_f = 32
        self.e_conv1 = nn.Conv2d(3, number_f, 3, 1, 1, bias=True)
        self.e_conv2 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv3 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv4 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv5 = nn.Conv2d(number_f * 2, number_f, 3, 1, 1, bias=True)
        self.e_conv6 = nn.Conv2d(number_f * 2, number_f, 3, 1, 1, bias=True)
        self.e_conv7 = nn.Conv2d(number_f * 2, 24, 3, 1, 1, bias=True)

    def forward(self, x):
        x1 = self.relu(self.e_conv1(x))
        x2 = self.relu(self.e_conv2(x1))
        x3 = self.relu(self.e_conv3(x2))
        x4 = self.relu(self.e_conv4(x3))
        x5 = self.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = self.relu(self.e_conv6(torch.cat([x2, x5], 1)))
        x_r = torch.tanh(self.e_conv7(torch.cat([x1, x6], 1)))
        r1, r2, r3, r4, r5, r6, r7, r8 = torch.split(x_r, 3, dim=1)
        x = x + r1 * (torch.pow(x, 2) - x)
        x = x + r2 * (torch.pow(x, 2) - x)
        x = x + r3 * (torch.pow(x, 2) - x)
        enhance_image_1 = x + r4 * (torch.pow(x, 2) - x)
        x = enhance_image_1 + r5 * (torch.pow(enhance_image_1, 2) - enhance_image_1)
        x = x + r6 * (torch.pow(x, 2) - x)
        x = x + r7 * (torch.pow(x, 2) - x)
        enhance_image = x + r8 * (torch.pow(x, 2) - x)
        r = torch.cat([r1, r2, r3, r4, r5, r6, r7, r8], 1)
        return enhance_image_1, enhance_image, r


def torch_l_color(x):
    mean_rgb = torch.mean(x, [2, 3], keepdim=True)
    mr, mg, mb = torch.split(mean_rgb, 1, dim=1)
    drg = torch.pow(mr - mg, 2)
    drb = torch.pow(mr - mb, 2)
    dgb = torch.pow(mb - mg, 2)
    return torch.pow(torch.pow(drg, 2) + torch.pow(drb, 2) + torch.pow(dgb, 2), 0.5)


def torch_l_spa(org, enhance_):
    def kernel(rows):
        return torch.tensor(rows, dtype=org.dtype).unsqueeze(0).unsqueeze(0)

    k_left = kernel([[0, 0, 0], [-1, 1, 0], [0, 0, 0]])
    k_right = kernel([[0, 0, 0], [0, 1, -1], [0, 0, 0]])
    k_up = kernel([[0, -1, 0], [0, 1, 0], [0, 0, 0]])
    k_down = kernel([[0, 0, 0], [0, 1, 0], [0, -1, 0]])
    pool = nn.AvgPool2d(4)
    org_pool = pool(torch.mean(org, 1, keepdim=True))
    enhance_pool = pool(torch.mean(enhance_, 1, keepdim=True))
    e = 0
    for k in (k_left, k_right, k_up, k_down):
        e = e + torch.pow(F.conv2d(org_pool, k, padding=1) - F.conv2d(enhance_pool, k, padding=1), 2)
    return e


def torch_l_exp(x, patch_size=16, mean_val=0.6):
    mean = nn.AvgPool2d(patch_size)(torch.mean(x, 1, keepdim=True))
    return torch.mean(torch.pow(mean - torch.tensor([mean_val], dtype=x.dtype), 2))


def torch_l_tv(x):
    batch_size, _, h_x, w_x = x.size()
    count_h = (h_x - 1) * w_x
    count_w = h_x * (w_x - 1)
    h_tv = torch.pow((x[:, :, 1:, :] - x[:, :, :h_x - 1, :]), 2).sum()
    w_tv = torch.pow((x[:, :, :, 1:] - x[:, :, :, :w_x - 1]), 2).sum()
    return 2 * (h_tv / count_h + w_tv / count_w) / batch_size


def torch_total(low, enhanced, curves):
    """lowlight_train.py's objective."""
    return (200 * torch_l_tv(curves) + torch.mean(torch_l_spa(enhanced, low))
            + 5 * torch.mean(torch_l_color(enhanced)) + 10 * torch.mean(torch_l_exp(enhanced)))


def nchw64(x):
    """NHWC NumPy -> NCHW float64 torch (a leaf that can take gradients)."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x, np.float64), -1, 1))).requires_grad_()


def nhwc(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


# ----------------------------------------------------------------- curves and module


def test_zero_curves_leave_the_image_unchanged():
    x = jnp.asarray(RNG.random((2, 5, 7, 3)), jnp.float32)
    np.testing.assert_array_equal(apply_curves(x, jnp.zeros((2, 5, 7, 24))), x)


def test_curve_values_by_hand():
    # r = -1 gives 1 - (1 - x)^2 per step, r = +1 gives x^2: after 8 steps 1 - (1 - x)^256 and x^256.
    x = jnp.full((1, 1, 1, 3), 0.5, jnp.float32)
    np.testing.assert_allclose(apply_curves(x, -jnp.ones((1, 1, 1, 24))), 1 - 0.5 ** 256, rtol=1e-7)
    np.testing.assert_allclose(apply_curves(jnp.full((1, 1, 1, 3), 0.99), jnp.ones((1, 1, 1, 24))),
                               0.99 ** 256, rtol=1e-5)
    # One map per step, channels kept apart: 0.5 -(r=-1)-> 0.75 -(r=0.5)-> 0.75 + 0.5 (0.5625 - 0.75) = 0.65625.
    r = np.zeros((1, 1, 1, 24), np.float32)
    r[..., 0], r[..., 3] = -1.0, 0.5       # channel 0: steps 1 and 2
    r[..., 4] = 1.0                        # channel 1: step 2 only, 0.5 -> 0.25
    np.testing.assert_array_equal(apply_curves(x, jnp.asarray(r))[0, 0, 0], [0.65625, 0.25, 0.5])


def test_dcenet_shapes_parameter_count_and_leading_dims():
    model = DCENet(rngs=nnx.Rngs(0))
    # The paper's count: 79,416 trainable parameters.
    assert sum(v.size for v in zero_dce.params_of(model).values()) == 79_416
    clips = jnp.asarray(RNG.random((2, 3, 12, 16, 3)) * 0.3, jnp.float32)
    enhanced, curves = model(clips)
    assert enhanced.shape == clips.shape and curves.shape == (2, 3, 12, 16, 24)
    assert enhanced.dtype == jnp.float32
    flat_enhanced, flat_curves = model(clips.reshape(6, 12, 16, 3))
    np.testing.assert_array_equal(flat_enhanced.reshape(clips.shape), enhanced)
    np.testing.assert_array_equal(flat_curves.reshape(curves.shape), curves)
    single, _ = model(clips[0, 0])
    np.testing.assert_allclose(single, enhanced[0, 0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 3\)"):
        model(clips[..., :2])


def test_dcenet_with_zero_last_conv_is_the_identity():
    model = DCENet(rngs=nnx.Rngs(1))
    model.e_conv7.kernel.set_value(jnp.zeros_like(model.e_conv7.kernel.get_value()))
    model.e_conv7.bias.set_value(jnp.zeros_like(model.e_conv7.bias.get_value()))
    x = jnp.asarray(RNG.random((2, 8, 8, 3)), jnp.float32)
    enhanced, curves = model(x)
    np.testing.assert_array_equal(curves, 0.0)
    np.testing.assert_array_equal(enhanced, x)


# ----------------------------------------------------------------- losses


def loss_inputs(seed, shape=(3, 36, 40)):
    """Random low-light frames, an "enhanced" image and curve maps, NHWC float32.

    36 x 40 is no multiple of 16, so both poolings must drop the partial windows
    as AvgPool2d does. Channels are scaled apart (1, 0.8, 0.6) so the colour
    loss's channel-mean differences are far from 0 and their 4th powers do not
    cancel away the precision being tested.
    """
    rng = np.random.default_rng(seed)
    low = (rng.random(shape + (3,)) * 0.2).astype(np.float32)
    enhanced = (rng.random(shape + (3,)) * np.array([1.0, 0.8, 0.6])).astype(np.float32)
    curves = rng.uniform(-1, 1, shape + (24,)).astype(np.float32)
    return low, enhanced, curves


def _record(name, ours, ref):
    abs_err = float(np.max(np.abs(np.asarray(ours, np.float64) - ref)))
    MEASURED[name] = (abs_err, abs_err / float(np.max(np.abs(ref))))
    print(f"\n{name}: max abs {MEASURED[name][0]:.3g}, rel to max {MEASURED[name][1]:.3g}")
    return MEASURED[name]


# Each loss is a float32 mean (or sum) of at most ~13k terms of size <= 1 against a
# float64 reference. XLA's CPU reductions accumulate in float32 in blocks; a
# worst-case bound for n terms is n * 2^-24 ~ 8e-4 relative, the typical
# (random-walk) error sqrt(n) * 2^-24 ~ 7e-6. Measured: <= 5e-7 relative (see
# MEASURED). 2e-5 lies between the typical and the worst case: a wrong weight,
# a missing term or a shifted window moves these values by percents.
LOSS_RTOL = 2e-5


@pytest.mark.parametrize("seed", [0, 1])
def test_each_loss_matches_the_official_code(seed):
    low, enhanced, curves = loss_inputs(seed)
    t_low, t_enh, t_curves = nchw64(low), nchw64(enhanced), nchw64(curves)
    cases = {
        "spatial": (zero_dce_losses.spatial_consistency_loss(enhanced, low), torch.mean(torch_l_spa(t_enh, t_low))),
        "exposure": (zero_dce_losses.exposure_control_loss(enhanced), torch.mean(torch_l_exp(t_enh))),
        "colour": (zero_dce_losses.colour_constancy_loss(enhanced), torch.mean(torch_l_color(t_enh))),
        "smoothness": (zero_dce_losses.illumination_smoothness_loss(curves), torch_l_tv(t_curves)),
    }
    for name, (ours, ref) in cases.items():
        ref = ref.item()
        assert ref > 0, name
        _record(f"loss {name} seed {seed}", ours, ref)
        np.testing.assert_allclose(float(ours), ref, rtol=LOSS_RTOL, err_msg=name)


def test_total_loss_and_its_gradients_match_the_official_code():
    low, enhanced, curves = loss_inputs(2)
    total, terms = zero_dce_losses.zero_dce_loss(low, enhanced, curves)
    assert set(terms) == {"spatial", "exposure", "colour", "smoothness"}
    np.testing.assert_allclose(float(total), sum(zero_dce_losses.WEIGHTS[k] * float(v) for k, v in terms.items()),
                               rtol=1e-6)
    t_low, t_enh, t_curves = nchw64(low), nchw64(enhanced), nchw64(curves)
    ref = torch_total(t_low, t_enh, t_curves)
    ref.backward()
    _record("total loss", total, ref.item())
    np.testing.assert_allclose(float(total), ref.item(), rtol=LOSS_RTOL)

    grad_enh, grad_curves = jax.grad(
        lambda e, c: zero_dce_losses.zero_dce_loss(low, e, c)[0], argnums=(0, 1))(enhanced, curves)
    for name, ours, want in (("d total / d enhanced", grad_enh, nhwc(t_enh.grad)),
                             ("d total / d curves", grad_curves, nhwc(t_curves.grad))):
        abs_err, _ = _record(name, ours, want)
        # Elementwise gradients: compared against the largest one (small entries are
        # differences of larger float32 terms and carry their absolute error).
        assert abs_err <= LOSS_RTOL * np.max(np.abs(want)), name


def test_loss_leading_dims_are_one_batch():
    low, enhanced, curves = loss_inputs(3, shape=(4, 32, 32))
    flat = zero_dce_losses.zero_dce_loss(low, enhanced, curves)[0]
    clips = zero_dce_losses.zero_dce_loss(*(a.reshape((2, 2) + a.shape[1:]) for a in (low, enhanced, curves)))[0]
    np.testing.assert_allclose(float(clips), float(flat), rtol=1e-6)


def test_colour_loss_on_grey_frames_is_zero_with_finite_gradient():
    # torch's sqrt backward at exactly 0 is inf * 0 = NaN; black or grey frames occur in dark video.
    grey = jnp.broadcast_to(jnp.asarray(RNG.random((2, 16, 16, 1)), jnp.float32), (2, 16, 16, 3))
    value, grad = jax.value_and_grad(zero_dce_losses.colour_constancy_loss)(grey)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_losses_refuse_frames_smaller_than_a_window():
    with pytest.raises(ValueError, match="smaller than one 16x16 window"):
        zero_dce_losses.exposure_control_loss(jnp.zeros((1, 8, 32, 3)))


# ----------------------------------------------------------------- converter


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A random official DCE-Net saved as the release is (state_dict .pth), and its conversion."""
    root = tmp_path_factory.mktemp("zero_dce_release")
    torch.manual_seed(0)  # torch's default Conv2d init: curve maps reach |r| ~ 0.36
    net = EnhanceNetNoPool().eval()
    pth = root / "Epoch99.pth"
    torch.save(net.state_dict(), pth)
    npz = root / "zero_dce.npz"
    assert convert_zero_dce.main([str(pth), str(npz)]) == 0
    return net, pth, npz


def torch_forward(net, x):
    with torch.no_grad():
        _, enhanced, curves = net(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))))
    return np.moveaxis(enhanced.numpy(), 1, -1), np.moveaxis(curves.numpy(), 1, -1)


# Tolerance, absolute, on outputs of scale 1 (images in [0, 1], curve maps in
# [-1, 1]): both sides are float32. Each conv output is a 576-term dot product;
# summed in another order its rounding differs by ~sqrt(576) * 2^-24 ~ 1.4e-6 of
# the summed magnitudes in the random-walk case. tanh has slope <= 1, and a curve
# step x + r (x^2 - x) has slope 1 + r (2x - 1), at most 1.4 for |r| <= 0.4, so
# 8 steps could amplify an error up to ~15x at worst, but they mostly contract.
# 1e-5 covers that with margin; measured: 2.4e-7 on the image, 2e-7 on the
# curves (2 ulps of 1.0). A kernel with kh/kw swapped is off by > 1e-3 (checked
# below), so the bound still catches layout errors.
CONVERT_ATOL = 1e-5


def test_converted_weights_reproduce_the_pytorch_dce_net(released):
    net, _, npz = released
    model = zero_dce.load_zero_dce(npz)
    x = np.random.default_rng(5).random((2, 32, 40, 3)).astype(np.float32)
    want_enhanced, want_curves = torch_forward(net, x)
    enhanced, curves = model(jnp.asarray(x))
    for name, ours, want in (("converted image", enhanced, want_enhanced), ("converted curves", curves, want_curves)):
        abs_err, _ = _record(name, ours, want)
        assert abs_err <= CONVERT_ATOL, name
    assert np.max(np.abs(want_enhanced - x)) > 0.1  # the curves do act on this input

    # Negative control: the same weights with each kernel's kh and kw swapped.
    params = zero_dce.params_of(model)
    swapped = {k: (np.swapaxes(v, 0, 1) if k.endswith("kernel") else v) for k, v in params.items()}
    wrong, _ = zero_dce.from_params(swapped)(jnp.asarray(x))
    assert np.max(np.abs(np.asarray(wrong) - want_enhanced)) > 100 * CONVERT_ATOL


def test_converter_names_every_bad_key(released, tmp_path, capsys):
    net, _, _ = released
    state = dict(net.state_dict())
    del state["e_conv3.bias"]
    state["e_conv8.weight"] = torch.zeros(24, 64, 3, 3)
    state["e_conv5.weight"] = torch.zeros(32, 32, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ZeroDCEError) as info:
        convert_zero_dce.convert(bad, tmp_path / "out.npz")
    message = str(info.value)
    assert "3 mismatch(es)" in message
    assert "missing e_conv3.bias (expected shape (32,))" in message
    assert "unexpected e_conv8.weight (shape (24, 64, 3, 3))" in message
    assert "wrong shape for e_conv5.weight: expected (32, 64, 3, 3), found (32, 32, 3, 3)" in message
    assert not (tmp_path / "out.npz").exists()
    # The CLI: the project's error boundary, one error naming the file, then the mismatch list; exit 2.
    assert convert_zero_dce.main([str(bad), str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: 3 mismatch(es)") and "missing e_conv3.bias" in err
    assert "Traceback" not in err
    with pytest.raises(InputError, match="missing e_conv3.bias"):
        convert_zero_dce.main([str(bad), str(tmp_path / "out.npz"), "--verbose"])
    assert convert_zero_dce.main([str(bad), str(tmp_path / "out.txt")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'out.txt'}: Zero-DCE weights are written as .npz; name the output file *.npz\n"
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    assert convert_zero_dce.main([str(garbage), str(tmp_path / "out.npz")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {garbage}: not a readable PyTorch checkpoint")
    assert not (tmp_path / "out.npz").exists()


def test_converter_accepts_dataparallel_keys_and_refuses_to_overwrite(released, tmp_path):
    net, _, npz = released
    wrapped = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, wrapped)
    out = tmp_path / "dp.npz"
    convert_zero_dce.convert(wrapped, out)
    ours, ref = np.load(out), np.load(npz)
    assert sorted(ours.files) == sorted(ref.files)
    for key in ref.files:
        np.testing.assert_array_equal(ours[key], ref[key])
    with pytest.raises(ZeroDCEError, match="already exists"):
        convert_zero_dce.convert(wrapped, out)


def test_load_zero_dce_refuses_other_files(released, tmp_path):
    _, pth, npz = released
    with pytest.raises(ZeroDCEError, match="convert it with python -m actlumos_jax.convert_zero_dce"):
        zero_dce.load_zero_dce(pth)
    with pytest.raises(FileNotFoundError, match="no such Zero-DCE weight file"):
        zero_dce.load_zero_dce(tmp_path / "absent.npz")
    arrays = dict(np.load(npz))
    arrays["e_conv7.kernel"] = arrays["e_conv7.kernel"][..., :8]
    short = tmp_path / "short.npz"
    np.savez(short, **arrays)
    with pytest.raises(ZeroDCEError, match=r"wrong shape for e_conv7.kernel: expected \(3, 3, 64, 24\)"):
        zero_dce.load_zero_dce(short)


# ----------------------------------------------------------------- training


def test_optimizer_is_torch_adam_with_coupled_weight_decay_after_clipping():
    w0 = np.random.default_rng(7).normal(size=(5,)).astype(np.float64)
    grads = [np.random.default_rng(8 + i).normal(size=(5,)) * s for i, s in enumerate((3.0, 0.01, 1.0))]
    tx = zero_dce_train.make_optimizer(lr=1e-2, weight_decay=0.5, clip_norm=0.1)
    params = jnp.asarray(w0, jnp.float32)
    state = tx.init(params)
    w = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.Adam([w], lr=1e-2, weight_decay=0.5)
    for g in grads:  # lowlight_train.py: backward, clip_grad_norm, step
        updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        params = params + updates
        w.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_([w], 0.1)
        opt.step()
    # float32 parameters of size ~1 after three steps: a few ulps (1.2e-7). Clipping
    # after the decay, or decoupled (AdamW) decay, moves them by ~1e-2.
    np.testing.assert_allclose(params, w.detach().numpy(), rtol=0, atol=1e-6)


def test_a_few_official_steps_lower_the_total_loss():
    # Two dark 32x32 frames and batches of 2: every step sees the same batch, so
    # the loss sequence is deterministic and should fall from the first step.
    rng = np.random.default_rng(11)
    frames = (rng.random((2, 32, 32, 3)) * 0.15 * np.array([1.0, 0.9, 0.7])).astype(np.float32)
    model, log = zero_dce_train.train(frames, steps=12, batch_size=2, seed=0, log_every=1)
    losses = [entry["loss"] for entry in log]
    MEASURED["training loss first -> last"] = (losses[0], losses[-1])
    print(f"\ntraining loss over 12 official steps: {losses[0]:.5f} -> {losses[-1]:.5f}")
    assert losses[-1] < losses[0] - 1e-3
    assert np.all(np.diff(losses) < 0)
    enhanced, _ = model(jnp.asarray(frames))
    assert float(jnp.mean(enhanced)) > float(np.mean(frames))  # brighter, as the exposure term asks


def test_training_cli_on_the_synthetic_dataset(tmp_path, capsys):
    out = tmp_path / "run"
    assert zero_dce_train.main(["--dataset=synthetic", f"--root={tmp_path / 'synthetic'}", "--steps=3",
                                "--size=32", "--batch-size=2", "--max-clips=4", "--log-every=1",
                                f"--out={out}"]) == 0
    assert "8 frames of 32x32 from synthetic" in capsys.readouterr().out
    record = json.loads((out / "train_log.json").read_text())
    assert [entry["step"] for entry in record["log"]] == [0, 1, 2] and record["num_frames"] == 8
    model = zero_dce_train.load_zero_dce(out)   # the run directory or the .npz itself
    enhanced, _ = model(jnp.full((32, 32, 3), 0.1))
    assert enhanced.shape == (32, 32, 3) and np.all(np.isfinite(enhanced))
    with pytest.raises(SystemExit):
        zero_dce_train.main(["--steps=1", f"--out={out}"])  # refuses to overwrite


def test_training_cli_names_a_bad_dataset_root_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "actlumos_jax.zero_dce_train", "--dataset=arid10", f"--root={tmp_path / 'nope'}",
           f"--out={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: arid10 root {tmp_path / 'nope'} does not exist or is not a directory. ARID V1.0 is distributed on "
        "request by its authors (https://xuyu0010.github.io/arid.html)."], proc.stderr[-3000:]
    assert not (tmp_path / "run").exists()
    verbose = subprocess.run([*cmd, "--verbose"], capture_output=True, text=True, timeout=300,
                             cwd=Path(__file__).resolve().parents[1])
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr and "DatasetError" in verbose.stderr


# ----------------------------------------------------------------- enhance(method="zero_dce")


def test_enhance_zero_dce_eager_jitted_and_bf16(released):
    net, _, npz = released
    clip = (np.random.default_rng(9).random((2, 2, 16, 24, 3)) * 0.25).astype(np.float32)
    got = enhance.enhance(jnp.asarray(clip), "zero_dce", zero_dce_weights=str(npz))
    want, _ = torch_forward(net, clip.reshape(4, 16, 24, 3))
    assert got.shape == clip.shape and got.dtype == jnp.float32
    assert np.max(np.abs(np.asarray(got).reshape(want.shape) - np.clip(want, 0, 1))) <= CONVERT_ATOL

    fn = jax.jit(lambda c: enhance.enhance(c, "zero_dce", zero_dce_weights=npz))
    np.testing.assert_allclose(fn(jnp.asarray(clip)), got, atol=1e-6)
    # The weights are constants of the program: its only input is the clip.
    assert len(jax.make_jaxpr(lambda c: enhance.enhance(c, "zero_dce", zero_dce_weights=npz))(clip).jaxpr.invars) == 1
    hits = enhance._zero_dce_model.cache_info().hits
    enhance.enhance(jnp.asarray(clip[0]), "zero_dce", zero_dce_weights=str(npz))
    assert enhance._zero_dce_model.cache_info().hits > hits  # read once per path

    half = enhance.enhance(jnp.asarray(clip, jnp.bfloat16), "zero_dce", zero_dce_weights=npz)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float32), got, atol=1e-2)


def test_enhance_zero_dce_needs_weights(tmp_path):
    x = jnp.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="needs zero_dce_weights=<path"):
        enhance.enhance(x, "zero_dce")
    with pytest.raises(FileNotFoundError, match="absent.npz: no such Zero-DCE weight file"):
        enhance.enhance(x, "zero_dce", zero_dce_weights=tmp_path / "absent.npz")
    assert "zero_dce" in enhance.METHODS


def test_zero_dce_weights_first_read_inside_a_jitted_step_serve_every_later_step(tmp_path):
    """The weights are cached per path: read first while one step is traced, they must not leak
    that trace's values into the next (a KD teacher on Zero-DCE frames traces train and eval steps)."""
    import jax  # pylint: disable=g-import-not-at-top
    from actlumos_jax import enhance as enhance_lib  # pylint: disable=g-import-not-at-top
    from actlumos_jax.models.zero_dce import DCENet, save_zero_dce  # pylint: disable=g-import-not-at-top
    from flax import nnx  # pylint: disable=g-import-not-at-top

    weights = save_zero_dce(DCENet(rngs=nnx.Rngs(3)), tmp_path / "traced_first.npz")
    x = np.full((1, 2, 8, 8, 3), 0.1, np.float32)
    train_like = jax.jit(lambda v: enhance_lib.enhance(v, "zero_dce", zero_dce_weights=str(weights)).sum())
    eval_like = jax.jit(lambda v: enhance_lib.enhance(v, "zero_dce", zero_dce_weights=str(weights)))
    total = float(train_like(x))
    out = np.asarray(eval_like(x))
    # The same function of the same input: equal up to float32 summation order over 384 values ~0.1-1.
    assert np.isfinite(out).all() and abs(out.sum() - total) <= 1e-4 * max(abs(total), 1.0)
