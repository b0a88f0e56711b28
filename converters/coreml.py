"""PyTorch deploy module -> Core ML ML Program (``.mlpackage``), minimum deployment iOS 17.

``torch.jit.trace`` then ``coremltools.convert(convert_to="mlprogram")``; input ``input``
float32 (1, C, H, W) NCHW with ``RangeDim`` H and W (2..4096), or with ``input_sizes`` a fixed
shape (one size) or ``ct.EnumeratedShapes`` (several sizes, the first the default: what the
Neural Engine compiles for, coremltools' "Flexible Input Shapes" guide), output ``output``
float32 (1, C, s*H, s*W). Precisions:

* ``fp16`` (default): float16 weights and compute;
* ``fp32``: float32 weights and compute;
* ``w8``: int8 conv weights, per-channel symmetric as TFLite stores them (``linear_quantize_weights``
  ``linear_symmetric``: q in [-127, 127], zero point 0, ``scale[c] = max|w[c]| / 127``, one
  INT8 ``constexpr_affine_dequantize`` per conv; ``weight_threshold=0`` so the small convs are
  quantized too), float16 compute. The int8 values are TFLite's (:func:`with_int8_weights`);
  the per-channel scales are stored in float16 (the program's type). Conv weights only: the
  constant operands of elementwise ops stay float16. A global quantizer config had also made
  PKN's sub-pixel offsets (the kernel geometry, e.g. -0.25 and 0.75 LR pixels) int8 on a
  symmetric grid of 2.25/127, which is not TFLite's grid either: a different function, whose
  W8A8 program scored 0.13 dB below the float model on Set5 where LiteRT's int8 model lost 0.22;
* ``w8a8``: the same int8 weights, and int8 activations at edgesr's ranges, the int8 TFLite
  model's (:func:`with_activation_qdq`: a ``quantize`` -> ``dequantize`` pair after every
  tensor that is int8 in TFLite, at TFLite's nudged scale and zero point), except the model
  input, which stays float16 (see there). coremltools keeps the
  pairs; its ``distributive_quantized_binary_op_scale_normalization`` pass rewrites the scale
  of a quantize after an ``add`` relative to the add's first operand (same values), and it stores a
  zero point of -128 as ``uint8`` with zero point 0 (same values). Before, coremltools'
  ``LinearQuantizer`` picked its own symmetric ranges: on PKN that stored conv weights as both
  INT8 and UINT8 and cost 0.72 dB where TFLite int8 lost 0.25.

Core ML predicts only on macOS; :func:`structure` reads what Linux can check from the
package's protobuf (MIL op types, I/O names and shape ranges, weight dtypes).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from edgesr.quantization.arithmetic import nudged_qparams
from edgesr.quantization.fake_quant import fake_quant_weight, quantize_constant_operands
from edgesr.quantization.graph import trace

from edgesr.core.atomic import atomic_path
from edgesr.core.contract import KEY, metadata_text
from edgesr.core.errors import EdgesrError
from edgesr.core.thirdparty import block_triton_after_tensorflow

PRECISIONS = ("fp16", "fp32", "w8", "w8a8")
MAX_SIDE = 4096


@contextlib.contextmanager
def _quiet():
    """Silence coremltools' progress bars and version warnings (stderr) while converting."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _ct():
    with _quiet():
        block_triton_after_tensorflow()
        import coremltools as ct
    return ct


def _qdq(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """int8 quantize -> dequantize at one tensor's (scale, zero point): ``real = scale * (q - zp)``;
    traced as ``aten::quantize_per_tensor`` + ``aten::dequantize``, which coremltools turns into
    MIL ``quantize`` (int8 output) + ``dequantize``."""
    return torch.quantize_per_tensor(x, scale, zero_point, torch.qint8).dequantize()


def with_int8_weights(module):
    """A copy of ``module`` whose conv weights are TFLite's int8 values, dequantized
    (:func:`edgesr.quantization.fake_quant.fake_quant_weight`: per output channel, symmetric,
    q in [-127, 127], ``scale[c] = max|w[c]| / 127``).

    ``linear_quantize_weights`` then finds exactly these int8 values (each weight is q * scale,
    and float16 rounding moves it far less than half a step), where quantizing the float16-rounded
    float weights put 1.8 % of a 5x5 conv's weights one step from TFLite's.
    """
    module = copy.deepcopy(module).eval()
    with torch.no_grad():
        for conv in module.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.copy_(fake_quant_weight(conv.weight))
    return module


def with_activation_qdq(module, activation_ranges: dict[str, tuple[float, float]],
                        quantize_input: bool = False) -> torch.fx.GraphModule:
    """A traced copy of ``module`` with int8 quantize/dequantize after every node of
    ``activation_ranges`` but the model input (unless ``quantize_input``).

    ``activation_ranges`` are edgesr's (``{fx node name: (min, max)}``, the keys of
    :func:`edgesr.quantization.graph.tensor_nodes`: the tensors that are int8 in the TFLite model,
    the input included); each becomes TFLite's nudged per-tensor int8 parameters
    (:func:`edgesr.quantization.arithmetic.nudged_qparams`), so the Core ML program quantizes the
    same tensors at the same scales and zero points as the int8 TFLite model, except the model
    input: a TFLite full-integer model's input tensor is int8 by definition, but a Core ML program
    receives float32, and rounding it costs accuracy for little speed: the input stays float16, and
    the ops that read it (the first conv, with one input channel in the zoo; a residual add)
    compute with a float16 operand. On the headline SESR-M5 x2 (T91, `edgesr run`) the int8 input alone costs
    0.046 dB on Set5 (docs/int8_floor.md), and the W8A8 program's drop went from 0.093 dB (input
    int8) to 0.054 dB. Constant operands
    of elementwise ops (PKN's sub-pixel offsets) take the values TFLite's int8 constants hold
    (:func:`edgesr.quantization.fake_quant.quantize_constant_operands`), stored as float16
    constants, not compressed. Float32 NCHW in and out, like ``module``.

    Raises:
        EdgesrError: a range names no node of the traced graph, or is not min <= 0 <= max.
    """
    gm = trace(copy.deepcopy(module).eval())
    quantize_constant_operands(gm)  # constant operands on TFLite's int8 grid, stored as float16 values
    names = {n.name for n in gm.graph.nodes}
    unknown = sorted(set(activation_ranges) - names)
    if unknown:
        raise EdgesrError(f"activation_ranges name nodes not in the traced graph: {', '.join(unknown[:5])}")
    for node in list(gm.graph.nodes):
        if node.name not in activation_ranges or (node.op == "placeholder" and not quantize_input):
            continue
        try:
            qp = nudged_qparams(*activation_ranges[node.name])
        except ValueError as exc:
            raise EdgesrError(f"activation range of {node.name!r}: {exc}") from None
        with gm.graph.inserting_after(node):
            q = gm.graph.call_function(_qdq, (node, qp.scale, qp.zero_point))
        node.replace_all_uses_with(q, delete_user_cb=lambda user, q=q: user is not q)
    gm.graph.lint()
    gm.recompile()
    return gm.eval()


def convert(module, channels: int, precision: str = "fp16",
            activation_ranges: dict[str, tuple[float, float]] | None = None, input_sizes=None):
    """Convert a deploy module to an in-memory ``coremltools.models.MLModel``.

    Args:
        module: deploy ``nn.Module``, float32 NCHW (N, C, H, W) -> (N, C, s*H, s*W).
        channels: C of the input.
        precision: ``"fp16"``, ``"fp32"``, ``"w8"`` or ``"w8a8"`` (module doc).
        activation_ranges: for w8a8: edgesr's ``{fx node name: (min, max)}``, the int8 TFLite
            model's ranges (a quantized checkpoint's, or calibrated by
            :func:`edgesr.converters.export.int8_ranges`).
        input_sizes: ``[(H, W), ...]`` LR pixels: one size for a fixed input shape, several for
            ``ct.EnumeratedShapes`` (the first is the default and the traced size); None
            (default): ``RangeDim`` H and W in 2..:data:`MAX_SIDE`.

    Raises:
        EdgesrError: unknown precision, w8a8 without activation ranges, a conversion failure.
    """
    if precision not in PRECISIONS:
        raise EdgesrError(f"unknown Core ML precision {precision!r} (expected {', '.join(PRECISIONS)})")
    ct = _ct()
    module = module.eval()
    if precision in ("w8", "w8a8"):
        module = with_int8_weights(module)
    if precision == "w8a8":
        if not activation_ranges:
            raise EdgesrError("Core ML w8a8 needs activation ranges (a quantized checkpoint, or calibration patches)")
        module = with_activation_qdq(module, activation_ranges)
    sizes = [(24, 28)] if not input_sizes else [tuple(int(v) for v in hw) for hw in input_sizes]
    example = torch.rand(1, channels, *sizes[0], generator=torch.Generator().manual_seed(0))
    if not input_sizes:
        dims = [ct.RangeDim(lower_bound=2, upper_bound=MAX_SIDE, default=d) for d in sizes[0]]
        shape = ct.Shape(shape=(1, channels, *dims))
    elif len(sizes) == 1:
        shape = ct.Shape(shape=(1, channels, *sizes[0]))
    else:
        shape = ct.EnumeratedShapes(shapes=[(1, channels, *hw) for hw in sizes], default=(1, channels, *sizes[0]))
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(module, example)
            ml = ct.convert(traced, inputs=[ct.TensorType(name="input", shape=shape, dtype=np.float32)],
                            outputs=[ct.TensorType(name="output", dtype=np.float32)],
                            convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                            compute_precision=compute)
            if precision in ("w8", "w8a8"):
                block_triton_after_tensorflow()
                from coremltools.optimize.coreml import (
                    OpLinearQuantizerConfig,
                    OptimizationConfig,
                    linear_quantize_weights,
                )

                op_cfg = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                                 weight_threshold=0)
                # conv weights only: a global config also quantized the constant operands of
                # elementwise ops (PKN's sub-pixel offsets), which changes the model's function
                ml = linear_quantize_weights(ml, OptimizationConfig(op_type_configs={"conv": op_cfg}))
    except Exception as exc:  # coremltools raises many types
        raise EdgesrError(f"Core ML conversion ({precision}) failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}") from None
    return ml


def save(ml, path: str | os.PathLike, meta: dict) -> Path:
    """Write the ``.mlpackage`` folder atomically with ``meta`` in ``user_defined_metadata``."""
    ml.user_defined_metadata[KEY] = metadata_text(meta)
    with atomic_path(path) as tmp, _quiet():
        ml.save(str(tmp))
    return Path(path)


def _dtype_name(tensor_type) -> str:
    block_triton_after_tensorflow()
    from coremltools.proto import MIL_pb2

    return MIL_pb2.DataType.Name(tensor_type.dataType)


def _out_channels(conv_op) -> int:
    """Output channels of a MIL conv (N, C, H, W): C of its output type, 0 if not a constant."""
    dims = conv_op.outputs[0].type.tensorType.dimensions
    return int(dims[1].constant.size) if len(dims) == 4 and dims[1].HasField("constant") else 0


def structure(path: str | os.PathLike) -> dict:
    """What Linux can check of a saved ``.mlpackage`` (no prediction).

    Returns:
        ``{"ops": [MIL op types, consts excluded], "inputs": {name: {"dtype", "shape",
        "ranges": [[lo, hi] per dim], "enumerated": [[dims], ...] (``EnumeratedShapes``, else
        [])}}, "outputs": [names], "weight_dtypes": [dtypes in which the convs' weights are
        stored, e.g. "FLOAT16" or "INT8"; a weight of one value per output channel is left out:
        coremltools keeps it float16 in a W8 program, and it is exact on TFLite's int8 grid
        (q = +-127 or 0), e.g. PKN-fixed's ones-generating 1x1 conv], "compressed_operands": ["op.input <- constant (dtype)"
        for each compressed (``constexpr_*``) constant that is not a conv weight],
        "metadata": str | None}``.

    Raises:
        EdgesrError: not a readable ML Program package.
    """
    ct = _ct()
    try:
        with _quiet():
            spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:
        raise EdgesrError(f"{path}: not a readable Core ML package ({type(exc).__name__})") from None
    if not spec.HasField("mlProgram"):
        raise EdgesrError(f"{path}: not an ML Program (mlprogram) package")
    fn = spec.mlProgram.functions["main"]
    ops = list(fn.block_specializations[fn.opset].operations)
    stored = {}  # constant name -> (op type, dtype of its stored data, number of values)
    for op in ops:
        for key in ("val", "quantized_data", "data"):
            if key in op.attributes and op.attributes[key].type.HasField("tensorType"):
                t = op.attributes[key].type.tensorType
                stored[op.outputs[0].name] = (op.type, _dtype_name(t), int(np.prod([d.constant.size for d in t.dimensions])))
                break
    weights, compressed_operands = set(), []
    for op in ops:
        for key, arg in op.inputs.items():
            for binding in arg.arguments:
                const = stored.get(binding.name)
                if const is None:
                    continue
                if op.type == "conv" and key == "weight":
                    if const[2] > _out_channels(op):  # one value per output channel: see below
                        weights.add(const[1])
                elif const[0].startswith("constexpr"):
                    compressed_operands.append(f"{op.type}.{key} <- {binding.name} ({const[1]})")
    inputs = {}
    for inp in spec.description.input:
        arr = inp.type.multiArrayType
        ranges = [[r.lowerBound, r.upperBound] for r in arr.shapeRange.sizeRanges]
        enumerated = [list(e.shape) for e in arr.enumeratedShapes.shapes]
        inputs[inp.name] = {"dtype": type(arr).DESCRIPTOR.fields_by_name["dataType"].enum_type.values_by_number[arr.dataType].name,
                            "shape": list(arr.shape), "ranges": ranges, "enumerated": enumerated}
    return {
        "ops": [op.type for op in ops if op.type != "const"],
        "inputs": inputs,
        "outputs": [o.name for o in spec.description.output],
        "weight_dtypes": sorted(weights),
        "compressed_operands": compressed_operands,
        "metadata": spec.description.metadata.userDefined.get(KEY),
    }


def check_structure(path: str | os.PathLike, precision: str, channels: int, input_sizes=None) -> dict:
    """Structural validation of a saved package against what :func:`convert` promises.

    Checks: one input ``input`` float32 (1, C, H, W) with H and W ranged (2..4096), or for
    ``input_sizes`` (the contract's ``[(H, W), ...]``) the one fixed shape (1, C, H, W) or exactly
    those enumerated shapes, the first as the default; one output
    ``output``, conv weights stored as FLOAT32 (fp32), FLOAT16 (fp16) or INT8 (w8, w8a8), no
    other constant compressed, quantize/dequantize ops present for w8a8, and edgesr metadata embedded.

    Returns:
        :func:`structure`'s dict plus ``"problems": [str]`` and ``"passed": bool``.
    """
    s = structure(path)
    problems = []
    inp = s["inputs"].get("input")
    if list(s["inputs"]) != ["input"] or inp is None:
        problems.append(f"inputs {list(s['inputs'])}, expected ['input']")
    else:
        if inp["dtype"] != "FLOAT32" or len(inp["shape"]) != 4 or inp["shape"][:2] != [1, channels]:
            problems.append(f"input {inp['dtype']} {inp['shape']}, expected FLOAT32 (1, {channels}, H, W)")
        sizes = [[1, channels, int(h), int(w)] for h, w in (input_sizes or [])]
        if not sizes and [r for r in inp["ranges"][2:]] != [[2, MAX_SIDE], [2, MAX_SIDE]]:
            problems.append(f"input H/W ranges {inp['ranges'][2:]}, expected [2, {MAX_SIDE}] each")
        if len(sizes) == 1 and (inp["shape"] != sizes[0] or inp["ranges"] or inp["enumerated"]):
            problems.append(f"input shape {inp['shape']} (ranges {inp['ranges']}, enumerated {inp['enumerated']}), "
                            f"expected the fixed shape {sizes[0]}")
        if len(sizes) > 1 and (sorted(inp["enumerated"]) != sorted(sizes) or inp["shape"] != sizes[0]):
            problems.append(f"input enumerated shapes {inp['enumerated']} (default {inp['shape']}), expected {sizes} "
                            f"(default {sizes[0]})")
    if s["outputs"] != ["output"]:
        problems.append(f"outputs {s['outputs']}, expected ['output']")
    want = {"fp32": "FLOAT32", "fp16": "FLOAT16", "w8": "INT8", "w8a8": "INT8"}.get(precision)
    if want is None or s["weight_dtypes"] != [want]:
        problems.append(f"conv weights stored as {s['weight_dtypes']}, expected [{want}] for {precision}")
    if s["compressed_operands"]:
        problems.append(f"constants other than conv weights are compressed (the model's function changes): "
                        f"{', '.join(s['compressed_operands'][:3])}")
    if precision == "w8a8" and not {"quantize", "dequantize"} <= set(s["ops"]):
        problems.append("w8a8 program has no quantize/dequantize activation ops")
    if s["metadata"] is None:
        problems.append("no edgesr metadata in user_defined_metadata")
    return {**s, "problems": problems, "passed": not problems}
