"""Will this artifact run where it is asked to? A pre-deployment lint per target.

Targets and what is checked:

* ``gpu`` (TFLite GPU delegate): every op in the delegate's supported list; LiteRT's own
  ``ModelAnalyzer(..., gpu_compatibility=True)`` as a second source (its warnings become
  findings); tensor rank <= 4; dynamic H x W (the delegate compiles for one shape: the finding
  recommends ``edgesr export --input-size HxW``, :data:`FIXED_SHAPE_ADVICE`).
* ``nnapi`` (Android NNAPI): rank <= 4; per-channel int8 weights need feature level 29
  (Android 10); NNAPI is deprecated from Android 15 (always reported, as a warning); float
  islands inside an int8 graph (an NPU then splits the graph and round-trips to the CPU).
* ``xnnpack`` (CPU, LiteRT's default delegate): predicts exactly which nodes LiteRT 2.3's
  XNNPACK delegate takes (:func:`predict_xnnpack`: the op and tensor type, int8 scale-ratio
  limits, rank, per :func:`xnnpack_refusal`) and the partitions LiteRT forms from them; each
  op left on the builtin kernels is a warning with its reason, more than one partition a
  warning. ``tests/test_partitions.py`` checks the prediction against the runtime
  (:func:`edgesr.converters.partitions.xnnpack_partitions`) on every zoo export.
* ``coreml-ane`` (``.mlpackage``): fp32 compute (error: the ANE computes fp16 only), rank > 5
  (error), MIL ops outside a conservative list of ANE ops (warning: they may fall back to the
  GPU/CPU), flexible (RangeDim) shapes (warning).
* ``executorch-xnnpack`` (``.pte``): what the partitioner left outside the XNNPACK delegate,
  read from the program's instructions (:func:`edgesr.converters.executorch.lint_findings`).

Sources of the rules (what each delegate publishes; the GPU delegate, NNAPI and the Neural
Engine cannot run on this machine, so ``tests/test_lint.py`` keeps a recorded output of each
target's findings, ``tests/data/lint_recorded.json``, that a rule change must update):

* ``gpu``: :data:`GPU_OPS` from the TFLite GPU delegate's op parser table
  (tensorflow/lite/delegates/gpu/common/model_builder.cc, ``NewOperationParser``); rank <= 4
  from its tensor checks; plus the live ``ModelAnalyzer(gpu_compatibility=True)`` of the
  installed ai-edge-litert (2.3.0 when this was written), which applies the delegate's own
  ``CheckGpuDelegateCompatibility`` (tensorflow/lite/tools/versioning/gpu_compatibility.cc);
* ``nnapi``: :data:`NNAPI_OPS` from the NNAPI delegate's ``NNAPIDelegateKernel::Validate``
  (tensorflow/lite/delegates/nnapi/nnapi_delegate.cc); per-channel quantization from Android
  NNAPI feature level 29 (``ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL``, Android 10); the
  deprecation from the Android 15 NNAPI migration guide;
* ``xnnpack``: :data:`XNNPACK_TYPES` and :func:`xnnpack_refusal`, from LiteRT 2.3's
  xnnpack_delegate.cc and XNNPACK's operator checks, each measured (``tests/test_partitions.py``);
* ``coreml-ane``: Apple publishes no op list for the Neural Engine; :data:`ANE_MIL_OPS` is a
  conservative list of MIL ops (coremltools 8 MIL op set) known to run there, hence warnings
  only; fp16-only compute and rank <= 5 from Apple's Core ML performance guidance;
* dynamic input shapes, per target (:data:`FIXED_SHAPE_ADVICE`, each finding's ``source``):
  the GPU delegate registers with ``kTfLiteDelegateFlagsNone`` (no dynamic-tensor support) and
  builds its GPU program in the delegate kernel's ``Prepare`` from the shapes it is applied to
  (tensorflow/lite/delegates/gpu/delegate.cc); NNAPI compiles the model for the shapes at
  delegation, and dynamic dimensions without recompilation need
  ``StatefulNnApiDelegate::Options::allow_dynamic_dimensions`` (off by default, "may result in
  model being rejected by accelerator", tensorflow/lite/delegates/nnapi/nnapi_delegate.h);
  Core ML runs a range-flexible model on the Neural Engine only at its default shape (Apple's
  answer in developer.apple.com/forums/thread/724930), and coremltools' "Flexible Input Shapes"
  guide says "Use EnumeratedShapes for best performance"
  (apple.github.io/coremltools/docs-guides/source/flexible-inputs.html).

Each finding is ``{"severity": "error" | "warning" | "info", "check", "message", "op"}``;
``error`` means the part would not run on the target (the CLI then exits 1).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from edgesr.converters import executorch as et
from edgesr.converters.mil_interpreter import load_program
from edgesr.converters.partitions import partition
from edgesr.converters.partitions import report as partition_report
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

# XNNPACK delegate of LiteRT 2.3 (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc, the
# Visit*Node checks; XNNPACK's own operator checks, e.g. src/operators/binary-elementwise-nd.c).
# Op -> the tensor types it takes: "f32" (float32 tensors, fp16 weights through DEQUANTIZE)
# and/or "q8" (signed int8, per-tensor activations, per-channel weights). Each entry was also
# measured on LiteRT 2.3 (tests/test_partitions.py compares predict_xnnpack with the runtime).
XNNPACK_TYPES = {
    **{op: {"f32", "q8"} for op in """ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTH_TO_SPACE DEPTHWISE_CONV_2D
        DEQUANTIZE FULLY_CONNECTED HARD_SWISH LEAKY_RELU LOGISTIC MAX_POOL_2D MEAN MUL PAD QUANTIZE REDUCE_MAX
        RESHAPE RESIZE_BILINEAR SLICE SPACE_TO_DEPTH SPLIT STRIDED_SLICE SUB SUM TANH TRANSPOSE
        TRANSPOSE_CONV""".split()},
    # float only in this version: int8 PRELU, MINIMUM/MAXIMUM, RELU (even with equal input and
    # output quantization, measured), SOFTMAX and EXP run on builtin kernels; a RELU fused into
    # CONV_2D/ADD is taken
    **{op: {"f32"} for op in """ABS DIV ELU EXP MAXIMUM MINIMUM PRELU RELU RELU6 RELU_N1_TO_1 SIN SOFTMAX SQRT SQUARE
        SQUARED_DIFFERENCE""".split()},
}
XNNPACK_OPS = frozenset(XNNPACK_TYPES)

# MIL ops known to run on the Neural Engine (Apple publishes no list: a conservative set from
# coremltools' ANE-friendly ops; anything else is a warning, not an error).
ANE_MIL_OPS = frozenset("""add sub mul real_div maximum minimum conv conv_transpose linear matmul relu exp
prelu leaky_relu clip sigmoid tanh softmax concat pixel_shuffle pixel_unshuffle space_to_depth
depth_to_space reshape transpose squeeze expand_dims slice_by_index slice_by_size split tile pad
avg_pool max_pool upsample_nearest_neighbor upsample_bilinear reduce_mean reduce_sum reduce_max
reduce_min batch_norm instance_norm layer_norm const constexpr_affine_dequantize constexpr_blockwise_shift_scale
constexpr_lut_to_dense quantize dequantize cast identity""".split())


FIXED_SHAPE_ADVICE = {
    "gpu": ("the GPU delegate builds its GPU program for the shapes it is applied to and declares no dynamic-tensor "
            "support, so every new size re-applies it",
            "tensorflow/lite/delegates/gpu/delegate.cc: TfLiteDelegate flags kTfLiteDelegateFlagsNone; "
            "DelegateKernel::Prepare builds the InferenceRunner from the tensor shapes"),
    "nnapi": ("the NNAPI delegate compiles the model for the shapes it is applied to; running other sizes without "
              "recompiling needs allow_dynamic_dimensions, which accelerators may reject",
              "tensorflow/lite/delegates/nnapi/nnapi_delegate.h: StatefulNnApiDelegate::Options::"
              "allow_dynamic_dimensions (default false)"),
    "coreml-ane": ("Core ML runs a range-flexible (RangeDim) model on the Neural Engine only at its default shape, "
                   "other shapes on the GPU or CPU; enumerated shapes each run on the Neural Engine",
                   "developer.apple.com/forums/thread/724930 (Apple's answer); coremltools guide 'Flexible Input "
                   "Shapes' (apple.github.io/coremltools/docs-guides/source/flexible-inputs.html): 'Use "
                   "EnumeratedShapes for best performance'"),
}
"""``{target: (why a fixed input shape matters there, the source)}`` for the dynamic-shape findings."""


@dataclass
class Finding:
    """One lint result; ``source`` names the delegate documentation or code a rule comes from
    (set where the rule cites one)."""

    severity: str
    check: str
    message: str
    op: str | None = None
    source: str | None = None

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
    tensors, ops, inputs, outputs = read_model(path)
    if target == "xnnpack":  # the delegate's own per-node rules and LiteRT's partitioning
        return _xnnpack_findings(path, ops)
    out: list[Finding] = []
    supported = {"gpu": GPU_OPS, "nnapi": NNAPI_OPS}[target]
    for k, op in enumerate(ops):
        where = f"op #{k} {op.name}"
        if op.name not in supported:
            out.append(Finding("error", "op-coverage",
                               f"{where} is not supported by the {target} delegate; it falls back to the CPU", op.name))
        ranks = [len(tensors[i].shape) for i in op.inputs + op.outputs if i >= 0]
        if ranks and max(ranks) > 4:
            fix = ("export with a fixed --input-size: edgesr's int8 per-pixel dot product is rank 4 there"
                   if op.name in ("EXPAND_DIMS", "BATCH_MATMUL", "SQUEEZE") else "make pixel shuffle a native DEPTH_TO_SPACE")
            out.append(Finding("error", "rank",
                               f"{where} uses a rank-{max(ranks)} tensor; the {target} delegate accepts rank <= 4 ({fix})",
                               op.name))
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
        why, source = FIXED_SHAPE_ADVICE[target]
        out.append(Finding("warning", "dynamic-shape",
                           f"input {dynamic[0]!r} has dynamic H x W; {why}: export a fixed size, e.g. "
                           "'edgesr export CKPT --formats tflite --input-size 360x640' (LR pixels; photos of other sizes "
                           "run in tiles of it), or set the input shape before the delegate is applied: the Java "
                           "Interpreter applies its Options' delegates in its constructor, so build it from a model "
                           "with the shape written in (the demo app's TfliteShape.java does)",
                           source=source))
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


# --------------------------------------------------------------------------- XNNPACK prediction


def _is_q8(t) -> bool:
    return t.dtype in (np.int8, np.uint8) and t.data is None


def xnnpack_refusal(op, tensors) -> str | None:
    """Why LiteRT 2.3's XNNPACK delegate refuses ``op`` (None: it takes it).

    Args:
        op, tensors: an :class:`edgesr.quantization.tflite_model.Operator` and the graph's
            tensors (``read_model``).

    The rules and their source (xnnpack_delegate.cc ``Visit*Node``; XNNPACK's operator checks):
    op and tensor type in :data:`XNNPACK_TYPES`; uint8 activations are not taken (edgesr
    exports int8 graphs; a uint8 edge is a QUANTIZE the delegate leaves out); tensors of rank
    > 4 only for RESHAPE/TRANSPOSE (XNN_MAX_TENSOR_DIMS = 6); int8 ADD/SUB need each
    input-to-output scale ratio in [2^-10, 2^8) and int8 MUL the product-to-output ratio
    in [2^-16, 2^8) (binary-elementwise-nd.c); STRIDED_SLICE only with unit strides and no
    masks other than begin/end; no int16 (16x8) activations, QUANTIZE/DEQUANTIZE to or from
    int16 included (measured on edgesr's w8a16 exports: only their float PRELU and
    DEPTH_TO_SPACE islands are delegated).
    """
    live = [tensors[i] for i in op.inputs + op.outputs if i >= 0]
    quantized = any(_is_q8(t) for t in live)
    kind = "q8" if quantized else "f32"
    if op.name == "DEQUANTIZE":  # an int8 or fp16 value -> float32: float op either way
        kind = "f32"
    allowed = XNNPACK_TYPES.get(op.name)
    if allowed is None:
        return f"XNNPACK has no {op.name}"
    if any(t.dtype == np.int16 and t.data is None for t in live):  # w8a16 graphs: only their float islands go in
        return "int16 activation (LiteRT 2.3's XNNPACK has no 16x8 kernels)"
    if kind not in allowed:
        return f"XNNPACK takes {op.name} in float32 only, not int8"
    if any(t.dtype == np.uint8 and t.data is None for t in live):
        return "uint8 activation (XNNPACK takes signed int8)"
    rank = max((len(t.shape) for t in live), default=0)
    if rank > (6 if op.name in ("RESHAPE", "TRANSPOSE") else 4):
        return f"rank-{rank} tensor"
    if quantized and op.name in ("ADD", "SUB", "MUL"):
        a, b, out = tensors[op.inputs[0]], tensors[op.inputs[1]], tensors[op.outputs[0]]
        if op.name == "MUL":
            ratio = np.float32(a.s) * np.float32(b.s) / np.float32(out.s)
            if not 2.0 ** -16 <= ratio < 2.0 ** 8:
                return f"int8 MUL product-to-output scale ratio {ratio:.3g} outside XNNPACK's [2^-16, 2^8)"
        else:
            for t in (a, b):
                ratio = np.float32(t.s) / np.float32(out.s)
                if not 2.0 ** -10 <= ratio < 2.0 ** 8:
                    return f"int8 {op.name} input-to-output scale ratio {ratio:.3g} outside XNNPACK's [2^-10, 2^8)"
    if op.name == "STRIDED_SLICE":
        o = op.options
        strides = tensors[op.inputs[3]].data
        if strides is None or np.any(strides != 1) or o.get("ellipsis_mask") or o.get("new_axis_mask") or o.get("shrink_axis_mask"):
            return "STRIDED_SLICE with non-unit strides or ellipsis/new-axis/shrink masks"
    return None


def predict_xnnpack(path: str | os.PathLike) -> dict:
    """Predict what LiteRT's default XNNPACK delegate takes of a ``.tflite`` graph, statically.

    Applies :func:`xnnpack_refusal` to every op, then LiteRT's own partitioning
    (:func:`edgesr.converters.partitions.partition`).

    Returns:
        the report of :mod:`edgesr.converters.partitions` plus ``"reasons": {node index: why
        it stays on the builtin kernels}``.

    Raises:
        EdgesrError: missing or unreadable file.
    """
    tensors, ops, _, _ = read_model(path)
    reasons = {k: r for k, op in enumerate(ops) if (r := xnnpack_refusal(op, tensors)) is not None}
    subsets = partition([op.inputs for op in ops], [op.outputs for op in ops], [k not in reasons for k in range(len(ops))])
    return {**partition_report([op.name for op in ops], subsets), "reasons": reasons}


def _xnnpack_findings(path: Path, ops) -> list[Finding]:
    pred = predict_xnnpack(path)
    out = []
    for k, why in pred["reasons"].items():
        name = ops[k].name
        hint = ""
        if name == "PRELU":
            hint = "; use the model's ReLU variant (e.g. sesr_m5_relu) or an fp32 export for a whole XNNPACK graph"
        elif why.startswith("uint8"):
            hint = "; export with int8 I/O (edgesr's default) for a whole XNNPACK graph"
        out.append(Finding("warning", "op-outside-delegate",
                           f"op #{k} {name} stays on LiteRT's builtin kernels: {why}{hint}", name))
    n = pred["partitions"]
    severity = "info" if n <= 1 else "warning"
    out.append(Finding(severity, "partitions", f"XNNPACK would run this graph as {n} partition(s) with "
                       f"{len(pred['ops_outside'])} op(s) outside" + (" (whole graph delegated)" if n == 1 and not pred["ops_outside"] else "")))
    return out


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
        why, source = FIXED_SHAPE_ADVICE["coreml-ane"]
        out.append(Finding("warning", "dynamic-shape", f"inputs {', '.join(prog.flexible_inputs)} have flexible (RangeDim) "
                           f"shapes; {why}: export fixed or enumerated sizes, e.g. 'edgesr export CKPT --formats coreml "
                           "--input-size 360x640,720x1280' (LR pixels)", source=source))
    if prog.max_rank > 5:
        out.append(Finding("error", "rank", f"a rank-{prog.max_rank} tensor; the Neural Engine handles rank <= 5"))
    return out
