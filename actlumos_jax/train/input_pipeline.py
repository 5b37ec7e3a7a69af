"""From a config to sharded device batches: dataset reading, grain loaders, prefetch.

Batches reach the devices through ``data_pipelines.device_prefetch``, which
remembers the grain state of each batch it hands out; checkpoints store that
state, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import ml_collections
import numpy as np

from data_pipelines import datasets, loader
from data_pipelines.records import ClipRecord, SplitInfo

# Which batch entries each stage's step reads; the rest stay on the host.
STAGE_KEYS = {
    "teacher": ("video", "label", "mask"),
    "kd": ("video", "label", "mask"),
    "ssl": ("fast", "slow", "label", "mask"),
}


@dataclasses.dataclass
class StageData:
    info: SplitInfo
    train_records: list[ClipRecord]
    test_records: list[ClipRecord]


def read_stage_data(config: ml_collections.ConfigDict) -> StageData:
    ds = config.dataset
    kwargs = dict(root=ds.root or None, split=ds.split if ds.split >= 0 else None,
                  synthetic_preset=ds.synthetic_preset, seed=ds.synthetic_seed, on_bad_input=ds.on_bad_input)
    info, train = datasets.read_split(ds.name, subset="train", **kwargs)
    test_info, test = datasets.read_split(ds.name, subset="test", **kwargs)
    if test_info.class_names != info.class_names:
        raise ValueError(f"{ds.name}: train and test splits disagree on the classes")
    if config.stage == "ssl" and config.ssl.unlabeled_pool == "train_and_test":
        train = train + test  # The paper's transductive pool: every clip, labels unused.
    return StageData(info, train, test)


def make_train_loader(config: ml_collections.ConfigDict, data: StageData):
    mode = {"teacher": "balanced" if config.train.class_balanced else "supervised",
            "ssl": "ssl", "kd": "supervised"}[config.stage]
    return loader.make_loader(data.train_records, data.info, train=True, mode=mode, **_loader_kwargs(config))


def make_eval_loader(config: ml_collections.ConfigDict, data: StageData):
    mode = "ssl" if config.stage == "ssl" else "supervised"
    kwargs = _loader_kwargs(config)
    kwargs["global_batch_size"] = config.eval.batch_size or config.train.batch_size
    return loader.make_loader(data.test_records, data.info, train=False, mode=mode, num_epochs=1, **kwargs)


def _loader_kwargs(config) -> dict[str, Any]:
    d = config.data
    return dict(
        global_batch_size=config.train.batch_size, num_frames=d.num_frames, frame_stride=d.frame_stride,
        ssl_strides=tuple(config.ssl.strides), ssl_variant=config.ssl.variant,
        resize=tuple(d.resize), crop=d.crop, balanced_classes=config.train.batch_size // config.train.clips_per_class,
        balanced_clips=config.train.clips_per_class, seed=config.seed, num_workers=d.num_workers,
        on_bad_input=config.dataset.on_bad_input,
    )


class ConsumedState:
    """grain's checkpoint protocol for a prefetching iterator.

    ``grain.checkpoint.CheckpointSave(ConsumedState(prefetcher))`` stores the
    loader position after the last batch the step consumed, not after the
    batches still waiting in the prefetch queue.
    """

    def __init__(self, prefetcher):
        self._prefetcher = prefetcher

    def get_state(self) -> bytes:
        return json.dumps(self._prefetcher.get_state()).encode()


def step_inputs(batch: dict, stage: str) -> tuple[dict, int]:
    """The entries the stage's step reads, and the number of clips the loader skipped."""
    return {k: batch[k] for k in STAGE_KEYS[stage]}, int(np.sum(batch.get("skipped", 0)))
