"""Stage: the dual-stream teacher (dark + retinex, DFF, CE + 0.1 SupCon on class-balanced batches)."""

from configs import base


def get_config(arg=None):
    c = base.get_config(arg)
    c.stage = "teacher"
    c.data.class_balanced = True  # n_c classes x n_v clips per batch, for SupCon's positives
    c.data.balanced_classes, c.data.balanced_clips = (4, 2) if c.train.batch_size == 8 else (8, 2)
    return c
