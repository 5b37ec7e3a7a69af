"""From a config to sharded device batches: dataset reading, grain loaders, prefetch.

Batches reach the devices through ``data_pipelines.device_prefetch``, which
remembers the grain state of each batch it hands out; checkpoints store that
state, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import ml_collections
import numpy as np

from data_pipelines import datasets, loader, validation
from data_pipelines.bad_input import DatasetError, InputError
from data_pipelines.records import ClipRecord, SplitInfo


@dataclasses.dataclass
class StageData:
    """One split's clips: ``ClipRecord``s read from the files, or TFDS array_record sources.

    ``val`` is carved from the official training clips by actor (None when
    ``dataset.val_fraction`` is 0); ``train`` is what remains of them.
    """

    info: SplitInfo
    train: Sequence[ClipRecord] | Any
    val: Sequence[ClipRecord] | Any | None
    test: Sequence[ClipRecord] | Any


def read_stage_data(config: ml_collections.ConfigDict) -> StageData:
    ds = config.dataset
    split = ds.split if ds.split >= 0 else None
    if ds.source == "tfds":
        info, train, test = _read_tfds(ds, split)
    else:
        kwargs = dict(root=ds.root or None, split=split, synthetic_preset=ds.synthetic_preset,
                      seed=ds.synthetic_seed, on_bad_input=ds.on_bad_input)
        info, train = datasets.read_split(ds.name, subset="train", **kwargs)
        test_info, test = datasets.read_split(ds.name, subset="test", **kwargs)
        if test_info.class_names != info.class_names:
            raise ValueError(f"{ds.name}: train and test splits disagree on the classes")
    val = None
    if ds.val_fraction > 0:
        train, val = validation.split_off_validation(train, ds.val_fraction, ds.val_seed)
    return StageData(info, train, val, test)


def read_unlabeled_pool(config: ml_collections.ConfigDict) -> list[ClipRecord]:
    """Every clip of ``config.ssl.other``'s train and test lists, for the SSL pool; labels set to 0
    (the pool's labels are never read, and its classes need not be the target's)."""
    other, ds = config.ssl.other, config.dataset
    same_set = other.synthetic_seed == ds.synthetic_seed and other.synthetic_preset == ds.synthetic_preset
    if other.name == ds.name and other.root == ds.root and (other.name != "synthetic" or same_set):
        raise InputError(f"config.ssl.other names the target dataset itself ({ds.name}); point it at another "
                         "dataset (another root, or for the embedded data another synthetic_seed)")
    kwargs = dict(root=other.root or None, split=other.split if other.split >= 0 else None,
                  synthetic_preset=other.synthetic_preset, seed=other.synthetic_seed, on_bad_input=ds.on_bad_input)
    clips = []
    for subset in ("train", "test"):
        _, records = datasets.read_split(other.name, subset=subset, **kwargs)
        clips += [dataclasses.replace(r, label=0) for r in records]
    return clips


def tfds_data_dir(ds: ml_collections.ConfigDict) -> Path:
    """Where the array_record copy lives; the synthetic set's default sits beside its files."""
    if ds.tfds_data_dir:
        return Path(ds.tfds_data_dir)
    if ds.name == "synthetic":
        from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top

        files = synthetic.default_root(ds.synthetic_preset, ds.synthetic_seed)
        return files.with_name(files.name + "-tfds")
    raise ValueError(f"config.dataset.source='tfds' for {ds.name!r} needs config.dataset.tfds_data_dir")


def _read_tfds(ds: ml_collections.ConfigDict, split: int | None):
    """The split's TFDS sources, building them first from ``root`` when this is the only process."""
    import jax  # pylint: disable=g-import-not-at-top
    from data_pipelines import tfds_builders  # pylint: disable=g-import-not-at-top  # TFDS imports slowly

    data_dir = tfds_data_dir(ds)
    try:
        train = tfds_builders.data_source(ds.name, data_dir=data_dir, split=split, subset="train")
    except DatasetError:
        if jax.process_count() > 1:
            raise  # N processes must not race to write one dataset: build it once beforehand
        tfds_builders.build(ds.name, root=ds.root or None, data_dir=data_dir, split=split,
                            on_bad_input=ds.on_bad_input, synthetic_preset=ds.synthetic_preset,
                            seed=ds.synthetic_seed)
        train = tfds_builders.data_source(ds.name, data_dir=data_dir, split=split, subset="train")
    test = tfds_builders.data_source(ds.name, data_dir=data_dir, split=split, subset="test")
    return train.split_info, train, test


def make_train_loader(config: ml_collections.ConfigDict, source: Any, info: SplitInfo, mode: str):
    return loader.make_loader(source, info, train=True, mode=mode, **_loader_kwargs(config))


def make_eval_loader(config: ml_collections.ConfigDict, source: Any, info: SplitInfo, mode: str):
    kwargs = _loader_kwargs(config)
    kwargs["global_batch_size"] = config.eval.batch_size or config.train.batch_size
    if config.eval.num_workers >= 0:
        kwargs["num_workers"] = config.eval.num_workers
    return loader.make_loader(source, info, train=False, mode=mode, num_epochs=1, **kwargs)


def _loader_kwargs(config) -> dict[str, Any]:
    d = config.data
    return dict(
        global_batch_size=config.train.batch_size, num_frames=d.num_frames, frame_stride=d.frame_stride,
        ssl_strides=tuple(config.ssl.strides), ssl_variant=config.ssl.variant,
        resize=tuple(d.resize), crop=d.crop, interpolation=d.interpolation,
        # Read by class-balanced stages only, whose loader refuses clips_per_class < 1 by name.
        balanced_classes=config.train.batch_size // max(config.train.clips_per_class, 1),
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


def step_inputs(batch: dict, keys: Sequence[str]) -> tuple[dict, int]:
    """The entries a stage's step reads (the rest stay on the host), and the number of clips the loader skipped."""
    return {k: batch[k] for k in keys}, int(np.sum(batch.get("skipped", 0)))
