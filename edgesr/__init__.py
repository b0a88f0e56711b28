"""edgesr: super-resolution for phones. Train, collapse, quantize, export and validate.

The public API (see :mod:`edgesr.api`; loaded on first use, so ``import edgesr`` is instant
and prints nothing)::

    edgesr.create(name, scale)              a registered model (nn.Module with .contract)
    edgesr.train(name, scale, data=..., out=..., steps=...)      -> checkpoint path
    edgesr.collapse(model_or_checkpoint)    -> deploy nn.Module (plain convs), checked
    edgesr.quantize(model_or_checkpoint, calibration=...)        -> QuantizedCheckpoint
    edgesr.export(model, out_dir, formats, precisions)           -> [{format, precision, path, bytes}]
    edgesr.validate(artifact, reference, sets=..., data_root=...) -> validation dict
    edgesr.open_artifact(path)              -> Upscaler: float32 (N, C, h, w) -> (N, C, s*h, s*w)

The layers below it: :mod:`edgesr.core` (models, protocol, data, training), the stages
:mod:`edgesr.quantization`, :mod:`edgesr.converters`, :mod:`edgesr.lut_baking`, and
:mod:`edgesr.app` (pipeline, validation, reports).
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"
__all__ = ["collapse", "create", "export", "open_artifact", "quantize", "train", "validate"]


def __getattr__(name: str):
    if name in __all__:
        from edgesr.core.thirdparty import quiet_third_party

        quiet_third_party()
        return getattr(importlib.import_module("edgesr.api"), name)
    raise AttributeError(f"module 'edgesr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
