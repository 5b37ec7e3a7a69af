"""Stage: the dual-stream teacher (dark + retinex, DFF, CE + 0.1 SupCon on class-balanced batches)."""

from configs import base


def get_config(arg=None):
    c = base.get_config(arg)
    c.stage = "teacher"
    c.train.class_balanced = True  # n_c classes x n_v clips per batch: SupCon's positives
    if base.size_of(arg) == "tiny":
        # 36 epochs = 576 steps of 16: the schedule behind the README's teacher figures
        # (bench/teacher_ablation.sh).
        c.train.epochs = 36
        c.eval.every_epochs = 12
    return c
