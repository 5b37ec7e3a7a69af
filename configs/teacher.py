"""Stage: the dual-stream teacher (dark + retinex, DFF, CE + 0.1 SupCon on class-balanced batches)."""

from configs import base


def get_config(arg=None):
    c = base.get_config(arg)
    c.stage = "teacher"
    c.train.class_balanced = True  # n_c classes x n_v clips per batch: SupCon's positives
    if base.size_of(arg) == "tiny":
        # The demo's budget goes to the teacher (~60 % of its 15 minutes): the students learn from it.
        c.train.epochs = 12
        c.eval.every_epochs = 2
    return c
