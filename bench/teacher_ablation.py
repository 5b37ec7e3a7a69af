"""The teacher's ablations over seeds on the embedded data, with the diagnostics of its evaluation mode.

Each run trains the tiny teacher stage exactly as ``configs/teacher.py`` does
(the real loader, class-balanced batches, the shared train step) with one
fusion and one BatchNorm form, then measures on the final checkpoint:
  test_top1             held-out top-1, evaluation mode (BatchNorm running statistics)
  test_top1_batchstats  the same clips, each batch normalised by its own statistics
  train_top1_eval       its own training clips, centre crops, evaluation mode
  train_top1_batchstats the same clips in class-mixed batches, batch statistics
  train_top1_logged     training-mode accuracy of the last logged training steps
  gate_*                for DFF teachers, the gate's retinex weight against the
                        clips' true light (see ``bench/gate_vs_light.py``)
A teacher whose ``train_top1_eval`` falls far below ``train_top1_batchstats``
computes something else in evaluation than in training.

  python -m bench.teacher_ablation --runs dff_temporal:joint,retinex_only --seeds 0,1,2 \\
      --out bench/results/teacher_ablation

Runs are kept under OUT/runs/ and a finished run with the same config is not
retrained. Every run appends one JSON line to OUT/runs.jsonl; the summary
(mean +- std over seeds, and each difference's standard error) goes to stdout
and OUT/summary.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from actlumos_jax.models import STREAM_NORMS
from actlumos_jax.train import checkpointing, input_pipeline, loop, warm_start
from actlumos_jax.train.stages import teacher_streams
from bench import gate_vs_light
from configs import teacher as teacher_config

TRAIN_BATCH = 16


def run_config(fusion: str, stream_norm: str, seed: int, overrides: list[str]):
    config = teacher_config.get_config("size=tiny")
    config.model.fusion = fusion
    config.model.stream_norm = stream_norm
    config.loss.supcon_weight = 0.1  # the paper's recipe; --set loss.supcon_weight=0 for the ablation
    config.seed = seed
    config.eval.every_epochs = config.train.epochs  # one evaluation, at the end: no checkpoint picked on test
    for item in overrides:
        key, _, value = item.partition("=")
        node = config
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        old = node[leaf]
        node[leaf] = type(old)(json.loads(value)) if not isinstance(old, str) else value
    return config


def fingerprint(config) -> str:
    return hashlib.sha256(config.to_json_best_effort(sort_keys=True).encode()).hexdigest()[:16]


def _batch_stat_mode(model: nnx.Module) -> None:
    """Evaluation mode (no dropout) but every BatchNorm normalises by the batch's own statistics."""
    model.eval()
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.BatchNorm):
            node.use_running_average = False


def make_forward(graphdef, config, batch_stats_mode: bool):
    @jax.jit
    def forward(variables, video):
        model = nnx.merge(graphdef, variables.params, variables.batch_stats, variables.rngs, copy=True)
        if batch_stats_mode:
            _batch_stat_mode(model)
        else:
            model.eval()
        out = model(*teacher_streams(video, config))
        weights = out.gate_weights if out.gate_weights is not None else jax.numpy.zeros(out.logits.shape[:1])
        return out.logits, weights

    return forward


def clips_of(config, data, subset: str):
    """Centre crops of every clip of ``subset`` as evaluation sees them, in record order, and their labels."""
    records = data.train if subset == "train" else data.test
    loader_config = config.copy_and_resolve_references()
    loader_config.eval.batch_size = 32
    videos, labels = [], []
    for batch in input_pipeline.make_eval_loader(loader_config, records, data.info, "supervised"):
        keep = batch["mask"].astype(bool)
        videos.append(batch["video"][keep])
        labels.append(batch["label"][keep])
    videos, labels = np.concatenate(videos), np.concatenate(labels)
    expected = np.array([r.label for r in records])
    if not np.array_equal(labels, expected):
        raise RuntimeError("the evaluation loader did not return the clips in record order")
    return videos, labels


def predict(forward, variables, videos: np.ndarray, order: np.ndarray, batch: int):
    out_logits, out_weights = [None] * len(videos), [None] * len(videos)
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        if len(idx) < batch:  # a short last batch would recompile and carry skewed batch statistics
            idx = np.concatenate([idx, order[: batch - len(idx)]])
        lg, w = jax.device_get(forward(variables, videos[idx]))
        for j, k in enumerate(idx[: len(order) - i]):
            out_logits[k], out_weights[k] = lg[j], w[j]
    return np.stack(out_logits), np.stack(out_weights)


def diagnostics(config, workdir: Path) -> dict:
    data = input_pipeline.read_stage_data(config)
    graphdef, variables, _ = warm_start.load_teacher(workdir, data.info.num_classes)  # the checkpoint its stage chose
    running, batch_stats = make_forward(graphdef, config, False), make_forward(graphdef, config, True)
    result = {"step": checkpointing.chosen_step(workdir / "checkpoints")}
    mixed = np.random.default_rng(0)
    for subset in ("train", "test"):
        videos, labels = clips_of(config, data, subset)
        natural = np.arange(len(videos))
        logits, weights = predict(running, variables, videos, natural, 32)
        result[f"{subset}_top1_eval"] = 100 * float(np.mean(logits.argmax(-1) == labels))
        shuffled = mixed.permutation(len(videos))  # class-mixed batches, as the balanced training batches are
        logits_b, _ = predict(batch_stats, variables, videos, shuffled, TRAIN_BATCH)
        result[f"{subset}_top1_batchstats"] = 100 * float(np.mean(logits_b.argmax(-1) == labels))
        if subset == "test" and config.model.fusion.startswith("dff"):
            records = data.test
            result.update(gate_vs_light.gate_light_stats(weights, records, config))
    log = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_acc = [r["accuracy"] for r in log if r.get("kind") == "train" and "accuracy" in r]
    gate = [r["gate_retinex"] for r in log if r.get("kind") == "train" and "gate_retinex" in r]
    result["train_top1_logged"] = 100 * float(np.mean(train_acc[-5:])) if train_acc else None
    if gate:
        result["gate_retinex_logged_first_last"] = [round(gate[0], 4), round(gate[-1], 4)]
    return result


def summarise(rows: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["name"], []).append(row)
    keys = ("test_top1", "test_top1_batchstats", "train_top1_eval", "train_top1_batchstats", "train_top1_logged")
    lines = ["| run | seeds | " + " | ".join(keys) + " | gate r (light) |",
             "|---|---|" + "---|" * len(keys) + "---|"]
    for name, rs in groups.items():
        cells = []
        for k in keys:
            v = np.array([r[k] for r in rs if r.get(k) is not None], float)
            cells.append(f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0:.1f}" if len(v) else "n/a")
        r_gate = [r["gate_light_pearson"] for r in rs if r.get("gate_light_pearson") is not None]
        gate = f"{np.mean(r_gate):+.2f} ± {np.std(r_gate, ddof=1) if len(r_gate) > 1 else 0:.2f}" if r_gate else ""
        lines.append(f"| {name} | {','.join(str(r['seed']) for r in rs)} | " + " | ".join(cells) + f" | {gate} |")
    lines.append("")
    lines.append("std: sample std over seeds (ddof 1). One clip of the test split is "
                 f"{100 / rows[0]['test_clips']:.2f} points.")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="dff_temporal:joint,dff_temporal:per_stream,dff_temporal:separate",
                        help="comma-separated FUSION[:STREAM_NORM] (stream_norm defaults to joint)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (repeatable)")
    parser.add_argument("--tag", default="", help="names this group of runs in the summary")
    parser.add_argument("--out", default="bench/results/teacher_ablation")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "runs.jsonl"
    for run in args.runs.split(","):
        fusion, _, stream_norm = run.partition(":")
        stream_norm = stream_norm or "joint"
        if stream_norm not in STREAM_NORMS:
            parser.error(f"stream norm must be one of {STREAM_NORMS}, got {stream_norm!r}")
        for seed in map(int, args.seeds.split(",")):
            config = run_config(fusion, stream_norm, seed, args.set)
            name = f"{fusion}:{stream_norm}" + (f" {args.tag}" if args.tag else "")
            key = fingerprint(config)
            workdir = out / "runs" / f"{fusion}-{stream_norm}-{key}-s{seed}"
            done = [json.loads(l) for l in rows_path.read_text().splitlines()] if rows_path.exists() else []
            if any(r["fingerprint"] == key for r in done):
                print(f"{name} seed {seed}: done ({workdir})", flush=True)
                continue
            result = loop.run_stage(config, workdir)
            row = {"name": name, "fusion": fusion, "stream_norm": stream_norm, "seed": seed, "overrides": args.set,
                   "fingerprint": key, "workdir": str(workdir), "test_top1": result.metrics["test_top1"],
                   "test_clips": result.metrics["val_clips"], **diagnostics(config, workdir)}
            print(json.dumps(row), flush=True)
            with rows_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
    rows = [json.loads(l) for l in rows_path.read_text().splitlines()]
    table = summarise(rows)
    (out / "summary.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
