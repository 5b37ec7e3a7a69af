"""The training stages, one module each; every module in this package registers its ``Stage``."""

import importlib
import pkgutil

from actlumos_jax.train.stages.base import REGISTRY, Stage, make_stage, model_input, teacher_streams, valid_mask

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

NAMES = tuple(REGISTRY)

__all__ = ["NAMES", "REGISTRY", "Stage", "make_stage", "model_input", "teacher_streams", "valid_mask"]
