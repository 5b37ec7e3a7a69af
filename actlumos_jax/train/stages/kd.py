"""Stage 2 of the student: dark clips -> Student, CE + KD from the frozen teacher (eqs. 8-9).

With ``loss.kd_weight = 0`` it is the CE-only fine-tuning of the SSL-only row;
without an SSL initialisation (``init.student_workdir``) it is the KD-only row.
"""

from __future__ import annotations

import jax

from actlumos_jax import losses
from actlumos_jax.train.stages.base import Stage, accuracy, model_input, teacher_streams, valid_mask


class KDStage(Stage):
    name = "kd"
    model_kind = "student"

    @property
    def needs_teacher(self) -> bool:
        return self.config.loss.kd_weight > 0

    def loss(self, model, batch, teacher):
        mask, labels = valid_mask(batch), batch["label"]
        out = model(model_input(batch["video"], self.dtype))
        cfg = self.config.loss
        ce = losses.cross_entropy(out.logits, labels, mask=mask)
        metrics = {"ce": ce, "accuracy": accuracy(out.logits, labels, mask)}
        loss = cfg.ce_weight * ce
        if teacher is not None:
            # The teacher's input is prepared as the teacher was trained (its own saved
            # config), whatever this stage's ``enhance`` says.
            teacher_in = teacher_streams(batch["video"], self.teacher_config or self.config)
            teacher_logits = jax.lax.stop_gradient(teacher(*teacher_in).logits)
            kd = losses.distillation(out.logits, teacher_logits, temperature=cfg.kd_temperature, mask=mask)
            metrics["kd"] = kd
            loss = loss + cfg.kd_weight * kd
        return loss, metrics

    def logits(self, model, batch):
        return model(model_input(batch["video"], self.dtype)).logits

    def row_title(self) -> str:
        pretrained = bool(self.config.init.student_workdir)
        distilled = self.config.loss.kd_weight > 0
        recipe = {(True, True): "SSL + KD", (True, False): "SSL only",
                  (False, True): "KD only", (False, False): "CE only"}[(pretrained, distilled)]
        return f"Student: {recipe} (dark)"
