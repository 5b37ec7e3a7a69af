"""Tiny configs and batches for the training-library tests."""

import numpy as np

from configs import kd_student, ssl_student, teacher

CONFIGS = {"teacher": teacher, "ssl": ssl_student, "kd": kd_student}


def tiny_config(stage: str, **overrides):
    """A stage config small enough to compile in seconds on a CPU."""
    c = CONFIGS[stage].get_config("dataset=synthetic,size=tiny,preset=tiny")
    c.data.num_frames = 8
    c.data.resize = (36, 48)
    c.data.crop = 32
    c.data.num_workers = 0
    c.model.backbone.width = 0.125
    c.model.encoder.num_heads = 2
    c.model.fusion_hidden = 8
    c.model.projection_dim = 8
    c.enhance.method = "gamma"
    c.train.batch_size = 8
    c.checkpoint.async_save = False
    for key, value in overrides.items():
        node = c
        *path, leaf = key.split(".")
        for part in path:
            node = node[part]
        node[leaf] = value
    return c


def random_batch(stage: str, batch_size: int = 8, frames: int = 8, size: int = 32, classes: int = 11, seed: int = 0):
    rng = np.random.default_rng(seed)
    clip = lambda: rng.integers(0, 40, (batch_size, frames, size, size, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(batch_size // 2) % classes, 2).astype(np.int32)
    batch = {"label": labels, "mask": np.ones(batch_size, bool)}
    if stage == "ssl":
        batch.update(fast=clip(), slow=clip())
    else:
        batch["video"] = clip()
    return batch
