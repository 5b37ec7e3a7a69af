"""Does the DFF gate follow the light? Its retinex weight against the embedded data's true light level.

The paper's premise (Sec. 3.4) is that the gate leans on the retinex stream
where the video is darker. Each clip of the embedded dataset records its mean
luma per frame (``mean_luma_per_frame`` in its JSON sidecar). For every test
clip and every latent time step t of the teacher (8 consecutive sampled frames
per step at the backbone's temporal stride), this compares the gate's retinex
weight w_t with the mean luma of the frames behind step t:
  gate_light_pearson       Pearson r of w and the light over all (clip, step) segments
                           (negative: more retinex where darker, as the paper argues)
  gate_retinex_dark_third  mean w over the darkest third of the segments
  gate_retinex_bright_third mean w over the brightest third
  gate_within_clip_pearson r of w and the light after removing each clip's mean
                           (only with more than one latent step per clip)

  python -m bench.gate_vs_light TEACHER_WORKDIR --out bench/results/gate_vs_light

trains the demo's DFF teacher into TEACHER_WORKDIR first when it holds no
finished teacher (on 32 frames 1 apart: 4 latent steps, where the demo's 8
frames give one per clip; ~10 min on a 2-core CPU), then writes gate_vs_light.png (the gate over time beside the light curve for a few
test clips, and the scatter over all segments) and gate_vs_light.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from actlumos_jax.models.actlumos import TEMPORAL_STRIDE
from data_pipelines.sampling import clip_indices


def segment_light(records, config) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Per clip: the mean luma behind each latent step (N, T'), the sampled frame indices and the luma curve."""
    num_frames, stride = config.data.num_frames, config.data.frame_stride
    steps = num_frames // TEMPORAL_STRIDE
    light, frames, curves = [], [], []
    for record in records:
        sidecar = Path(record.path).with_suffix(".json")
        if not sidecar.is_file():
            raise FileNotFoundError(f"{sidecar}: no light sidecar (only the embedded dataset records the light)")
        curve = np.asarray(json.loads(sidecar.read_text())["mean_luma_per_frame"], np.float64)
        idx = clip_indices(len(curve), num_frames, stride)  # evaluation's centred sample
        light.append(curve[idx].reshape(steps, -1).mean(axis=1))
        frames.append(idx)
        curves.append(curve)
    return np.stack(light), frames, curves


def gate_light_stats(weights: np.ndarray, records, config) -> dict:
    """``weights``: the teacher's gate weights on the clips of ``records`` ((N, T', 2) or (N, T', H', W', 2))."""
    w = np.asarray(weights, np.float64)[..., 1]
    w = w.reshape(w.shape[0], w.shape[1], -1).mean(axis=-1)  # spatio-temporal gate: mean over H', W'
    light, _, _ = segment_light(records, config)
    flat_w, flat_l = w.ravel(), light.ravel()
    low, high = np.quantile(flat_l, [1 / 3, 2 / 3])
    stats = {
        "gate_light_pearson": _pearson(flat_w, flat_l),
        "gate_retinex_mean": float(flat_w.mean()),
        "gate_retinex_std": float(flat_w.std()),
        "gate_retinex_dark_third": float(flat_w[flat_l <= low].mean()),
        "gate_retinex_bright_third": float(flat_w[flat_l >= high].mean()),
        "gate_segments": int(flat_w.size),
    }
    if w.shape[1] > 1:
        stats["gate_within_clip_pearson"] = _pearson((w - w.mean(1, keepdims=True)).ravel(),
                                                     (light - light.mean(1, keepdims=True)).ravel())
    return stats


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.std() == 0 or b.std() == 0:
        return None  # a constant gate has no correlation to report
    return float(np.corrcoef(a, b)[0, 1])


def plot(weights: np.ndarray, records, config, path: Path, num_clips: int = 6) -> None:
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    w = np.asarray(weights, np.float64)[..., 1]
    w = w.reshape(w.shape[0], w.shape[1], -1).mean(axis=-1)
    light, frames, curves = segment_light(records, config)
    # The clips whose light changes most over the sampled frames, where a gate has something to follow.
    spread = np.array([c[f].max() - c[f].min() for c, f in zip(curves, frames)])
    chosen = np.argsort(-spread)[:num_clips]
    fig, axes = plt.subplots(2, (num_clips + 1) // 2 + 1, figsize=(4 * ((num_clips + 1) // 2 + 1), 6.5),
                             squeeze=False)
    steps = w.shape[1]
    per_step = config.data.num_frames // steps
    for ax, i in zip(axes[:, :-1].T.ravel(), chosen):
        ax.plot(np.arange(len(curves[i])), curves[i], color="0.3", label="mean luma (per frame)")
        ax.plot(frames[i], curves[i][frames[i]], "o", color="0.3", ms=3)
        ax.set_ylim(0, max(0.2, 1.1 * curves[i].max()))
        ax.set_xlabel("frame")
        ax.set_ylabel("mean luma")
        ax.set_title(Path(records[i].clip_id).stem, fontsize=9)
        twin = ax.twinx()
        centres = [frames[i][k * per_step:(k + 1) * per_step] for k in range(steps)]
        twin.step([c[0] for c in centres] + [centres[-1][-1]], list(w[i]) + [w[i][-1]], where="post",
                  color="tab:orange", label="gate retinex weight")
        twin.set_ylim(0, 1)
        twin.set_ylabel("retinex weight", color="tab:orange")
    for ax in axes[:, :-1].ravel()[len(chosen):]:
        ax.axis("off")
    scatter = axes[0, -1]
    scatter.scatter(light.ravel(), w.ravel(), s=6, alpha=0.6, color="tab:orange")
    stats = gate_light_stats(weights, records, config)
    r = stats["gate_light_pearson"]
    scatter.set_title(f"all test segments: r = {r:+.2f}" if r is not None else "all test segments (constant gate)",
                      fontsize=9)
    scatter.set_xlabel("mean luma behind the latent step")
    scatter.set_ylabel("retinex weight")
    axes[1, -1].axis("off")
    axes[1, -1].text(0, 0.5, "\n".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}"
                                        for k, v in stats.items()), fontsize=8, family="monospace")
    fig.suptitle("DFF gate (retinex weight) against the true light level, embedded test clips")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", help="a finished DFF teacher stage directory")
    parser.add_argument("--out", default="bench/results/gate_vs_light")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=32, help="clip length of a teacher trained here")
    parser.add_argument("--seed", type=int, default=0, help="seed of a teacher trained here")
    args = parser.parse_args()

    import ml_collections  # pylint: disable=g-import-not-at-top

    from actlumos_jax.train import checkpointing, input_pipeline, loop, warm_start  # pylint: disable=g-import-not-at-top
    from bench.teacher_ablation import clips_of, make_forward, predict  # pylint: disable=g-import-not-at-top

    if warm_start.stage_finished(args.workdir) is None:
        from configs import teacher  # pylint: disable=g-import-not-at-top

        config = teacher.get_config("size=tiny")
        config.data.num_frames, config.data.frame_stride, config.seed = args.frames, 1, args.seed
        print(f"no finished teacher in {args.workdir}: training one ({args.frames} frames, seed {args.seed})")
        loop.run_stage(config, args.workdir)
    directory = Path(args.workdir) / "checkpoints"
    step = checkpointing.chosen_step(directory)
    config = ml_collections.ConfigDict(checkpointing.read_json_item(directory, step, "config"))
    if not config.model.fusion.startswith("dff"):
        raise SystemExit(f"error: {args.workdir} holds a {config.model.fusion!r} teacher, which has no gate")
    data = input_pipeline.read_stage_data(config)
    graphdef, variables, _ = warm_start.load_teacher(args.workdir, data.info.num_classes)  # the checkpoint its stage chose
    videos, _ = clips_of(config, data, "test")
    _, weights = predict(make_forward(graphdef, config, False), variables, videos, np.arange(len(videos)), 32)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stats = gate_light_stats(weights, data.test, config)
    plot(weights, data.test, config, out / "gate_vs_light.png", args.clips)
    (out / "gate_vs_light.json").write_text(json.dumps({"workdir": args.workdir, "step": step, **stats}, indent=2))
    print(json.dumps(stats, indent=2))
    print(f"wrote {out / 'gate_vs_light.png'}")


if __name__ == "__main__":
    main()
