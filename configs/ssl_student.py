"""Stage 1 of the student: InfoNCE between a fast and a slow view of each dark clip."""

from configs import base


def get_config(arg=None):
    c = base.get_config(arg)
    c.stage = "ssl"
    if base.size_of(arg) == "tiny":
        c.train.epochs = 6
        c.eval.every_epochs = 6
    return c
