"""Graph passes on a converted int8 ``.tflite`` flatbuffer that leave every output bit unchanged.

:func:`drop_saturating_clamps` removes an int8 clamp that the quantization already performs.
The output clamp ``clamp(y, 0, 1)`` of an SR network becomes MINIMUM (and RELU or MAXIMUM)
ops in the int8 graph; when the tensor's quantization saturates at the same bounds (e.g.
scale 1/255, zero point -128: code -128 is 0.0 and code 127 is 1.0), each of those ops maps
every int8 code to itself. They are not free on a phone: LiteRT 2.3's XNNPACK delegate takes
int8 MINIMUM, MAXIMUM and RELU on no terms, so a trailing clamp splits the graph and runs on
LiteRT's builtin kernels (measured: SESR-M5-ReLU, eSR-MAX; see
:func:`edgesr.converters.lint.xnnpack_refusal`).

An op is an identity on int8 codes, and is dropped, when its input and output tensors have the
same (scale, zero point) (``real = scale * (q - zero_point)``) and:

* MINIMUM(x, c) with a constant ``c`` whose every code is >= 127 (``min(q, c) = q``);
* MAXIMUM(x, c) with a constant ``c`` whose every code is <= -128 (``max(q, c) = q``);
* RELU(x): the requantization is the identity (same parameters) and its clamp
  ``[max(-128, zero_point), 127]`` (CalculateActivationRangeQuantized) starts at -128, i.e.
  ``zero_point <= -128`` (real 0.0 is the lowest code).

The op's consumers, the graph outputs and the signature outputs then read its input tensor,
which takes the output's name.
"""

from __future__ import annotations

import numpy as np

_QMIN, _QMAX = -128, 127


def _opcode_names(model) -> list[str]:
    import tflite

    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM") for c in model.operatorCodes]


def _quant(t) -> tuple | None:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _const_int8(model, t) -> np.ndarray | None:
    data = model.buffers[t.buffer].data
    return None if data is None or len(data) == 0 else np.frombuffer(bytes(np.asarray(data, np.uint8)), np.int8)


def _is_identity(model, sg, op, name: str) -> bool:
    int8 = 9  # tflite.TensorType.INT8
    x, out = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
    if x.type != int8 or out.type != int8 or _quant(x) is None or _quant(x) != _quant(out):
        return False
    if name == "RELU":
        return _quant(out)[1] <= _QMIN
    if name in ("MINIMUM", "MAXIMUM") and len(op.inputs) == 2:
        c_t = sg.tensors[op.inputs[1]]
        c = _const_int8(model, c_t) if c_t.type == int8 else None
        if c is None or _quant(c_t) != _quant(out):
            return False
        return bool(np.all(c >= _QMAX)) if name == "MINIMUM" else bool(np.all(c <= _QMIN))
    return False


def drop_saturating_clamps(data: bytes) -> tuple[bytes, list[str]]:
    """Remove the int8 MINIMUM / MAXIMUM / RELU ops that are identities (see the module doc).

    Args:
        data: a ``.tflite`` flatbuffer (subgraph 0 is rewritten; float graphs come back as is).

    Returns:
        ``(new flatbuffer bytes, names of the dropped ops in graph order)``; the input bytes
        unchanged when nothing is dropped.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    sg = model.subgraphs[0]
    names = _opcode_names(model)
    dropped = []
    k = 0
    while k < len(sg.operators):
        op = sg.operators[k]
        name = names[op.opcodeIndex]
        if name not in ("MINIMUM", "MAXIMUM", "RELU") or not _is_identity(model, sg, op, name):
            k += 1
            continue
        src, dst = int(op.inputs[0]), int(op.outputs[0])
        for other in sg.operators:
            other.inputs = np.where(np.asarray(other.inputs) == dst, src, other.inputs).astype(np.int32)
        if dst in list(sg.outputs):
            sg.outputs = np.where(np.asarray(sg.outputs) == dst, src, sg.outputs).astype(np.int32)
            sg.tensors[src].name = sg.tensors[dst].name
            for sig in model.signatureDefs or []:
                for t in sig.outputs:
                    if t.tensorIndex == dst:
                        t.tensorIndex = src
        del sg.operators[k]
        dropped.append(name)
    if not dropped:
        return bytes(data), []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), dropped
