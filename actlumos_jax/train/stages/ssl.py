"""Stage 1 of the student: InfoNCE between a fast and a slow view of each dark clip (eq. 7)."""

from __future__ import annotations

import jax.numpy as jnp

from actlumos_jax import losses
from actlumos_jax.train import input_pipeline
from actlumos_jax.train.stages.base import Stage, model_input, valid_mask
from data_pipelines import loader


class SSLStage(Stage):
    name = "ssl"
    model_kind = "student"
    batch_keys = ("fast", "slow", "label", "mask")
    eval_loader_mode = "ssl"
    selection_metric = ("val_loss", "min")  # no labels are used: the held-out InfoNCE

    def train_loader_mode(self) -> str:
        return "ssl"

    def training_source(self, train, test):
        ssl = self.config.ssl
        target = train
        if ssl.unlabeled_pool == "train_and_test":  # the transductive pool, labels unused
            target = train + test if isinstance(train, list) else loader.ConcatSource([train, test])
        if ssl.pool == "target":
            return target
        other = input_pipeline.read_unlabeled_pool(self.config)  # files only: configs.base.validate
        return other if ssl.pool == "other" else list(target) + other

    def info_nce(self, model, batch):
        fast = model(model_input(batch["fast"], self.dtype))
        slow = model(model_input(batch["slow"], self.dtype))
        cfg = self.config.loss
        return losses.info_nce(fast.projection, slow.projection, temperature=cfg.info_nce_temperature,
                               symmetric=cfg.info_nce_symmetric, mask=valid_mask(batch))

    def loss(self, model, batch, teacher):
        nce = self.info_nce(model, batch)
        return nce, {"info_nce": nce}

    def eval_sums(self, model, batch, teacher):
        count = valid_mask(batch).sum().astype(jnp.float32)
        return {"loss_sum": self.info_nce(model, batch) * count, "count": count}

    def row_title(self) -> str:
        pool = {"target": "", "other": ", other dataset", "target+other": ", both datasets"}[self.config.ssl.pool]
        return f"Student: SSL pretraining ({self.config.ssl.variant}{pool}, dark)"
