"""The paper's experiments, one named row per trained model: what exactly each row trains.

    --config=configs/reproduce.py:row=student_ssl_kd,runs=DIR[,dataset=arid10,root=...,size=paper,ig65m=DIR]

``row`` is a key of ``ROWS``. A row that builds on other rows (a student on its
teacher and its SSL start, a teacher on its Zero-DCE weights) finds them in
``runs/<row>``; ``python -m bench.reproduce`` trains them in order. Every row
starts from the stage config of the recipe (``configs/teacher.py``,
``ssl_student.py``, ``kd_student.py``) and changes only what its ``changes`` name.

On a CPU (``size=tiny``) there are no IG-65M weights: each student's backbone
starts from its teacher's backbone (the same stand-in as the demo's), and the
SSL students from the DFF teacher's. At ``size=paper`` every row starts from
the converted IG-65M backbone given as ``ig65m``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ml_collections

from configs import base, kd_student, ssl_student, teacher
from data_pipelines.bad_input import InputError


@dataclasses.dataclass(frozen=True)
class Row:
    stage: str                         # teacher | ssl | kd | zero_dce
    title: str                         # the row's name in the paper's tables
    changes: tuple[tuple[str, object], ...] = ()   # config key -> value, on top of the stage's recipe
    teacher: str = ""                  # a kd row: the row whose teacher it distils
    ssl: str = ""                      # a kd row: the SSL row it starts from ("" = no SSL)
    zero_dce: str = ""                 # a teacher row: the Zero-DCE row whose curves enhance its stream
    backbone_from: str = ""            # size=tiny: the teacher row whose backbone stands in for IG-65M


DFF = "teacher_dff"
_BASELINE = (("train.class_balanced", False), ("loss.supcon_weight", 0.0))  # CE only, plain batches

ROWS: dict[str, Row] = {
    # Teachers (Tables 5, 6, 8).
    DFF: Row("teacher", "Teacher: DFF + SupCon"),
    "teacher_dff_no_supcon": Row("teacher", "DFF teacher, without SupCon", (("loss.supcon_weight", 0.0),)),
    "teacher_dark_only": Row("teacher", "No fusion (single stream: dark only)", (("model.fusion", "dark_only"),)),
    "teacher_retinex_only": Row("teacher", "No fusion (single stream: retinex only)",
                                (("model.fusion", "retinex_only"),)),
    "teacher_concat": Row("teacher", "Static fusion (concatenation)", (("model.fusion", "concat"),)),
    # SSL students (Table 7, Fig. 5).
    "ssl_spatiotemporal": Row("ssl", "SSL: spatial + temporal", backbone_from=DFF),
    "ssl_spatial": Row("ssl", "SSL: spatial only", (("ssl.variant", "spatial"),), backbone_from=DFF),
    "ssl_temporal": Row("ssl", "SSL: temporal only", (("ssl.variant", "temporal"),), backbone_from=DFF),
    "ssl_pool_other": Row("ssl", "SSL on the other dataset only", (("ssl.pool", "other"),), backbone_from=DFF),
    "ssl_pool_combined": Row("ssl", "SSL on both datasets", (("ssl.pool", "target+other"),), backbone_from=DFF),
    # Students (Tables 5, 6, 7, Fig. 5).
    "student_ssl_kd": Row("kd", "Student: SSL + KD (ActLumos)", teacher=DFF, ssl="ssl_spatiotemporal"),
    "student_ssl_only": Row("kd", "Student: SSL only (no KD)", (("loss.kd_weight", 0.0),),
                            ssl="ssl_spatiotemporal"),
    "student_kd_only": Row("kd", "Student (KD only; no SSL)", teacher=DFF, backbone_from=DFF),
    "student_ssl_spatial_kd": Row("kd", "SSL — spatial only", teacher=DFF, ssl="ssl_spatial"),
    "student_ssl_temporal_kd": Row("kd", "SSL — temporal only", teacher=DFF, ssl="ssl_temporal"),
    "student_from_dark_only": Row("kd", "Teacher—dark only", teacher="teacher_dark_only", ssl="ssl_spatiotemporal"),
    "student_from_retinex_only": Row("kd", "Teacher—retinex only", teacher="teacher_retinex_only",
                                     ssl="ssl_spatiotemporal"),
    "student_from_concat": Row("kd", "Teacher—static fusion", teacher="teacher_concat", ssl="ssl_spatiotemporal"),
    "student_ssl_other_kd": Row("kd", "SSL on the other dataset + KD", teacher=DFF, ssl="ssl_pool_other"),
    "student_ssl_combined_kd": Row("kd", "SSL on both datasets + KD", teacher=DFF, ssl="ssl_pool_combined"),
    # Baselines: DarkLight (dark + gamma 1.8, shared backbone, concatenation, CE) and DL-KDD
    # (a teacher on Zero-DCE-enhanced frames, distilled into a dark-only student without SSL).
    "teacher_darklight": Row("teacher", "DarkLight (dark + gamma, concat)",
                             (("model.fusion", "concat"), ("enhance", {"method": "gamma", "gamma": 1.8}),
                              *_BASELINE)),
    "zero_dce": Row("zero_dce", "Zero-DCE curves, trained on the dark training frames"),
    "teacher_dlkdd": Row("teacher", "DL-KDD teacher (Zero-DCE frames)", (("model.fusion", "retinex_only"),
                                                                         *_BASELINE), zero_dce="zero_dce"),
    "student_dlkdd": Row("kd", "DL-KDD student (dark)", teacher="teacher_dlkdd", backbone_from="teacher_dlkdd"),
}

_RECIPES = {"teacher": teacher.get_config, "ssl": ssl_student.get_config, "kd": kd_student.get_config}
# Zero-DCE's official recipe is 256x256 frames, batch 8, Adam 1e-4; the CPU size trains on small frames briefly.
_ZERO_DCE = {"tiny": dict(steps=300, size=64, batch_size=8, frames_per_clip=2, lr=1e-4),
             "paper": dict(steps=2000, size=256, batch_size=8, frames_per_clip=2, lr=1e-4)}


def depends_on(name: str) -> list[str]:
    """The rows ``name`` reads, in the order they must be trained, itself last."""
    row = ROWS[name]
    order: list[str] = []
    for dep in (row.zero_dce, row.backbone_from, row.teacher, row.ssl):
        for d in depends_on(dep) if dep else ():
            if d not in order:
                order.append(d)
    return order + [name]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    extra, rest = {}, []
    for item in filter(None, (arg or "").split(",")):
        key = item.partition("=")[0]
        (extra.__setitem__(key, item.partition("=")[2]) if key in ("row", "runs", "ig65m") else rest.append(item))
    name, runs = extra.get("row", ""), Path(extra.get("runs", "") or ".")
    if name not in ROWS:
        raise InputError(f"config arg row={name!r} is not a row; rows: {', '.join(ROWS)}")
    row, base_arg = ROWS[name], ",".join(rest)
    size = base.size_of(base_arg)

    if row.stage == "zero_dce":
        c = base.get_config(base_arg)
        c.stage = "zero_dce"
        c.zero_dce = _ZERO_DCE[size]
        return c
    c = _RECIPES[row.stage](base_arg)
    for key in ("pipeline", "prerequisites"):  # a row is one stage; bench.reproduce trains what it builds on
        if key in c:
            del c[key]
    for key, value in row.changes:
        node, *path = c, *key.split(".")
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
    if row.zero_dce:
        c.enhance = ml_collections.ConfigDict({"method": "zero_dce",
                                               "zero_dce_weights": str(runs / row.zero_dce / "zero_dce.npz")})
    if row.teacher:
        c.kd.teacher_workdir = str(runs / row.teacher)
    if row.ssl:
        c.init.student_workdir = str(runs / row.ssl)
    if size == "paper":
        if not row.ssl:  # an SSL start carries the IG-65M backbone already
            c.init.backbone_checkpoint = extra.get("ig65m", "")
    elif row.backbone_from:
        c.init.backbone_from_teacher = str(runs / row.backbone_from)
    return c
