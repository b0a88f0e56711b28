"""Subgraph 0 of a ``.tflite`` flatbuffer as plain Python: tensors (shape, dtype, per-tensor or
per-channel scale / zero point, constant data) and operators (builtin name, version, inputs,
outputs, the builtin options the integer kernels read).

Read with the ``tflite`` package (TFLite's schema bindings); no interpreter is involved. Used by
the integer reference (:mod:`edgesr.quantization.integer_ref`, whose ``read_model`` is this one, the
name the linter, the profiler and the golden vectors import).
Quantization is affine: ``real = scale * (q - zero_point)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgesr.core.errors import EdgesrError

_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16, 9: np.int8}
_ACT = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


@dataclass
class Tensor:
    """One flatbuffer tensor: ``shape`` uses -1 for dynamic dims; ``data`` for constants."""

    name: str
    shape: tuple
    dtype: type
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int
    data: np.ndarray | None = None

    @property
    def s(self) -> float:
        return float(self.scale[0])

    @property
    def z(self) -> int:
        return int(self.zero_point[0]) if len(self.zero_point) else 0


@dataclass
class Operator:
    name: str
    version: int
    inputs: list
    outputs: list
    options: dict = field(default_factory=dict)


def _builtin_names() -> dict:
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _options(op, name: str) -> dict:
    """The builtin options the kernels read, as a plain dict."""
    import tflite

    table = op.BuiltinOptions()
    if table is None:
        return {}
    cls = {
        "CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
        "ADD": tflite.AddOptions, "MUL": tflite.MulOptions, "SUB": tflite.SubOptions,
        "CONCATENATION": tflite.ConcatenationOptions, "DEPTH_TO_SPACE": tflite.DepthToSpaceOptions,
        "SOFTMAX": tflite.SoftmaxOptions, "MEAN": tflite.ReducerOptions, "SUM": tflite.ReducerOptions,
        "REDUCE_MAX": tflite.ReducerOptions, "RESHAPE": tflite.ReshapeOptions,
        "STRIDED_SLICE": tflite.StridedSliceOptions, "BATCH_MATMUL": tflite.BatchMatMulOptions,
        "SQUEEZE": tflite.SqueezeOptions,
    }.get(name)
    if cls is None:
        return {}
    o = cls()
    o.Init(table.Bytes, table.Pos)
    out = {}
    for key, getter in [("padding", "Padding"), ("stride_h", "StrideH"), ("stride_w", "StrideW"),
                        ("dilation_h", "DilationHFactor"), ("dilation_w", "DilationWFactor"),
                        ("activation", "FusedActivationFunction"), ("axis", "Axis"),
                        ("block_size", "BlockSize"), ("beta", "Beta"), ("keep_dims", "KeepDims"),
                        ("depth_multiplier", "DepthMultiplier"), ("begin_mask", "BeginMask"), ("end_mask", "EndMask"),
                        ("shrink_axis_mask", "ShrinkAxisMask"), ("ellipsis_mask", "EllipsisMask"),
                        ("new_axis_mask", "NewAxisMask"), ("offset", "Offset"), ("pot_scale_int16", "PotScaleInt16"),
                        ("adj_x", "AdjX"), ("adj_y", "AdjY")]:
        if hasattr(o, getter):
            out[key] = getattr(o, getter)()
    if name == "SQUEEZE":
        out["squeeze_dims"] = [int(v) for v in o.SqueezeDimsAsNumpy()] if not o.SqueezeDimsIsNone() else []
    if "activation" in out:
        out["activation"] = _ACT.get(out["activation"], str(out["activation"]))
    if "padding" in out:
        out["padding"] = "SAME" if out["padding"] == 0 else "VALID"
    return out


def read_model(path: str | os.PathLike) -> tuple[list[Tensor], list[Operator], list[int], list[int]]:
    """Parse subgraph 0 of a ``.tflite`` file: ``(tensors, operators, input ids, output ids)``.

    Raises:
        EdgesrError: missing or unparsable file.
    """
    import tflite

    path = Path(path)
    if not path.is_file():
        raise EdgesrError(f"{path}: no such TFLite model")
    buf = path.read_bytes()
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        sg = model.Subgraphs(0)
        names = _builtin_names()
        tensors = []
        for t in range(sg.TensorsLength()):
            tt = sg.Tensors(t)
            sig = tt.ShapeSignatureAsNumpy() if tt.ShapeSignatureLength() else tt.ShapeAsNumpy()
            q = tt.Quantization()
            scale = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else np.zeros(0, np.float32)
            zp = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else np.zeros(0, np.int64)
            dtype = _TYPES.get(tt.Type())
            data = None
            b = model.Buffers(tt.Buffer())
            if b is not None and b.DataLength() and dtype is not None:
                shape = tuple(int(v) for v in tt.ShapeAsNumpy()) if tt.ShapeLength() else ()  # a scalar has shape []
                nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                raw = b.DataAsNumpy().tobytes()
                if len(raw) < nbytes:
                    raise EdgesrError(f"{path}: tensor {tt.Name().decode()!r} needs {nbytes} bytes, its buffer has {len(raw)}")
                # LiteRT reads the first bytes of a longer buffer (TFLite's 16x8 quantizer can leave a
                # constant pointing at a wider buffer); so does this reader
                data = np.frombuffer(raw[:nbytes], dtype=dtype).reshape(shape)
            tensors.append(Tensor(tt.Name().decode(), tuple(int(v) for v in np.atleast_1d(sig)) if not isinstance(sig, int) else (),
                                  dtype, np.asarray(scale, np.float32), np.asarray(zp, np.int64),
                                  q.QuantizedDimension() if q is not None else 0, data))
        ops = []
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            oc = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "CUSTOM")
            ops.append(Operator(name, oc.Version(), [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else [],
                                [int(v) for v in op.OutputsAsNumpy()], _options(op, name)))
        inputs = [int(v) for v in sg.InputsAsNumpy()]
        outputs = [int(v) for v in sg.OutputsAsNumpy()]
    except EdgesrError:
        raise
    except Exception as exc:
        raise EdgesrError(f"{path}: not a readable TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
    return tensors, ops, inputs, outputs
