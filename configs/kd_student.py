"""Stage 2 of the student, and the whole ActLumos pipeline.

``python main.py --config=configs/kd_student.py`` distils the frozen teacher
into the SSL-pretrained student (CE + tau=4 KD). When the teacher or the SSL
student is missing from the workdir they are trained first with the configs
embedded here (``prerequisites.*``, overridable like any other field), and an
SSL-only student (fine-tuned with CE alone) is trained for the comparison.
"""

from configs import base, ssl_student, teacher


def get_config(arg=None):
    c = base.get_config(arg)
    c.stage = "kd"
    c.pipeline = dict(train_prerequisites=True, ssl_only_baseline=True)
    c.prerequisites = dict(teacher=teacher.get_config(arg), ssl=ssl_student.get_config(arg))
    return c
