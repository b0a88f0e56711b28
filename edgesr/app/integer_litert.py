"""The NumPy integer reference (:mod:`edgesr.quantization.integer_ref`) against LiteRT itself.

LiteRT runs through :class:`edgesr.converters.runtime.TFLiteUpscaler` / :class:`edgesr.converters.runtime.LiteRTModel`
(the one LiteRT runner; kernel families ``"reference"`` = ``BUILTIN_REF``, ``"optimized"`` =
``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, ``"xnnpack"`` = the default interpreter), the reference
through :class:`edgesr.quantization.integer_ref.IntegerGraph` with the matching kernel family. Both see
the same int8 inputs (w8a16 graphs: the same float inputs, which their first QUANTIZE turns into int16), quantized as TFLite's QUANTIZE does (``q = clamp(round_half_away(x /
scale) + zero_point)``), and the comparison counts differing output elements in LSBs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgesr.converters.runtime import LiteRTModel, TFLiteUpscaler
from edgesr.core.data import eval_pairs
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import model_input
from edgesr.quantization.integer_ref import (
    KERNEL_NOTES,
    IntegerGraph,
    contract_of_tflite,
    quantize_input,
)


def run_litert(path: str | os.PathLike, q: np.ndarray, kernels: str = "xnnpack", num_threads: int = 1) -> np.ndarray:
    """The model's first output for one NHWC input (the model's own dtype) on LiteRT's ``kernels``."""
    return LiteRTModel(path, kernels, num_threads).run(q)


def LiteRTUpscaler(path: str | os.PathLike, kernels: str = "reference", contract=None) -> TFLiteUpscaler:
    """LiteRT with the ``kernels`` family as an Upscaler: a :class:`edgesr.converters.runtime.TFLiteUpscaler`
    (one thread), with the contract of :class:`edgesr.quantization.integer_ref.IntegerReference` when
    none is given; it quantizes and dequantizes exactly as the integer reference does, so the
    two differ only in who computes."""
    if contract is None:
        contract = contract_of_tflite(Path(path), IntegerGraph(path, kernels))
    return TFLiteUpscaler(path, contract, num_threads=1, kernels=kernels)


def is_integer_graph(graph: IntegerGraph) -> bool:
    """True for a graph the integer reference compares with LiteRT: an int8/uint8-input model,
    or a 16x8 (w8a16) model whose float input is quantized to int16 inside and whose float
    output is a DEQUANTIZE of int16 codes."""
    t = graph.tensors[graph.inputs[0]]
    if t.dtype in (np.int8, np.uint8):
        return True
    return bool(t.dtype == np.float32 and output_lsb(graph) is not None
                and any(x.dtype == np.int16 for x in graph.tensors))


def output_lsb(graph: IntegerGraph) -> float | None:
    """The real size of one output LSB of a graph with a float output: the scale of the integer
    tensor its final DEQUANTIZE reads (w8a16 graphs: int16 codes); None for integer outputs or a
    float output not made by DEQUANTIZE."""
    out = graph.outputs[0]
    if graph.tensors[out].dtype != np.float32:
        return None
    producer = next((op for op in graph.ops if op.outputs[0] == out), None)
    if producer is None or producer.name != "DEQUANTIZE":
        return None
    return graph.tensors[producer.inputs[0]].s


def lsb_diff(a: np.ndarray, b: np.ndarray, lsb: float | None = None) -> dict:
    """Differences in output LSBs: mismatched elements, max |a - b|, and a histogram.

    Integer outputs are compared code by code. Float outputs (``lsb`` given: the scale of the
    integer tensor the output was dequantized from) count every element whose float32 values
    differ at all, and express ``|a - b|`` in LSBs of that tensor (``round(|a - b| / lsb)``, at
    least 1 for a differing element)."""
    if lsb is not None:
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        d = np.where(a64 != b64, np.maximum(np.rint(np.abs(a64 - b64) / lsb), 1), 0).astype(np.int64)
    else:
        d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    values, counts = np.unique(d[d > 0], return_counts=True)
    return {"mismatched_elements": int((d > 0).sum()), "max_lsb_diff": int(d.max()) if d.size else 0,
            "elements": int(d.size), "histogram": {int(v): int(c) for v, c in zip(values, counts)}}


def compare_with_litert(path: str | os.PathLike, inputs: list[np.ndarray], kernels=("reference", "optimized", "xnnpack")) -> dict:
    """Integer reference vs LiteRT, per kernel family, summed over ``inputs``.

    Args:
        inputs: NHWC arrays in the model's input dtype (e.g. int8 (1, h, w, 1) crops of photos).
        kernels: the families to compare (each against the matching LiteRT resolver).
    Returns:
        ``{"mismatched_elements", "max_lsb_diff", "elements", "per_kernels": {k: {...}},
        "litert_reference_vs_optimized": {...}, "litert_reference_vs_xnnpack": {...}}``; the
        top-level numbers are the worst over ``kernels``.
    """
    kernels = [kernels] if isinstance(kernels, str) else list(kernels)
    per, litert = {}, {}
    lsb = output_lsb(IntegerGraph(path, "reference"))
    if lsb is None and any(np.asarray(q).dtype.kind == "f" for q in inputs) and IntegerGraph(path).tensors[IntegerGraph(path).outputs[0]].dtype == np.float32:
        raise EdgesrError(f"{path}: a float output not made by DEQUANTIZE: no integer graph to compare")
    for k in kernels:
        ref, rt = IntegerGraph(path, k), LiteRTModel(path, k, num_threads=1)
        outs_ref, outs_rt = [], []
        for q in inputs:
            outs_ref.append(ref.run(q)[0].ravel())
            outs_rt.append(rt.run(q).ravel())
        litert[k] = np.concatenate(outs_rt)
        per[k] = lsb_diff(np.concatenate(outs_ref), litert[k], lsb) | {"note": KERNEL_NOTES[k]}
    out = {"mismatched_elements": max(p["mismatched_elements"] for p in per.values()),
           "max_lsb_diff": max(p["max_lsb_diff"] for p in per.values()),
           "elements": next(iter(per.values()))["elements"], "per_kernels": per}
    for k in ("optimized", "xnnpack"):
        if "reference" in litert and k in litert:
            out[f"litert_reference_vs_{k}"] = lsb_diff(litert["reference"], litert[k], lsb)
    return out


def validate_integer(path: str | os.PathLike, sets: dict, contract, kernels=("reference", "optimized", "xnnpack")) -> dict:
    """:func:`compare_with_litert` on the LR images of evaluation ``sets`` ({set: [(name, HR
    uint8)]}), each LR made and converted exactly as :mod:`edgesr.core.evaluate` does and quantized
    with TFLite's rounding; the dict ``edgesr validate --integer-reference`` adds to its JSON.

    Raises:
        EdgesrError: neither an integer-input nor a 16x8 ``.tflite`` artifact (:func:`is_integer_graph`).
    """

    graph = IntegerGraph(path, "reference")
    t = graph.tensors[graph.inputs[0]]
    if not is_integer_graph(graph):
        raise EdgesrError(f"{path}: --integer-reference needs an int8/uint8-input or a w8a16 TFLite model "
                          f"(input is {np.dtype(t.dtype).name}, no int16 graph)")
    inputs = []
    for images in sets.values():
        for pair in eval_pairs(images, contract.scale):
            x = model_input(pair.lr, contract)
            inputs += [quantize_input(x[i : i + 1].transpose(0, 2, 3, 1), t) for i in range(x.shape[0])]
    return compare_with_litert(path, inputs, kernels)
