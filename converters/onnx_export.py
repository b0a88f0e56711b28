"""PyTorch deploy module -> ONNX (``torch.onnx.export``, dynamo exporter), simplified with onnxsim.

Input ``input`` float32 (1, C, H, W) NCHW with dynamic H and W (or, with ``input_size``, static
H and W: every dimension of every tensor is a number), output ``output`` float32
(1, C, s*H, s*W), values in [0, 1]. The artifact's metadata (contract + provenance, see
:mod:`edgesr.converters.metadata`) is stored in ``metadata_props["edgesr"]``.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import torch

from edgesr.core.atomic import atomic_path
from edgesr.core.contract import KEY, metadata_text
from edgesr.core.errors import EdgesrError

OPSET = 18


def export(module, channels: int, path: str | os.PathLike, meta: dict,
           input_size: tuple[int, int] | None = None) -> Path:
    """Export ``module`` to ``path`` (written atomically); returns the path.

    ``input_size``: ``(H, W)`` LR pixels for a static input shape (1, C, H, W); None: dynamic
    H and W.

    Raises:
        EdgesrError: the exporter or the simplifier fails (message names the stage).
    """
    import onnx
    import onnxsim

    module = module.eval()
    hw = (24, 28) if input_size is None else tuple(int(v) for v in input_size)
    x = torch.rand(1, channels, *hw, generator=torch.Generator().manual_seed(0))
    dims = {"x": {2: torch.export.Dim("height", min=2), 3: torch.export.Dim("width", min=2)}}
    dynamic = None if input_size is not None else _dynamic_shapes(module, dims)
    with tempfile.TemporaryDirectory() as tmpdir:
        raw = Path(tmpdir) / "raw.onnx"
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (x,), str(raw), dynamo=True, opset_version=OPSET,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_shapes=dynamic, external_data=False)
        except Exception as exc:  # the exporter raises many types
            raise EdgesrError(f"ONNX export failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}") from None
        model = onnx.load(str(raw))
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise EdgesrError("onnxsim could not verify the simplified ONNX model")
    onnx.helper.set_model_props(simplified, {KEY: metadata_text(meta)})
    onnx.checker.check_model(simplified)
    with atomic_path(path) as tmp:
        onnx.save(simplified, str(tmp))
    return Path(path)


def _dynamic_shapes(module, dims):
    """``dynamic_shapes`` keyed by the forward's first parameter name (``x`` in edgesr models)."""
    import inspect

    first = next(iter(inspect.signature(module.forward).parameters))
    return {first: dims["x"]}
