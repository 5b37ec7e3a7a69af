"""Stage 2 of the student, and the whole ActLumos pipeline.

``python main.py --config=configs/kd_student.py`` distils the frozen teacher
into the SSL-pretrained student (CE + tau=4 KD). When the teacher or the SSL
student is missing from the workdir they are trained first with the configs
embedded here (``prerequisites.*``), and an SSL-only student (fine-tuned with
CE alone) is trained for the comparison.

The stages must agree on the data and the architecture (KD starts from the
SSL weights and runs the teacher on the student's clips), so ``dataset``,
``data``, ``enhance``, ``mesh``, ``ssl`` and the model (backbone, encoder, and
the teacher's fusion keys) are one object shared by all three: ``--config.data.num_frames=16`` changes every stage. Optimizer,
schedule, losses and training length stay per stage
(``--config.prerequisites.teacher.train.epochs=10``).
"""

from configs import base, ssl_student, teacher


def get_config(arg=None):
    c = base.get_config(arg)
    c.stage = "kd"
    # student_backbone_from_teacher: the SSL student starts from the trained teacher's backbone.
    # kd_only_baseline: also a student distilled without SSL pretraining (Table 7's KD-only row).
    c.pipeline = dict(train_prerequisites=True, ssl_only_baseline=True, kd_only_baseline=False,
                      student_backbone_from_teacher=False)
    if base.size_of(arg) == "tiny":
        # From dark frames the tiny student overfits its training clips long before it
        # generalises, so each student trains for many epochs.
        c.train.epochs = 24
        c.eval.every_epochs = 12
        # No IG-65M weights on a CPU demo: the teacher's backbone stands in for them.
        c.pipeline.student_backbone_from_teacher = True
    t, s = teacher.get_config(arg), ssl_student.get_config(arg)
    for stage in (t, s):
        for shared in ("dataset", "data", "enhance", "mesh", "ssl"):
            stage[shared] = c[shared]
    s.model = c.model
    t.model.backbone, t.model.encoder = c.model.backbone, c.model.encoder
    for key in ("dtype", "fusion", "fusion_hidden", "stream_norm"):  # set at either level, one value
        t.model[key] = c.model.get_ref(key)
    t.model.num_frames = c.data.get_ref("num_frames")
    c.prerequisites = dict(teacher=t, ssl=s)
    return c
