"""The I/O contract of a model or artifact: what it consumes and produces.

Every model carries one as ``model.contract``; every exported artifact carries it inside the
file (TFLite metadata buffer, ONNX ``metadata_props``, Core ML ``user_defined_metadata``,
the ``.lut`` bundle's header), so a model file copied alone into an app still says how to
feed it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgesr.core.errors import EdgesrError

Color = Literal["y", "luma_full", "rgb"]


@dataclass(frozen=True)
class IOContract:
    """What a deployed model consumes and produces (Qualcomm AI Hub's habit).

    Attributes:
        scale: upscaling factor s; output (N, C, s*H, s*W) for input (N, C, H, W).
        color: the colour space of the tensor:
            ``"y"``: BT.601 luma as MATLAB ``rgb2ycbcr`` computes it (16-235 studio range)
            divided by 255, so values lie in [16/255, 235/255] for natural images;
            ``"luma_full"``: full-range luma (PIL ``convert('L')`` weights 0.299/0.587/0.114,
            no offset) divided by 255, in [0, 1] (the eSR authors' convention);
            ``"rgb"``: R, G, B divided by 255, in [0, 1].
        channels: channels of the model's input tensor (1 for Y models).
        per_channel: for ``color == "rgb"`` with ``channels == 1``: the model is applied to
            each RGB channel separately (SR-LUT's convention).
        layout: tensor layout, always ``"NCHW"`` on the PyTorch side (TFLite artifacts are NHWC).
        dtype: ``"float32"`` for networks; LUT models document their integer path separately.
        value_range: input and output range; outputs are clipped to it at deployment.
    """

    scale: int
    color: Color = "y"
    channels: int = 1
    per_channel: bool = False
    layout: str = "NCHW"
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- artifact metadata

FORMAT = "edgesr-artifact"
"""The ``format`` field of every artifact's metadata JSON."""
KEY = "edgesr"
"""The key under which artifacts embed the metadata JSON (ONNX ``metadata_props``, Core ML
``user_defined_metadata``)."""


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def parse(text: str, where: str) -> dict:
    """Parse embedded/sidecar JSON text; EdgesrError naming ``where`` if it is not edgesr metadata."""
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgesrError(f"{where}: corrupt edgesr metadata ({exc.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "contract" not in meta:
        raise EdgesrError(f"{where}: not edgesr artifact metadata")
    return meta


def read_metadata(path: str | os.PathLike, embedded: str | None = None) -> dict:
    """The artifact's metadata: ``embedded`` JSON text if given, else the sidecar ``PATH.json``.

    Raises:
        EdgesrError: neither exists, or the JSON is not edgesr metadata.
    """
    if embedded is not None:
        return parse(embedded, str(path))
    side = sidecar_path(path)
    if not side.is_file():
        raise EdgesrError(f"{path}: no edgesr metadata (embedded or {side.name}); cannot tell the model's I/O contract")
    return parse(side.read_text(encoding="utf-8"), str(side))


def contract_of(meta: dict) -> IOContract:
    """The :class:`IOContract` stored in artifact metadata."""
    c = dict(meta["contract"])
    c["value_range"] = tuple(c.get("value_range", (0.0, 1.0)))
    try:
        return IOContract(**c)
    except TypeError as exc:
        raise EdgesrError(f"artifact contract has unknown fields ({exc})") from None
