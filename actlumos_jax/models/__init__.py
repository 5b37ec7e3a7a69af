"""ActLumos model zoo: R(2+1)D backbone, temporal encoder, stream fusion, teacher and student."""

from actlumos_jax.models.actlumos import (
    FUSIONS,
    STREAM_NORMS,
    Student,
    StudentOutput,
    Teacher,
    TeacherOutput,
    build_model,
    default_model_config,
    inference_parameter_count,
    load_pretrained_backbone,
)
from actlumos_jax.models.encoder import ReferenceLayerNorm, TemporalEncoder
from actlumos_jax.models.fusion import ConcatFusion, SingleStream, SpatiotemporalDFF, TemporalDFF
from actlumos_jax.models.r2plus1d import R2Plus1D, R2Plus1DSpec, parameter_count

__all__ = [
    "FUSIONS", "STREAM_NORMS", "R2Plus1D", "R2Plus1DSpec", "parameter_count",
    "TemporalEncoder", "ReferenceLayerNorm",
    "TemporalDFF", "SpatiotemporalDFF", "ConcatFusion", "SingleStream",
    "Teacher", "TeacherOutput", "Student", "StudentOutput",
    "build_model", "default_model_config", "inference_parameter_count", "load_pretrained_backbone",
]
