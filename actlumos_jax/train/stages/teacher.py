"""The teacher: dark + enhanced streams -> Teacher; CE + lambda * SupCon (eq. 4) on class-balanced batches."""

from __future__ import annotations

import jax.numpy as jnp

from actlumos_jax import losses
from actlumos_jax.train.stages.base import Stage, accuracy, teacher_streams, valid_mask

_FUSION_NAMES = {"dff_temporal": ("DFF", "dark + retinex"), "dff_spatiotemporal": ("DFF-ST", "dark + retinex"),
                 "concat": ("concat", "dark + retinex"), "dark_only": ("one stream", "dark"),
                 "retinex_only": ("one stream", "retinex")}


class TeacherStage(Stage):
    name = "teacher"
    model_kind = "teacher"

    def train_loader_mode(self) -> str:
        # n_c classes x n_v clips per batch give SupCon its positives.
        return "balanced" if self.config.train.class_balanced else "supervised"

    def loss(self, model, batch, teacher):
        mask, labels = valid_mask(batch), batch["label"]
        out = model(*teacher_streams(batch["video"], self.config))
        ce = losses.cross_entropy(out.logits, labels, mask=mask)
        # Each clip is seen twice (dark and enhanced view): 2B vectors for SupCon;
        # the single-stream ablations have one view.
        views = [e for e in (out.embed_dark, out.embed_retinex) if e is not None]
        supcon = losses.supcon(
            jnp.concatenate(views), jnp.concatenate([labels] * len(views)),
            temperature=self.config.loss.supcon_temperature, mask=jnp.concatenate([mask] * len(views)),
        )
        metrics = {"ce": ce, "supcon": supcon, "accuracy": accuracy(out.logits, labels, mask)}
        if out.gate_weights is not None:
            metrics["gate_retinex"] = jnp.mean(out.gate_weights[..., 1])
        loss_cfg = self.config.loss
        return loss_cfg.ce_weight * ce + loss_cfg.supcon_weight * supcon, metrics

    def logits(self, model, batch):
        return model(*teacher_streams(batch["video"], self.config)).logits

    def row_title(self) -> str:
        """E.g. ``Teacher: DFF + SupCon (dark + retinex)``."""
        fusion, inputs = _FUSION_NAMES[self.config.model.fusion]
        enhancement = self.config.enhance.method
        if enhancement not in ("msr", "ssr"):
            inputs = inputs.replace("retinex", enhancement)
        loss = " + SupCon" if self.config.loss.supcon_weight > 0 else ", CE only"
        return f"Teacher: {fusion}{loss} ({inputs})"
