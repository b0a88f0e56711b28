"""Core ML numerics on Linux: a NumPy interpreter for the MIL program inside a ``.mlpackage``.

coremltools cannot run ``MLModel.predict`` off macOS. This module reads the package's model
spec (``ct.models.MLModel(path, skip_model_load=True).get_spec()``: the ``mlProgram``
protobuf), loads weights from ``weights/weight.bin`` through coremltools' blob reader at each
``BlobFileValue`` offset, and evaluates the ops of the main function's block in order.

Precision (``precision=``):

* ``"fp16"``: every value the program types as fp16 is rounded to fp16 after its op (inputs,
  weights and each op output), arithmetic inside an op in fp32; this is how Core ML's GPU
  and Neural Engine store activations (their internal accumulation order differs, so
  compare within an fp16 tolerance, not bit for bit);
* ``"fp32"``: the same graph with every fp16 value kept in fp32 (weights are the stored fp16
  values, widened): isolates the activation-rounding error from the weight rounding.

Tensors are NCHW like the PyTorch source. ``MILUpscaler(path)`` is an
:class:`edgesr.core.evaluate.Upscaler`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgesr.core.contract import IOContract, contract_of, parse
from edgesr.core.errors import EdgesrError
from edgesr.core.thirdparty import block_triton_after_tensorflow

_DTYPES = {1: np.bool_, 10: np.float16, 11: np.float32, 12: np.float64, 21: np.int8, 22: np.int16, 23: np.int32,
           24: np.int64, 31: np.uint8, 32: np.uint16, 33: np.uint32}


@dataclass
class MILOp:
    type: str
    name: str
    inputs: dict  # name -> list of ("ref", var name) | ("value", ndarray)
    outputs: list  # [(name, numpy dtype or None, rank)]
    attributes: dict = field(default_factory=dict)


@dataclass
class Program:
    """The main function of an ML program: inputs, ops, outputs and a few facts for lint."""

    inputs: list  # [(name, dtype, shape with -1 for flexible dims)]
    ops: list
    outputs: list
    flexible_inputs: list  # names of inputs with range-flexible (RangeDim) dims; enumerated shapes are not
    max_rank: int
    compute_precision: str
    metadata: dict
    weights: Path | None = None


def _blob_reader(path: Path):
    block_triton_after_tensorflow()
    from coremltools.libmilstoragepython import _BlobStorageReader

    return _BlobStorageReader(str(path))


def _value(v, weights_dir: Path, readers: dict):
    """A MIL ``Value`` proto -> NumPy array (immediate or from the weight blob)."""
    tt = v.type.tensorType
    dtype = _DTYPES.get(tt.dataType)
    shape = [d.constant.size for d in tt.dimensions] if tt.rank > 0 else []
    if v.HasField("blobFileValue"):
        fname = v.blobFileValue.fileName.replace("@model_path/weights/", "")
        path = weights_dir / fname
        if path not in readers:
            readers[path] = _blob_reader(path)
        r, off = readers[path], v.blobFileValue.offset
        read = {np.float16: r.read_fp16_data, np.float32: r.read_float_data, np.int8: r.read_int8_data,
                np.uint8: r.read_uint8_data, np.int32: r.read_int32_data}.get(dtype)
        if read is None:
            raise EdgesrError(f"{weights_dir}: weight blob of MIL dtype {tt.dataType} is not supported")
        arr = np.asarray(read(off))
        return (arr.view(np.float16) if dtype is np.float16 else arr.astype(dtype)).reshape(shape)
    if not v.HasField("immediateValue"):
        raise EdgesrError("MIL value without data")
    if v.type.HasField("listType"):
        raise EdgesrError("MIL list values are not supported")
    t = v.immediateValue.tensor
    kind = t.WhichOneof("value")
    if kind is None:
        return np.zeros(shape, dtype=dtype or np.float32)
    if kind == "bytes":
        arr = np.frombuffer(t.bytes.values, dtype=dtype).copy()
    elif kind == "strings":
        return t.strings.values[0] if not shape else list(t.strings.values)
    else:
        arr = np.asarray(list(getattr(t, kind).values))
        arr = arr.astype(dtype) if dtype is not None else arr
    return arr.reshape(shape) if shape else (arr.reshape(()) if arr.size == 1 else arr)


def load_program(path: str | os.PathLike) -> Program:
    """Parse a ``.mlpackage`` (ML program) into a :class:`Program`.

    Raises:
        EdgesrError: missing package, a neural-network (non-ML-program) model, or an
        unreadable spec.
    """
    path = Path(path)
    if not path.exists():
        raise EdgesrError(f"{path}: no such Core ML package")
    try:
        block_triton_after_tensorflow()
        import coremltools as ct

        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:
        raise EdgesrError(f"{path}: unreadable Core ML package ({type(exc).__name__}: {exc})") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise EdgesrError(f"{path}: not an ML program (convert with convert_to='mlprogram')")
    fn = spec.mlProgram.functions["main"]
    block = fn.block_specializations[fn.opset]
    weights_dir = path / "Data" / "com.apple.CoreML" / "weights"
    readers: dict = {}
    inputs, flexible, max_rank, any_fp16 = [], [], 0, False
    enumerated = {i.name for i in spec.description.input if i.type.multiArrayType.enumeratedShapes.shapes}
    for inp in fn.inputs:
        tt = inp.type.tensorType
        shape = [d.constant.size if d.HasField("constant") else -1 for d in tt.dimensions]
        inputs.append((inp.name, _DTYPES.get(tt.dataType), shape))
        if -1 in shape and inp.name not in enumerated:  # EnumeratedShapes: symbolic in MIL, a finite set
            flexible.append(inp.name)
    ops = []
    for op in block.operations:
        ins = {}
        for k, arg in op.inputs.items():
            ins[k] = [("ref", a.name) if a.name else ("value", _value(a.value, weights_dir, readers)) for a in arg.arguments]
        attrs = {k: _value(v, weights_dir, readers) for k, v in op.attributes.items() if k not in ("name",)}
        outs = []
        for o in op.outputs:
            tt = o.type.tensorType
            outs.append((o.name, _DTYPES.get(tt.dataType), tt.rank))
            max_rank = max(max_rank, tt.rank)
            any_fp16 |= tt.dataType == 10 and op.type != "const"
        ops.append(MILOp(op.type, outs[0][0] if outs else op.type, ins, outs, attrs))
    meta = dict(spec.description.metadata.userDefined)
    return Program(inputs, ops, list(block.outputs), flexible, max_rank, "fp16" if any_fp16 else "fp32", meta, weights_dir)


# --------------------------------------------------------------------------- kernels (fp32 math)


def _f(x):
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype.kind == "f" else x


def _per_axis(v, axis, ndim):
    """A per-channel parameter (1-D) shaped to broadcast along ``axis`` of an ``ndim`` tensor."""
    v = np.asarray(v)
    if v.ndim == 1 and ndim > 1:
        shape = [1] * ndim
        shape[int(axis)] = -1
        return v.reshape(shape)
    return v


def _conv(a):
    import torch
    import torch.nn.functional as F

    x, w = _f(a("x")), _f(a("weight"))
    strides = [int(s) for s in np.atleast_1d(a("strides", [1, 1]))]
    dil = [int(d) for d in np.atleast_1d(a("dilations", [1, 1]))]
    groups = int(a("groups", 1))
    pad_type = a("pad_type", "valid")
    kh, kw = (w.shape[2] - 1) * dil[0] + 1, (w.shape[3] - 1) * dil[1] + 1
    if pad_type == "custom":
        t, b, l, r = [int(p) for p in np.atleast_1d(a("pad"))]
    elif pad_type in ("same", "same_lower"):
        pads = []
        for size, k, s in ((x.shape[2], kh, strides[0]), (x.shape[3], kw, strides[1])):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            lo = total // 2 if pad_type == "same" else (total + 1) // 2
            pads += [lo, total - lo]
        t, b, l, r = pads
    else:
        t = b = l = r = 0
    xt = F.pad(torch.from_numpy(np.ascontiguousarray(x)), (l, r, t, b))
    bias = a("bias")
    y = F.conv2d(xt, torch.from_numpy(np.ascontiguousarray(w)), None if bias is None else torch.from_numpy(_f(bias)),
                 stride=strides, dilation=dil, groups=groups)
    return y.numpy()


def _pixel_shuffle(x, r):
    n, c, h, w = x.shape
    return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


def _slice_by_index(a):
    x = a("x")
    begin, end = np.atleast_1d(a("begin")), np.atleast_1d(a("end"))
    stride = np.atleast_1d(a("stride", np.ones_like(begin)))
    bm = np.atleast_1d(a("begin_mask", np.zeros_like(begin, bool)))
    em = np.atleast_1d(a("end_mask", np.zeros_like(begin, bool)))
    sq = np.atleast_1d(a("squeeze_mask", np.zeros_like(begin, bool)))
    idx = tuple(slice(None if bm[i] else int(begin[i]), None if em[i] else int(end[i]), int(stride[i])) for i in range(len(begin)))
    y = x[idx]
    axes = tuple(i for i in range(len(sq)) if sq[i])
    return y.squeeze(axes) if axes else y


def _affine_dequantize(a):
    q = np.asarray(a("quantized_data")).astype(np.float32)
    axis = int(a("axis", 0))
    zp = _per_axis(np.asarray(a("zero_point")).astype(np.float32), axis, q.ndim)
    return (q - zp) * _per_axis(_f(a("scale")), axis, q.ndim)


def _quantize(a):
    x = _f(a("input"))
    axis = a("axis")
    scale = _per_axis(_f(a("scale")), 0 if axis is None else axis, x.ndim)
    zp = a("zero_point")
    dt = {"int8": np.int8, "uint8": np.uint8}[str(a("output_dtype", "int8"))]
    info = np.iinfo(dt)
    zp = 0 if zp is None else _per_axis(np.asarray(zp, np.float32), 0 if axis is None else axis, x.ndim)
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dt)


def _dequantize(a):
    x = np.asarray(a("input")).astype(np.float32)
    axis = a("axis")
    zp = a("zero_point")
    zp = 0 if zp is None else _per_axis(np.asarray(zp, np.float32), 0 if axis is None else axis, x.ndim)
    return (x - zp) * _per_axis(_f(a("scale")), 0 if axis is None else axis, x.ndim)


def _reduce(fn):
    return lambda a: fn(_f(a("x")), axis=None if a("axes") is None else tuple(int(v) for v in np.atleast_1d(a("axes"))),
                        keepdims=bool(a("keep_dims", False)))


def _softmax(a):
    x = _f(a("x"))
    ax = int(a("axis", -1))
    e = np.exp(x - x.max(axis=ax, keepdims=True))
    return e / e.sum(axis=ax, keepdims=True)


_CAST = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}

KERNELS = {
    "conv": _conv,
    "add": lambda a: _f(a("x")) + _f(a("y")),
    "sub": lambda a: _f(a("x")) - _f(a("y")),
    "mul": lambda a: _f(a("x")) * _f(a("y")),
    "real_div": lambda a: _f(a("x")) / _f(a("y")),
    "maximum": lambda a: np.maximum(_f(a("x")), _f(a("y"))),
    "minimum": lambda a: np.minimum(_f(a("x")), _f(a("y"))),
    "relu": lambda a: np.maximum(_f(a("x")), 0),
    "leaky_relu": lambda a: np.where(_f(a("x")) >= 0, _f(a("x")), _f(a("x")) * np.float32(a("alpha", 0.01))),
    "prelu": lambda a: np.where(_f(a("x")) >= 0, _f(a("x")), _f(a("x")) * _per_axis(_f(a("alpha")), 1, a("x").ndim)),
    "clip": lambda a: np.minimum(np.maximum(_f(a("x")), np.float32(a("alpha"))), np.float32(a("beta"))),
    "sigmoid": lambda a: 1 / (1 + np.exp(-_f(a("x")))),
    "silu": lambda a: _f(a("x")) / (1 + np.exp(-_f(a("x")))),
    "tanh": lambda a: np.tanh(_f(a("x"))),
    "exp": lambda a: np.exp(_f(a("x"))),
    "softmax": _softmax,
    "pixel_shuffle": lambda a: _pixel_shuffle(a("x"), int(a("upscale_factor"))),
    "concat": lambda a: np.concatenate([_f(v) for v in a("values", many=True)], axis=int(a("axis"))),
    "slice_by_index": _slice_by_index,
    "tile": lambda a: np.tile(a("x"), [int(r) for r in np.atleast_1d(a("reps"))]),
    "reshape": lambda a: np.reshape(a("x"), [int(s) for s in np.atleast_1d(a("shape"))]),
    "transpose": lambda a: np.transpose(a("x"), [int(p) for p in np.atleast_1d(a("perm"))]),
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max),
    "reduce_min": _reduce(np.min),
    "cast": lambda a: np.asarray(a("x")).astype(_CAST[str(a("dtype"))]),
    "identity": lambda a: a("x"),
    "constexpr_affine_dequantize": _affine_dequantize,
    "quantize": _quantize,
    "dequantize": _dequantize,
}


# --------------------------------------------------------------------------- evaluation


def run_program(prog: Program, feeds: dict, precision: str = "fp16") -> dict:
    """Evaluate ``prog`` on ``feeds`` ({input name: array}); returns {output name: array}.

    Raises:
        EdgesrError: an unknown ``precision``, a missing input, or an op without a kernel.
    """
    if precision not in ("fp16", "fp32"):
        raise EdgesrError(f"precision must be 'fp16' or 'fp32', got {precision!r}")

    def store(v, dtype):
        v = np.asarray(v)
        if dtype is np.float16 or (dtype is None and v.dtype == np.float16):
            return v.astype(np.float16 if precision == "fp16" else np.float32)
        return v.astype(dtype) if dtype is not None else v

    env = {}
    for name, dtype, _ in prog.inputs:
        if name not in feeds:
            raise EdgesrError(f"Core ML program input {name!r} not given")
        env[name] = store(np.asarray(feeds[name], np.float32), dtype)
    for op in prog.ops:
        if op.type == "const":
            env[op.outputs[0][0]] = store(op.attributes["val"], op.outputs[0][1])
            continue
        kernel = KERNELS.get(op.type)
        if kernel is None:
            raise EdgesrError(f"MIL op {op.type!r} ({op.name}) has no kernel in the Linux interpreter")

        def a(key, default=None, many=False, _op=op):
            items = _op.inputs.get(key)
            if items is None:
                return _op.attributes.get(key, default)
            vals = [env[ref] if kind == "ref" else ref for kind, ref in items]
            return vals if many else vals[0]

        env[op.outputs[0][0]] = store(kernel(a), op.outputs[0][1])
    return {name: env[name] for name in prog.outputs}


class MILUpscaler:
    """A ``.mlpackage`` evaluated by :func:`run_program`, as an :class:`edgesr.core.evaluate.Upscaler`.

    ``__call__(x)``: float32 (N, C, h, w) -> float32 (N, C, s*h, s*w) (first program output).
    The contract comes from the package's ``user_defined_metadata["edgesr"]`` (see
    :mod:`edgesr.converters.metadata`), else from the tensors (1 channel: Y; scale from a probe).
    """

    def __init__(self, path: str | os.PathLike, precision: str = "fp16", contract=None):
        if precision not in ("fp16", "fp32"):
            raise EdgesrError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
        self.path = Path(path)
        self.precision = precision
        self.program = load_program(path)
        self.input_name = self.program.inputs[0][0]
        self.contract = contract if contract is not None else self._contract()

    def _contract(self):
        text = self.program.metadata.get("edgesr")
        if text:
            return contract_of(parse(text, str(self.path)))
        c = self.program.inputs[0][2][1]
        lo = 8
        y = self._run(np.zeros((1, c, lo, lo), np.float32))
        return IOContract(scale=y.shape[2] // lo, color="y" if c == 1 else "rgb", channels=c)

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = run_program(self.program, {self.input_name: x}, self.precision)
        return np.asarray(out[self.program.outputs[0]], np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._run(np.asarray(x, np.float32))


def describe(path: str | os.PathLike) -> str:
    """A one-line JSON summary of the program (ops histogram, precision, flexible inputs)."""
    prog = load_program(path)
    hist: dict = {}
    for op in prog.ops:
        hist[op.type] = hist.get(op.type, 0) + 1
    return json.dumps({"ops": hist, "compute_precision": prog.compute_precision, "flexible_inputs": prog.flexible_inputs})
