"""actlumos-report: what a trained workdir did, as PNGs and an index.html that shows them.

  python -m actlumos_jax.inference.report WORKDIR [--out DIR] [--gate-clips 4] [--max-clips N]

WORKDIR is one stage directory or a pipeline workdir (every stage under it:
teacher, ssl_student, ssl_only_student, kd_only_student, kd_student). Per stage:

* training curves from its ``metrics.jsonl`` (training loss and accuracy, and the
  validation metrics at each evaluation);
* for a stage that classifies (a KD student, or a teacher): the confusion matrix
  and the per-class accuracy on its test split, scored as the training's
  evaluation scores it (centred clip, centre crop);
* for a teacher with a DFF gate: the gate's retinex weight at each latent time
  step for a few test clips, beside the clip's true light level (the mean luma
  per frame that the embedded dataset records in a JSON sidecar) where it has one.

Writes into ``--out`` (default ``WORKDIR/report``); figures use matplotlib.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from data_pipelines.bad_input import InputError, run_cli

PROG = "actlumos-report"
STAGE_ORDER = ("teacher", "ssl_student", "ssl_only_student", "kd_only_student", "kd_student")


def find_stages(workdir: Path) -> list[Path]:
    """The stage directories of ``workdir``: itself, or its pipeline sub-directories, in the recipe's order."""
    if not workdir.is_dir():
        raise InputError(f"{workdir}: no such directory")
    if (workdir / "metrics.jsonl").is_file() or (workdir / "checkpoints").is_dir():
        return [workdir]
    found = [workdir / name for name in STAGE_ORDER
             if (workdir / name / "metrics.jsonl").is_file() or (workdir / name / "checkpoints").is_dir()]
    if not found:
        raise InputError(f"{workdir}: holds no training stage (no metrics.jsonl or checkpoints/, here or in "
                         f"{', '.join(STAGE_ORDER)})")
    return found


def read_metrics(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a killed run
    return rows


def _pyplot():
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    return plt


def plot_curves(rows: list[dict], title: str, path: Path) -> bool:
    """Training loss/accuracy and every validation metric against the step; False when there is nothing."""
    plt = _pyplot()
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    if not train and not evals:
        return False
    panels = [("loss", [k for k in ("loss", "ce", "kd", "info_nce", "supcon") if any(k in r for r in train)],
               [k for k in ("val_loss",) if any(k in r for r in evals)]),
              ("accuracy (%)", [k for k in ("accuracy",) if any(k in r for r in train)],
               [k for k in ("val_top1", "val_top5") if any(k in r for r in evals)])]
    panels = [p for p in panels if p[1] or p[2]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (label, train_keys, eval_keys) in zip(axes[0], panels):
        for key in train_keys:
            points = [(r["step"], r[key] * (100 if key == "accuracy" else 1)) for r in train if key in r]
            ax.plot(*zip(*points), label=f"train {key}", lw=1.2)
        for key in eval_keys:
            points = [(r["step"], r[key]) for r in evals if key in r]
            ax.plot(*zip(*points), "o-", label=key, lw=1.5, ms=4)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_confusion(metrics: dict, class_names: Sequence[str], title: str, path: Path) -> None:
    plt = _pyplot()
    confusion = np.asarray(metrics["confusion_matrix"], np.float64)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * k, 0.8 + 0.45 * k))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if confusion[i, j]:
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\ntop-1 {metrics['top1']:.1f}%, {metrics['clips']} clips", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_class(metrics: dict, title: str, path: Path) -> None:
    plt = _pyplot()
    per_class = metrics["per_class"]
    names = [p["class"] for p in per_class]
    values = [p["accuracy"] if p["accuracy"] is not None else 0.0 for p in per_class]
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * len(names), 3.5))
    ax.bar(range(len(names)), values, color="tab:blue")
    ax.axhline(metrics["mean_class_accuracy"], color="tab:orange", ls="--",
               label=f"mean class accuracy {metrics['mean_class_accuracy']:.1f}%")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_gate(weights: np.ndarray, frames: list[np.ndarray], curves: list[np.ndarray | None], names: list[str],
              per_step: int, title: str, path: Path) -> None:
    """weights (N, T', 2): (dark, retinex) per latent step; frames: the sampled frame indices per clip."""
    plt = _pyplot()
    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.4), squeeze=False)
    for ax, w, idx, curve, name in zip(axes[0], weights[..., 1], frames, curves, names):
        steps = len(w)
        groups = [idx[k * per_step:(k + 1) * per_step] for k in range(steps)]
        edges = [int(g[0]) for g in groups] + [int(groups[-1][-1]) + 1]
        ax.stairs(w, edges, baseline=None, color="tab:orange", lw=2, label="gate retinex weight")
        ax.set_ylim(0, 1)
        ax.set_xlabel("frame")
        ax.set_ylabel("retinex weight", color="tab:orange")
        ax.set_title(name, fontsize=8)
        if curve is not None:
            twin = ax.twinx()
            twin.plot(np.arange(len(curve)), curve, color="0.3", lw=1, label="true mean luma")
            twin.plot(idx, curve[idx], "o", color="0.3", ms=2)
            twin.set_ylim(0, max(0.2, 1.1 * float(curve.max())))
            twin.set_ylabel("true mean luma", color="0.3")
        else:
            ax.text(0.5, 0.05, "no light recorded for this clip", transform=ax.transAxes, ha="center", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -------------------------------------------------------------------- models


def _stage_config(stage_dir: Path):
    from actlumos_jax.train import warm_start  # pylint: disable=g-import-not-at-top
    step = warm_start.selected_step(stage_dir)
    return (None, None) if step is None else (step, warm_start.saved_config(stage_dir, step))


def _test_records(config, max_clips: int | None):
    from actlumos_jax.inference.evaluate import read_records  # pylint: disable=g-import-not-at-top
    ds = config.dataset.to_dict()
    info, records = read_records(ds, ds.get("split") if ds.get("split", -1) >= 0 else None, "test")
    return info, records[:max_clips] if max_clips else records


def evaluate_student(stage_dir: Path, config, max_clips: int | None) -> tuple[dict, tuple[str, ...]]:
    """The student's metrics on its test split, scored as the training's evaluation scores them (1x1 views)."""
    from actlumos_jax.inference import clips as clips_lib  # pylint: disable=g-import-not-at-top
    from actlumos_jax.inference import evaluate, predict  # pylint: disable=g-import-not-at-top
    from actlumos_jax.inference.model import load_workdir  # pylint: disable=g-import-not-at-top

    predictor = load_workdir(stage_dir)
    info, records = _test_records(config, max_clips)
    by_path = {r.path: r for r in records}
    labels, probs = [], []
    for result in predict.run(predictor, [Path(r.path) for r in records], clips_lib.Views(1, 1), progress=False):
        if result.error is None:
            labels.append(by_path[result.path].label)
            probs.append(result.video_probs)
    k = len(info.class_names)
    return (evaluate.metrics_of(np.asarray(labels, np.int64), np.asarray(probs).reshape(-1, k), info.class_names),
            tuple(info.class_names))


def run_teacher(stage_dir: Path, config, max_clips: int | None):
    """The teacher's logits and gate weights on the test clips (evaluation's centred clip and crop)."""
    import jax  # pylint: disable=g-import-not-at-top

    from actlumos_jax.inference import clips as clips_lib  # pylint: disable=g-import-not-at-top
    from actlumos_jax.inference.model import Preprocessing  # pylint: disable=g-import-not-at-top
    from actlumos_jax.train import warm_start  # pylint: disable=g-import-not-at-top
    from actlumos_jax.train.stages import teacher_streams  # pylint: disable=g-import-not-at-top
    from actlumos_jax.train.state import merge_model  # pylint: disable=g-import-not-at-top

    info, records = _test_records(config, max_clips)
    graphdef, frozen, _ = warm_start.load_teacher(stage_dir, info.num_classes)

    @jax.jit
    def forward(variables, video):
        model = merge_model(graphdef, variables.params, variables.batch_stats, variables.rngs)
        model.eval()
        out = model(*teacher_streams(video, config))
        gate = out.gate_weights if out.gate_weights is not None else jax.numpy.zeros(out.logits.shape[:1])
        return out.logits, gate

    prep = Preprocessing.from_config(config)
    clips, frames, kept = [], [], []
    for record in records:
        video = clips_lib.read_clips(record.path, prep, clips_lib.Views(1, 1))
        clips.append(video.clips[0])
        frames.append(video.windows[0].indices)
        kept.append(record)
    clips = np.stack(clips)
    batch = 8
    logits, gates = [], []
    for start in range(0, len(clips), batch):
        chunk = clips[start:start + batch]
        padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.uint8)])
        lg, gate = jax.device_get(forward(frozen, padded))
        logits.append(lg[:len(chunk)])
        gates.append(gate[:len(chunk)])
    return info, kept, frames, np.concatenate(logits), np.concatenate(gates)


def light_curve(record) -> np.ndarray | None:
    sidecar = Path(record.path).with_suffix(".json")
    try:
        return np.asarray(json.loads(sidecar.read_text())["mean_luma_per_frame"], np.float64)
    except (OSError, ValueError, KeyError):
        return None


# ---------------------------------------------------------------------- main


def report_stage(stage_dir: Path, out: Path, gate_clips: int, max_clips: int | None) -> dict:
    """The figures of one stage; returns its section of the index (title, images, notes, metrics)."""
    from actlumos_jax.inference.evaluate import metrics_of  # pylint: disable=g-import-not-at-top
    from actlumos_jax.inference.predict import softmax  # pylint: disable=g-import-not-at-top
    from actlumos_jax.models.actlumos import TEMPORAL_STRIDE  # pylint: disable=g-import-not-at-top

    name = stage_dir.name
    section = {"name": name, "path": str(stage_dir), "images": [], "notes": [], "metrics": {}}
    done_file = stage_dir / "final_metrics.json"
    done = json.loads(done_file.read_text()) if done_file.is_file() else {}
    section["title"] = done.get("title") or name
    section["metrics"] = done.get("metrics", {})
    if not done:
        section["notes"].append("not finished (no final_metrics.json)")
    if plot_curves(read_metrics(stage_dir / "metrics.jsonl"), f"{name}: training", out / f"{name}_curves.png"):
        section["images"].append((f"{name}_curves.png", "training curves"))
    else:
        section["notes"].append("no metrics.jsonl: no training curves")
    step, config = _stage_config(stage_dir)
    if config is None:
        section["notes"].append("no checkpoint: nothing to evaluate")
        return section
    if config.stage == "kd":
        metrics, class_names = evaluate_student(stage_dir, config, max_clips)
    elif config.stage == "teacher":
        info, records, frames, logits, gates = run_teacher(stage_dir, config, max_clips)
        class_names = info.class_names
        metrics = metrics_of(np.asarray([r.label for r in records]), softmax(logits.astype(np.float64)), class_names)
        if gates.ndim >= 3:
            w = gates.reshape(gates.shape[0], gates.shape[1], -1, 2).mean(axis=2)  # spatial gate: mean over H', W'
            curves = [light_curve(r) for r in records]
            # The clips whose recorded light changes most over the sampled frames: where a gate has something to follow.
            spread = np.array([np.ptp(c[f]) if c is not None else -1.0 for c, f in zip(curves, frames)])
            chosen = np.argsort(-spread, kind="stable")[:gate_clips]
            plot_gate(w[chosen], [frames[i] for i in chosen], [curves[i] for i in chosen],
                      [Path(records[i].clip_id).name for i in chosen], config.data.num_frames // w.shape[1],
                      f"{name}: DFF gate on test clips ({config.model.fusion}; {TEMPORAL_STRIDE} sampled frames per latent step)",
                      out / f"{name}_gate.png")
            section["images"].append((f"{name}_gate.png", "DFF gate over time beside the true light"))
            if all(c is None for c in curves):
                section["notes"].append("the dataset records no light level (only the embedded dataset does)")
        else:
            section["notes"].append(f"fusion {config.model.fusion!r} has no gate")
    else:
        section["notes"].append(f"a {config.stage} stage has no trained classifier: curves only")
        return section
    plot_confusion(metrics, class_names, f"{name}: test split, step {step}", out / f"{name}_confusion.png")
    plot_per_class(metrics, f"{name}: per-class accuracy, test split", out / f"{name}_per_class.png")
    section["images"] += [(f"{name}_confusion.png", "confusion matrix (test split)"),
                          (f"{name}_per_class.png", "per-class accuracy (test split)")]
    section["evaluated"] = {k: metrics[k] for k in ("clips", "top1", "top5", "mean_class_accuracy")}
    return section


def write_index(sections: list[dict], workdir: Path, out: Path) -> Path:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(str(workdir))}</title>",
             "<style>body{font-family:sans-serif;margin:2em}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}</style></head><body>",
             f"<h1>Report: {html.escape(str(workdir))}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s['name'])}: {html.escape(s['title'])}</h2>")
        rows = {**{f"recorded {k}": v for k, v in s["metrics"].items()},
                **{f"evaluated {k}": v for k, v in s.get("evaluated", {}).items()}}
        if rows:
            parts.append("<table>" + "".join(
                f"<tr><th>{html.escape(k)}</th><td>{v:.4g}</td></tr>" if isinstance(v, (int, float)) else
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
                + "</table>")
        for note in s["notes"]:
            parts.append(f"<p><em>{html.escape(note)}</em></p>")
        for image, caption in s["images"]:
            parts.append(f"<figure><img src='{html.escape(image)}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index


def _main(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    stages = find_stages(workdir)
    out = Path(args.out) if args.out else workdir / "report"
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    import tqdm  # pylint: disable=g-import-not-at-top
    for stage_dir in tqdm.tqdm(stages, desc=PROG, unit="stage", file=sys.stderr,
                               disable=True if args.no_progress else None):
        sections.append(report_stage(stage_dir, out, args.gate_clips, args.max_clips))
    index = write_index(sections, workdir, out)
    images = sum(len(s["images"]) for s in sections)
    print(f"{PROG}: {len(sections)} stage(s), {images} figures: {index}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("workdir", help="a stage directory or a pipeline workdir")
    parser.add_argument("--out", default=None, help="output directory (default WORKDIR/report)")
    parser.add_argument("--gate-clips", type=int, default=4, help="test clips in the teacher's gate figure")
    parser.add_argument("--max-clips", type=int, default=None,
                        help="score only the first N test clips (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(_main, args, verbose=args.verbose, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
