"""Will this artifact run where it is asked to? A pre-deployment lint per target.

Targets and what is checked:

* ``gpu`` (TFLite GPU delegate): every op in the delegate's supported list; LiteRT's own
  ``ModelAnalyzer(..., gpu_compatibility=True)`` as a second source (its warnings become
  findings); tensor rank <= 4; dynamic H x W (the delegate compiles for one shape).
* ``nnapi`` (Android NNAPI): rank <= 4; per-channel int8 weights need feature level 29
  (Android 10); NNAPI is deprecated from Android 15 (always reported, as a warning); float
  islands inside an int8 graph (an NPU then splits the graph and round-trips to the CPU).
* ``xnnpack`` (CPU): ops XNNPACK takes for int8/fp32; rank <= 4 (the delegate's limit for
  most ops) and float islands (they run outside the delegate).
* ``coreml-ane`` (``.mlpackage``): fp32 compute (error: the ANE computes fp16 only), rank > 5
  (error), MIL ops outside a conservative list of ANE ops (warning: they may fall back to the
  GPU/CPU), flexible (RangeDim) shapes (warning).
* ``executorch-xnnpack`` (``.pte``): what the partitioner left outside the XNNPACK delegate,
  read from the program's instructions (:func:`edgesr.converters.executorch.lint_findings`).

Each finding is ``{"severity": "error" | "warning" | "info", "check", "message", "op"}``;
``error`` means the part would not run on the target (the CLI then exits 1).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from edgesr.converters import executorch as et
from edgesr.converters.mil_interpreter import load_program
from edgesr.quantization.integer_ref import read_model

from edgesr.core.errors import EdgesrError

TARGETS = ("gpu", "nnapi", "xnnpack", "coreml-ane", "executorch-xnnpack")

# TFLite GPU delegate (tensorflow/lite/delegates/gpu/common/model_builder.cc), builtin ops.
GPU_OPS = frozenset("""ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D COS CUMSUM DENSIFY
DEPTH_TO_SPACE DEPTHWISE_CONV_2D DEQUANTIZE DIV ELU EQUAL EXP FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED
GATHER GREATER GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGISTIC MAX_POOL_2D
MAXIMUM MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL ONE_HOT PACK PAD PADV2 POW PRELU QUANTIZE REDUCE_MAX
REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT
SELECT_V2 SIN SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE
SUB SUM TANH TILE TRANSPOSE TRANSPOSE_CONV""".split())

# NNAPI delegate (nnapi_delegate.cc Validate), the ops edgesr-like graphs use.
NNAPI_OPS = frozenset("""ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTH_TO_SPACE DEPTHWISE_CONV_2D
DEQUANTIZE DIV FULLY_CONNECTED HARD_SWISH LOGISTIC MAX_POOL_2D MAXIMUM MEAN MINIMUM MUL PAD PRELU
QUANTIZE REDUCE_MAX REDUCE_MIN RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR
SOFTMAX SPACE_TO_DEPTH SPLIT SQUEEZE STRIDED_SLICE SUB SUM TANH TRANSPOSE TRANSPOSE_CONV""".split())

# XNNPACK delegate (xnnpack_delegate.cc), ops it takes in fp32 and/or signed int8.
XNNPACK_OPS = frozenset("""ABS ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTH_TO_SPACE DEPTHWISE_CONV_2D
DEQUANTIZE DIV ELU FULLY_CONNECTED HARD_SWISH LEAKY_RELU LOGISTIC MAX_POOL_2D MAXIMUM MEAN MINIMUM MUL
PAD PRELU QUANTIZE RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR SLICE SOFTMAX SPACE_TO_DEPTH SPLIT
SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM TANH TRANSPOSE TRANSPOSE_CONV""".split())

# MIL ops known to run on the Neural Engine (Apple publishes no list: a conservative set from
# coremltools' ANE-friendly ops; anything else is a warning, not an error).
ANE_MIL_OPS = frozenset("""add sub mul real_div maximum minimum conv conv_transpose linear matmul relu exp
prelu leaky_relu clip sigmoid tanh softmax concat pixel_shuffle pixel_unshuffle space_to_depth
depth_to_space reshape transpose squeeze expand_dims slice_by_index slice_by_size split tile pad
avg_pool max_pool upsample_nearest_neighbor upsample_bilinear reduce_mean reduce_sum reduce_max
reduce_min batch_norm instance_norm layer_norm const constexpr_affine_dequantize constexpr_blockwise_shift_scale
constexpr_lut_to_dense quantize dequantize cast identity""".split())


@dataclass
class Finding:
    severity: str
    check: str
    message: str
    op: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def lint(path: str | os.PathLike, target: str) -> list[Finding]:
    """Check the artifact at ``path`` against ``target`` (one of :data:`TARGETS`).

    Raises:
        EdgesrError: missing file, unknown target, or a target that does not fit the format
        (``coreml-ane`` for ``.tflite``, a TFLite target for ``.mlpackage``).
    """
    path = Path(path)
    if target not in TARGETS:
        raise EdgesrError(f"unknown lint target {target!r}; expected one of {', '.join(TARGETS)}")
    if not path.exists():
        raise EdgesrError(f"{path}: no such artifact")
    if (path.suffix == ".pte") != (target == "executorch-xnnpack"):
        raise EdgesrError(f"{path}: target executorch-xnnpack is for .pte programs (and a .pte takes no other target)")
    if path.suffix == ".pte":
        return [Finding(**f) for f in et.lint_findings(path)]
    if path.suffix == ".tflite":
        if target == "coreml-ane":
            raise EdgesrError(f"{path}: target coreml-ane needs a .mlpackage")
        return _lint_tflite(path, target)
    if path.suffix == ".mlpackage":
        if target != "coreml-ane":
            raise EdgesrError(f"{path}: a Core ML package is linted with --target coreml-ane")
        return _lint_coreml(path)
    raise EdgesrError(f"{path}: lint supports .tflite, .mlpackage and .pte artifacts")


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


# --------------------------------------------------------------------------- TFLite


def _lint_tflite(path: Path, target: str) -> list[Finding]:
    import numpy as np


    tensors, ops, inputs, outputs = read_model(path)
    out: list[Finding] = []
    supported = {"gpu": GPU_OPS, "nnapi": NNAPI_OPS, "xnnpack": XNNPACK_OPS}[target]
    fallback = "falls back to the CPU" if target != "xnnpack" else "runs on TFLite's own CPU kernels"
    for k, op in enumerate(ops):
        where = f"op #{k} {op.name}"
        if op.name not in supported:
            out.append(Finding("error" if target != "xnnpack" else "warning", "op-coverage",
                               f"{where} is not supported by the {target} delegate; it {fallback}", op.name))
        ranks = [len(tensors[i].shape) for i in op.inputs + op.outputs if i >= 0]
        if ranks and max(ranks) > 4:
            out.append(Finding("error" if target != "xnnpack" else "warning", "rank",
                               f"{where} uses a rank-{max(ranks)} tensor; the {target} delegate accepts rank <= 4 "
                               "(make pixel shuffle a native DEPTH_TO_SPACE)", op.name))
    int8_graph = any(t.dtype is np.int8 and t.data is None for t in tensors)
    if int8_graph:
        edge = set(inputs) | set(outputs)
        for k, op in enumerate(ops):
            if op.name in ("QUANTIZE", "DEQUANTIZE") and (set(op.inputs) & edge or set(op.outputs) & edge):
                continue
            floats = [tensors[i].name for i in op.inputs + op.outputs if i >= 0 and tensors[i].dtype is np.float32 and tensors[i].data is None]
            if floats or op.name == "DEQUANTIZE":
                out.append(Finding("error" if target == "nnapi" else "warning", "float-island",
                                   f"op #{k} {op.name} computes in float inside an int8 graph ({', '.join(floats[:2]) or 'dequantized'}); "
                                   "an int8-only accelerator splits the graph here", op.name))
    dynamic = [tensors[i].name for i in inputs if any(d == -1 for d in tensors[i].shape[1:3])]
    if dynamic and target in ("gpu", "nnapi"):
        out.append(Finding("warning", "dynamic-shape",
                           f"input {dynamic[0]!r} has dynamic H x W; the {target} delegate is prepared for one shape: "
                           "call resize_tensor_input before applying the delegate (re-apply per size)"))
    if target == "nnapi":
        per_channel = [op.name for op in ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")
                       and len(tensors[op.inputs[1]].scale) > 1]
        if per_channel:
            out.append(Finding("info", "nnapi-feature-level",
                               f"{len(per_channel)} conv(s) use per-channel int8 weights: needs NNAPI feature level 29 "
                               "(Android 10); older devices run them on the CPU"))
        out.append(Finding("warning", "nnapi-deprecated",
                           "NNAPI is deprecated from Android 15: prefer the GPU delegate or a vendor delegate "
                           "(e.g. QNN) for new apps"))
    if target == "gpu":
        out.extend(_gpu_analyzer(path))
    return out


def _gpu_analyzer(path: Path) -> list[Finding]:
    """LiteRT's ModelAnalyzer with gpu_compatibility=True: its warnings as findings."""
    try:
        from ai_edge_litert import _pywrap_analyzer_wrapper as analyzer
    except ImportError:  # pragma: no cover - part of ai-edge-litert
        return [Finding("info", "gpu-analyzer", "LiteRT's ModelAnalyzer is unavailable; op list check only")]
    text = analyzer.ModelAnalyzer(str(path), True, True)
    found = [line.strip() for line in text.splitlines() if "GPU COMPATIBILITY WARNING" in line]
    return [Finding("error", "gpu-analyzer", f"ModelAnalyzer: {line}") for line in dict.fromkeys(found)]


# --------------------------------------------------------------------------- Core ML


def _lint_coreml(path: Path) -> list[Finding]:
    prog = load_program(path)
    out: list[Finding] = []
    for op in prog.ops:
        if op.type not in ANE_MIL_OPS:
            out.append(Finding("warning", "op-coverage", f"MIL op {op.type} ({op.name}) is not among the ops known to run "
                               "on the Neural Engine; Core ML may place it (and split the graph) on the GPU/CPU", op.type))
    if prog.compute_precision == "fp32":
        out.append(Finding("error", "precision", "the program computes in fp32; the Neural Engine computes fp16 only "
                           "(export with compute_precision FLOAT16)"))
    if prog.flexible_inputs:
        out.append(Finding("warning", "dynamic-shape", f"inputs {', '.join(prog.flexible_inputs)} have flexible (RangeDim) "
                           "shapes; the ANE is used for enumerated or fixed shapes, flexible ones often run on the GPU"))
    if prog.max_rank > 5:
        out.append(Finding("error", "rank", f"a rank-{prog.max_rank} tensor; the Neural Engine handles rank <= 5"))
    return out
