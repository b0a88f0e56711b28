"""PyTorch deploy module -> Core ML ML Program (``.mlpackage``), minimum deployment iOS 17.

``torch.jit.trace`` then ``coremltools.convert(convert_to="mlprogram")``; input ``input``
float32 (1, C, H, W) NCHW with ``RangeDim`` H and W (2..4096), output ``output`` float32
(1, C, s*H, s*W). Precisions:

* ``fp16`` (default): float16 weights and compute;
* ``fp32``: float32 weights and compute;
* ``w8``: int8 weights, per-channel symmetric (``linear_quantize_weights``,
  ``weight_threshold=0`` so the small convs are quantized too), float16 compute;
* ``w8a8``: int8 weights and activations: ``coremltools.optimize.torch``'s
  ``LinearQuantizer`` (symmetric, min/max observers) observes the caller's calibration
  patches on CPU before tracing, so the program holds quantize/dequantize pairs with those
  activation scales in front of every conv; the elementwise adds (the global residual) and
  the output stay float16 (see :func:`_w8a8`).

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

from edgesr.core.atomic import atomic_path
from edgesr.core.contract import KEY, metadata_text
from edgesr.core.errors import EdgesrError

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
        import coremltools as ct
    return ct


def _w8a8(module, channels: int, calibration: np.ndarray, input_range: tuple[float, float] = (0.0, 1.0)):
    """Int8 weights and activations: coremltools' ``LinearQuantizer`` calibrated on ``calibration``.

    Returns the finalized (fake-quantized) module that :func:`convert` traces. Configuration
    (each choice measured on a trained SESR-M5 ReLU x2, Set5: float 35.96 dB):

    * ``activation_observer="min_max"``: the range of everything the calibration patches
      produce. The default moving-average observer moves 1 % per batch from the *first*
      batch's range, so a few dozen calibration patches left every range near the first
      patch's (input range +-0.60 where the patches reach 0.92): clipped activations,
      23.3 dB (23.7 dB as converted); with min/max observers 35.87 dB as converted (MIL
      interpreter, fp16), 0.09 dB below float;
    * ``quantization_scheme="symmetric"`` (coremltools' default, int8 weights per channel
      without zero points; ReLU outputs get the unsigned range);
    * the elementwise adds are not quantized (``operator.add`` / ``torch.add`` configs
      ``None``): every conv still reads int8 activations (x0 + h is quantized as the last
      conv's input), but the global residual ``last(...) + x`` and the model output stay in
      float. Quantizing them costs about 0.25 dB: symmetric steps over [-1, 1] are twice the
      8-bit output step, and the input fed to the residual would carry its quantization
      error straight to the output (35.63 dB with them, 35.88 dB without);
    * the input observer also sees ``input_range`` (the contract's ``value_range``, [0, 1]),
      so inputs beyond the calibration patches' range (grayscale photos, whose Y reaches 0
      and 1; the patches' BT.601 Y stays within 16..235) are not clipped;
    * milestones ``[0, 10**9, 10**9, 0]``: observers on from step 0 and fake quantization
      never enabled while calibrating (post-training: ranges of float activations).
    """
    import operator

    from coremltools.optimize.torch.quantization import (
        LinearQuantizer,
        LinearQuantizerConfig,
        ModuleLinearQuantizerConfig,
    )

    cfg = LinearQuantizerConfig(
        global_config=ModuleLinearQuantizerConfig(quantization_scheme="symmetric", activation_observer="min_max",
                                                  weight_observer="min_max", milestones=[0, 10**9, 10**9, 0]),
        module_type_configs={operator.add: None, torch.add: None})
    quantizer = LinearQuantizer(copy.deepcopy(module).eval(), cfg)
    example = torch.from_numpy(np.ascontiguousarray(calibration[:1]))
    prepared = quantizer.prepare(example_inputs=(example,), inplace=False)
    quantizer.step()  # step 1 >= milestone 0: observers on
    with torch.no_grad():
        for patch in calibration:
            prepared(torch.from_numpy(np.ascontiguousarray(patch[None])))
        for node in prepared.graph.nodes:  # the input's quantizer also covers the contract range
            if node.op != "placeholder":
                continue
            for user in node.users:
                fq = prepared.get_submodule(user.target) if user.op == "call_module" else None
                if fq is not None and hasattr(fq, "activation_post_process"):
                    fq.activation_post_process(torch.tensor([float(input_range[0]), float(input_range[1])]))
    return quantizer.finalize(inplace=False).eval()


def convert(module, channels: int, precision: str = "fp16", calibration: np.ndarray | None = None):
    """Convert a deploy module to an in-memory ``coremltools.models.MLModel``.

    Raises:
        EdgesrError: unknown precision, w8a8 without calibration patches, a conversion failure.
    """
    if precision not in PRECISIONS:
        raise EdgesrError(f"unknown Core ML precision {precision!r} (expected {', '.join(PRECISIONS)})")
    ct = _ct()
    module = module.eval()
    if precision == "w8a8":
        if calibration is None or len(calibration) == 0:
            raise EdgesrError("Core ML w8a8 needs calibration patches (real images; e.g. --calib DIR)")
        with _quiet():
            lo, hi = getattr(getattr(module, "contract", None), "value_range", (0.0, 1.0))
            module = _w8a8(module, channels, np.asarray(calibration, dtype=np.float32), (lo, hi))
    example = torch.rand(1, channels, 24, 28, generator=torch.Generator().manual_seed(0))
    dims = [ct.RangeDim(lower_bound=2, upper_bound=MAX_SIDE, default=d) for d in (24, 28)]
    shape = ct.Shape(shape=(1, channels, *dims))
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(module, example)
            ml = ct.convert(traced, inputs=[ct.TensorType(name="input", shape=shape, dtype=np.float32)],
                            outputs=[ct.TensorType(name="output", dtype=np.float32)],
                            convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                            compute_precision=compute)
            if precision == "w8":
                from coremltools.optimize.coreml import (
                    OpLinearQuantizerConfig,
                    OptimizationConfig,
                    linear_quantize_weights,
                )

                op_cfg = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                                 weight_threshold=0)
                ml = linear_quantize_weights(ml, OptimizationConfig(global_config=op_cfg))
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
    from coremltools.proto import MIL_pb2

    return MIL_pb2.DataType.Name(tensor_type.dataType)


def structure(path: str | os.PathLike) -> dict:
    """What Linux can check of a saved ``.mlpackage`` (no prediction).

    Returns:
        ``{"ops": [MIL op types, consts excluded], "inputs": {name: {"dtype", "shape",
        "ranges": [[lo, hi] per dim]}}, "outputs": [names], "weight_dtypes": [dtypes of the
        rank-4 constants (conv weights), e.g. "FLOAT16" or "INT8"], "metadata": str | None}``.

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
    weights = set()
    for op in ops:
        for key in ("val", "quantized_data", "data"):
            if key in op.attributes and op.attributes[key].type.HasField("tensorType"):
                t = op.attributes[key].type.tensorType
                if t.rank == 4:
                    weights.add(_dtype_name(t))
    inputs = {}
    for inp in spec.description.input:
        arr = inp.type.multiArrayType
        ranges = [[r.lowerBound, r.upperBound] for r in arr.shapeRange.sizeRanges]
        inputs[inp.name] = {"dtype": type(arr).DESCRIPTOR.fields_by_name["dataType"].enum_type.values_by_number[arr.dataType].name,
                            "shape": list(arr.shape), "ranges": ranges}
    return {
        "ops": [op.type for op in ops if op.type != "const"],
        "inputs": inputs,
        "outputs": [o.name for o in spec.description.output],
        "weight_dtypes": sorted(weights),
        "metadata": spec.description.metadata.userDefined.get(KEY),
    }


def check_structure(path: str | os.PathLike, precision: str, channels: int) -> dict:
    """Structural validation of a saved package against what :func:`convert` promises.

    Checks: one input ``input`` float32 (1, C, H, W) with H and W ranged (2..4096), one output
    ``output``, conv weights stored as FLOAT32 (fp32), FLOAT16 (fp16) or INT8 (w8, w8a8),
    quantize/dequantize ops present for w8a8, and edgesr metadata embedded.

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
        if [r for r in inp["ranges"][2:]] != [[2, MAX_SIDE], [2, MAX_SIDE]]:
            problems.append(f"input H/W ranges {inp['ranges'][2:]}, expected [2, {MAX_SIDE}] each")
    if s["outputs"] != ["output"]:
        problems.append(f"outputs {s['outputs']}, expected ['output']")
    want = {"fp32": "FLOAT32", "fp16": "FLOAT16", "w8": "INT8", "w8a8": "INT8"}.get(precision)
    if want is None or s["weight_dtypes"] != [want]:
        problems.append(f"conv weights stored as {s['weight_dtypes']}, expected [{want}] for {precision}")
    if precision == "w8a8" and not {"quantize", "dequantize"} <= set(s["ops"]):
        problems.append("w8a8 program has no quantize/dequantize activation ops")
    if s["metadata"] is None:
        problems.append("no edgesr metadata in user_defined_metadata")
    return {**s, "problems": problems, "passed": not problems}
