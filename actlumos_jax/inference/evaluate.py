"""actlumos-eval: a trained student's accuracy on a dataset split, apart from training.

  python -m actlumos_jax.inference.evaluate WORKDIR [--views 1x1] [--split N | --all-splits] [--subset test]
      [--root DIR] [--output FILE.json]

WORKDIR is a student's stage directory (or a pipeline workdir, or an exported
artifact, which names its dataset in meta.json). The dataset is the stage's own
(``config.dataset`` of its saved config); ``--split`` picks another official
split, ``--all-splits`` evaluates every one and adds their mean and standard
deviation, ``--root`` points at a dataset that moved. ``--views 1x1`` (the
default) scores the centred clip and centre crop, the training's evaluation,
so top-1 equals the stage's ``test_top1`` on the split it was trained on;
``3x3`` is the frameworks' multi-view testing (softmax scores averaged).

Writes a JSON file (default ``WORKDIR/evaluation/<subset>_split<N>_<views>.json``)
with top-1/top-5, mean class accuracy, the per-class accuracy, the confusion
matrix (rows: true class, columns: predicted) and every clip's prediction.
Clips that cannot be read are listed (exit code 1), not scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from actlumos_jax.inference import clips as clips_lib
from actlumos_jax.inference import predict
from actlumos_jax.inference.model import Predictor, load_predictor
from data_pipelines import datasets
from data_pipelines.bad_input import InputError, run_cli

PROG = "actlumos-eval"


def dataset_settings(predictor: Predictor) -> dict:
    """The dataset the predictor's stage was trained on: ``config.dataset`` of its saved config, or the
    artifact's ``meta.json``."""
    ds = predictor.info.get("dataset")
    if not ds:
        raise InputError(f"{predictor.source}: names no dataset; pass --dataset and --root")
    return dict(ds)


def read_records(ds: dict, split: int | None, subset: str):
    name = ds.get("name", "synthetic")
    kwargs = dict(root=ds.get("root") or None, split=split, subset=subset)
    if name == "synthetic":
        kwargs.update(synthetic_preset=ds.get("synthetic_preset", "tiny"), seed=ds.get("synthetic_seed", 0))
    return datasets.read_split(name, on_bad_input="skip", **kwargs)


def metrics_of(labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> dict:
    """top-1/top-5 (%), mean class accuracy (%), loss, per-class accuracy and the confusion matrix."""
    k = len(class_names)
    n = len(labels)
    if n == 0:
        return {"clips": 0}
    predicted = probs.argmax(axis=1)
    top5 = np.argsort(-probs, axis=1)[:, :min(5, k)]
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = []
    for c, name in enumerate(class_names):
        count = int(confusion[c].sum())
        per_class.append({"class": name, "clips": count, "correct": int(confusion[c, c]),
                          "accuracy": 100.0 * confusion[c, c] / count if count else None})
    present = [p["accuracy"] for p in per_class if p["accuracy"] is not None]
    return {
        "clips": n,
        "top1": 100.0 * float(np.mean(predicted == labels)),
        "top5": 100.0 * float(np.mean([label in row for label, row in zip(labels, top5)])),
        "mean_class_accuracy": float(np.mean(present)),
        "loss": float(-np.mean(np.log(np.maximum(probs[np.arange(n), labels], 1e-12)))),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def evaluate_split(predictor: Predictor, ds: dict, split: int | None, subset: str, views: clips_lib.Views,
                   workers: int = 2, progress: bool | None = None) -> dict:
    info, records = read_records(ds, split, subset)
    if tuple(info.class_names) != tuple(predictor.class_names):
        if len(info.class_names) != len(predictor.class_names):
            raise InputError(f"{info.dataset} {info.split} has {len(info.class_names)} classes and the model "
                             f"{len(predictor.class_names)}: evaluate it on the dataset it was trained on")
    by_path = {r.path: r for r in records}
    labels, probs, rows, failed = [], [], [], []
    for result in predict.run(predictor, [Path(r.path) for r in records], views, workers=workers, progress=progress):
        record = by_path[result.path]
        if result.error is not None:
            failed.append({"clip_id": record.clip_id, "error": result.error})
            continue
        p = result.video_probs
        labels.append(record.label)
        probs.append(p)
        rows.append({"clip_id": record.clip_id, "label": info.class_names[record.label],
                     "predicted": info.class_names[int(p.argmax())], "probability": round(float(p.max()), 6),
                     "wrapped": result.clips.wrapped})
    k = len(info.class_names)
    metrics = metrics_of(np.asarray(labels, np.int64), np.asarray(probs, np.float64).reshape(-1, k),
                         info.class_names)
    report = getattr(info, "report", None)
    skipped = []
    if report is not None:  # listed but not readable as files: the reader skipped them
        skipped = ([{"clip_id": p, "error": "video file not found"} for p in report.missing]
                   + [{"clip_id": p, "error": "empty video file"} for p in report.empty]
                   + [{"clip_id": p, "error": problem} for p, problem in report.unusable])
    return {"dataset": info.dataset, "split": info.split, "views": views.describe(), **metrics,
            "class_names": list(info.class_names), "failed": failed + skipped, "predictions": rows}


SUMMARY_KEYS = ("top1", "top5", "mean_class_accuracy", "loss")


def _main(args: argparse.Namespace) -> int:
    temporal, spatial = clips_lib.parse_views(args.views)
    views = clips_lib.Views(temporal, spatial)
    predictor = load_predictor(args.workdir, batch_size=args.batch_size)
    if "note" in predictor.info:
        print(f"{PROG}: {predictor.info['note']}", file=sys.stderr)
    ds = {} if args.dataset else dataset_settings(predictor)
    if args.dataset:
        ds["name"] = args.dataset
    if args.root:
        ds["root"] = args.root
    name = ds.get("name", "synthetic")
    if name not in datasets.DATASETS:
        raise InputError(f"unknown dataset {name!r}; expected one of {datasets.DATASETS}")
    if args.all_splits and args.split is not None:
        raise InputError("give --split or --all-splits, not both")
    if args.all_splits:
        splits = list(datasets.VALID_SPLITS[name])
    else:
        trained = ds.get("split", -1)
        splits = [args.split if args.split is not None else (trained if trained is not None and trained >= 0
                                                             else datasets.DEFAULT_SPLIT[name])]
    progress = False if args.no_progress else None
    results = {}
    for split in splits:
        results[str(split)] = evaluate_split(predictor, ds, split, args.subset, views, args.workers, progress)
        r = results[str(split)]
        print(f"{PROG}: {r['dataset']} {r['split']}: top-1 {r['top1']:.2f}  top-5 {r['top5']:.2f}  "
              f"mean class {r['mean_class_accuracy']:.2f}  ({r['clips']} clips, {views.describe()}"
              f"{f'; {len(r['failed'])} unreadable' if r['failed'] else ''})", file=sys.stderr)
    report = {"workdir": str(predictor.source), "model": predictor.kind, "stage": predictor.info.get("stage"),
              "step": predictor.info.get("step"), "subset": args.subset, "views": args.views,
              "splits": results}
    if len(results) > 1:
        report["mean"] = {}
        for key in SUMMARY_KEYS:
            values = np.asarray([r[key] for r in results.values()], np.float64)
            report["mean"][key] = float(values.mean())
            report["mean"][f"{key}_std"] = float(values.std(ddof=1))
        m = report["mean"]
        print(f"{PROG}: mean over {len(results)} splits: top-1 {m['top1']:.2f} ± {m['top1_std']:.2f}  "
              f"top-5 {m['top5']:.2f} ± {m['top5_std']:.2f}", file=sys.stderr)
    if predictor.kind == "workdir" and len(results) == 1 and predictor.info.get("test_metrics"):
        report["training_test_metrics"] = predictor.info["test_metrics"]
    output = Path(args.output) if args.output else (
        Path(predictor.source) / "evaluation" /
        f"{args.subset}_{'all_splits' if args.all_splits else 'split' + str(splits[0])}_{args.views}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"{PROG}: wrote {output}", file=sys.stderr)
    return 1 if any(r["failed"] for r in results.values()) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("workdir", help="a trained student's stage directory, a pipeline workdir or an artifact")
    parser.add_argument("--views", default="1x1", metavar="TxS",
                        help="temporal clips x spatial crops (default 1x1: the training's evaluation)")
    parser.add_argument("--split", type=int, default=None, help="official split (default: the stage's)")
    parser.add_argument("--all-splits", action="store_true", help="every official split, with mean ± std")
    parser.add_argument("--subset", default="test", help="list to evaluate (default test)")
    parser.add_argument("--dataset", default=None, help="dataset name (default: the stage's)")
    parser.add_argument("--root", default=None, help="dataset root (default: the stage's)")
    parser.add_argument("--output", "-o", default=None, help="metrics JSON file")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="decoding threads")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(_main, args, verbose=args.verbose, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
