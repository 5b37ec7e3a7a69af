"""The paper's teacher task (DFF + SupCon on dark and retinex views) against an independent SupCon."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actlumos_jax.models import build_model
from actlumos_jax.train.stages import make_stage, teacher_streams
from tests.test_losses import supcon_reference
from tests.train.helpers import random_batch, tiny_config


def test_supcon_pairs_each_clips_dark_and_retinex_views_under_its_label():
    config = tiny_config("teacher")
    config.enhance.method = "msr"  # the paper's second stream, not the tests' cheap gamma
    assert (config.model.fusion, config.loss.supcon_weight) == ("dff_temporal", 0.1)
    stage = make_stage(config)
    model = build_model(config.model, 11, kind="teacher", rngs=nnx.Rngs(0, dropout=1, mask=2))
    model.train()
    batch = {k: jnp.asarray(v) for k, v in random_batch("teacher").items()}
    batch["mask"] = batch["mask"].at[3].set(False)  # a padded clip leaves both of its views out
    twin = nnx.clone(model)
    loss, metrics = stage.loss(model, batch, None)
    out = twin(*teacher_streams(batch["video"], config))
    dark, ret = np.asarray(out.embed_dark), np.asarray(out.embed_retinex)
    labels, mask = np.asarray(batch["label"]), np.asarray(batch["mask"])
    want = supcon_reference(np.concatenate([dark, ret]), np.concatenate([labels, labels]), 0.1,
                            np.concatenate([mask, mask]))
    # float32 embeddings of O(1), cosine similarities over 64 channels: ~1e-6 relative.
    assert float(metrics["supcon"]) == pytest.approx(want, rel=1e-4)
    np.testing.assert_allclose(float(loss), float(metrics["ce"]) + 0.1 * float(metrics["supcon"]), rtol=1e-5)
    # The test can tell the pairing apart: retinex views of other clips, or labels not repeated
    # for the second view, give other values.
    shuffled = supcon_reference(np.concatenate([dark, ret[::-1]]), np.concatenate([labels, labels]), 0.1,
                                np.concatenate([mask, mask[::-1]]))
    unpaired = supcon_reference(np.concatenate([dark, ret]), np.concatenate([labels, labels[::-1]]), 0.1,
                                np.concatenate([mask, mask]))
    assert min(abs(shuffled - want), abs(unpaired - want)) > 1e-3 * abs(want)
    assert 0 < float(metrics["gate_retinex"]) < 1


def test_kd_prepares_the_teachers_input_with_the_teachers_own_enhancement():
    student_config = tiny_config("kd")
    student_config.enhance.method = "gamma"
    teacher_config = tiny_config("teacher")
    teacher_config.enhance.method = "msr"  # what the teacher was trained on
    seen = []

    class RecordingTeacher:
        def __call__(self, dark, retinex):
            seen.append(np.asarray(retinex))
            return type("Out", (), {"logits": jnp.zeros((dark.shape[0], 11))})()

    student = build_model(student_config.model, 11, kind="student", rngs=nnx.Rngs(0, dropout=1, mask=2))
    student.train()
    batch = {k: jnp.asarray(v) for k, v in random_batch("kd").items()}
    make_stage(student_config, teacher_config).loss(student, batch, RecordingTeacher())
    make_stage(student_config).loss(student, batch, RecordingTeacher())
    msr = np.asarray(teacher_streams(batch["video"], teacher_config)[1])
    gamma = np.asarray(teacher_streams(batch["video"], student_config)[1])
    assert np.abs(msr - gamma).max() > 0.1  # the two enhancements are told apart
    np.testing.assert_array_equal(seen[0], msr)
    np.testing.assert_array_equal(seen[1], gamma)  # without a teacher config: this stage's own
