"""The op table: every op a deploy graph may contain, and what each stage knows about it.

A deploy module is traced with ``torch.fx.symbolic_trace``; each call node's target (an
``nn.Module`` class for ``call_module``, a function for ``call_function``, a method name for
``call_method``) is looked up here with :func:`op_of`. One :class:`Op` row holds everything
the stages need to know about the op, so that adding an op is one row here plus one
implementation per consumer (a test, ``tests/test_ops.py``, checks every consumer against the
table in both directions):

* ``quant``: how TFLite's full-integer int8 converter quantizes the op's output, read by the
  quantization plan (:func:`edgesr.quantization.graph.quant_plan`, whose module doc gives the
  rules): ``"quantize"`` (own scale and zero point), ``"fusing"`` (own parameters, and a RELU
  after it is fused into it), ``"relu"``, ``"shared"`` (keeps its input's parameters),
  ``"fixed"`` (fixed output parameters, :attr:`Op.fixed_range`), ``"identity"`` (absent from
  the TFLite graph), ``"slice"`` (STRIDED_SLICE of a tensor, or indexing a non-tensor),
  ``"concat"`` (one scale for the operands and the result), ``"tuple"`` (returns (values,
  indices); the values, taken with ``[0]``, keep the input's parameters) or ``"none"`` (not a
  tensor).
* ``channels``: how the op treats channel order, read by the Keras rebuild's layout pass
  (:mod:`edgesr.converters.keras_rebuild`): ``"elementwise"`` (per-channel; output order =
  input order), ``"conv"`` (absorbs any input order, produces any), ``"invariant"``
  (reduces over channels), ``"fixed"`` (needs PyTorch's channel order) or
  ``"depth_to_space"`` (needs the permuted order the rebuild's module doc describes).
* ``tflite``: the TFLite builtin ops it becomes (the integer reference,
  :class:`edgesr.quantization.integer_ref.IntegerGraph`, and the GPU delegate's emulation,
  :class:`edgesr.converters.gpu_emulation.GpuDelegateGraph`, have a kernel for each).
* ``mil``: the Core ML MIL ops coremltools 9 makes of it (the MIL interpreter,
  :mod:`edgesr.converters.mil_interpreter`, has a kernel for each).
* ``unsupported``: the consumers that lack it (``"keras"``, ``"integer_ref"``, ``"gpu_emulation"``, ``"mil"``),
  stated here rather than discovered on a user's model.

Ops not in the table get ``"quantize"`` from the quantization plan (their own parameters, the
converter's default) and are refused, with their name, by the Keras rebuild.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

SOFTMAX_RANGE = (0.0, 255.0 / 256.0)
"""Fixed int8 output range of SOFTMAX and LOGISTIC: scale 1/256, zero point -128."""
TANH_RANGE = (-1.0, 127.0 / 128.0)
"""Fixed int8 output range of TANH: scale 1/128, zero point 0."""

QUANT_ROLES = ("quantize", "fusing", "relu", "shared", "fixed", "identity", "slice", "concat", "tuple", "none")
CHANNEL_KINDS = ("elementwise", "conv", "invariant", "fixed", "depth_to_space", "none")
CONSUMERS = ("keras", "integer_ref", "gpu_emulation", "mil")


@dataclass(frozen=True)
class Op:
    """One row of the op table (see the module doc for each column's values).

    Attributes:
        name: the op's name in edgesr (messages, the Keras emitters' keys).
        targets: the fx targets that are this op: ``nn.Module`` classes, functions, method names.
        quant: quantization role in TFLite's int8 graph (one of :data:`QUANT_ROLES`).
        channels: channel-order behaviour for the Keras rebuild (one of :data:`CHANNEL_KINDS`).
        tflite: TFLite builtin ops it lowers to (empty when it lowers to nothing).
        mil: Core ML MIL ops it lowers to.
        fixed_range: for ``quant == "fixed"``, the float output range (lo, hi).
        unsupported: the consumers (of :data:`CONSUMERS`) that have no implementation.
    """

    name: str
    targets: tuple
    quant: str
    channels: str
    tflite: tuple[str, ...] = ()
    mil: tuple[str, ...] = ()
    fixed_range: tuple[float, float] | None = None
    unsupported: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self):
        if self.quant not in QUANT_ROLES or self.channels not in CHANNEL_KINDS:
            raise ValueError(f"op {self.name}: quant {self.quant!r} / channels {self.channels!r} not a known value")
        if (self.quant == "fixed") != (self.fixed_range is not None):
            raise ValueError(f"op {self.name}: a fixed_range goes with quant='fixed' and only with it")
        if not self.unsupported <= set(CONSUMERS):
            raise ValueError(f"op {self.name}: unknown consumers {sorted(self.unsupported - set(CONSUMERS))}")


@fx.wrap
def channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel dot product over channels: ``sum_c a[:, c] * b[:, c]``, keeping the channel dim.

    Args:
        a, b: float32 (N, C, H, W), or shapes that broadcast to it (PKN-fixed's global kernel
            weights are (1, C, 1, 1)).
    Returns:
        float32 (N, 1, H, W).

    One op (a leaf of ``torch.fx`` traces) so that the int8 graph computes it as TFLite's
    BATCH_MATMUL: the C products accumulate in int32 and are rounded to int8 once, where a MUL
    then a SUM rounds every product to the MUL's int8 scale first (eSR's ``value * softmax``:
    docs/esr_head.md, ``python bench/esr_head.py --trained runs/quant``, compares the two).
    """
    return torch.sum(a * b, dim=1, keepdim=True)


def _no(*consumers: str) -> frozenset[str]:
    return frozenset(consumers)


OPS: tuple[Op, ...] = (
    Op("conv2d", (nn.Conv2d, F.conv2d), "fusing", "conv", ("CONV_2D", "DEPTHWISE_CONV_2D"), ("conv",)),
    # coremltools makes a PReLU whose slopes are all equal a leaky_relu.
    Op("prelu", (nn.PReLU,), "quantize", "elementwise", ("PRELU",), ("prelu", "leaky_relu")),
    Op("relu", (nn.ReLU, F.relu, torch.relu, "relu"), "relu", "elementwise", ("RELU",), ("relu",)),
    Op("relu6", (nn.ReLU6, F.relu6), "relu", "elementwise", ("RELU6",), ("clip",)),
    # Absent from the converted graphs: Dropout is the identity in eval mode, contiguous a no-op.
    Op("identity", (nn.Identity, nn.Dropout, "contiguous"), "identity", "elementwise", (), ()),
    Op("add", (operator.add, torch.add, "add", operator.iadd), "fusing", "elementwise", ("ADD",), ("add",)),
    Op("sub", (operator.sub, torch.sub, "sub"), "quantize", "elementwise", ("SUB",), ("sub",)),
    Op("mul", (operator.mul, torch.mul, "mul"), "quantize", "elementwise", ("MUL",), ("mul",)),
    Op("clamp", (torch.clamp, torch.clip, "clamp", "clip", nn.Hardtanh, F.hardtanh), "shared", "elementwise",
       ("MAXIMUM", "MINIMUM", "RELU", "RELU6"), ("clip",)),
    Op("depth_to_space", (nn.PixelShuffle, F.pixel_shuffle, torch.pixel_shuffle), "shared", "depth_to_space",
       ("DEPTH_TO_SPACE",), ("pixel_shuffle",)),
    Op("concat", (torch.cat, torch.concat), "concat", "fixed", ("CONCATENATION",), ("concat",)),
    Op("getitem", (operator.getitem,), "slice", "fixed", ("STRIDED_SLICE",), ("slice_by_index",)),
    Op("reduce_max", (torch.amax, "amax"), "shared", "invariant", ("REDUCE_MAX",), ("reduce_max",)),
    # torch.max(x, dim, keepdim) returns (values, indices); its values (``[0]``) are REDUCE_MAX.
    Op("max", (torch.max, "max"), "tuple", "invariant", ("REDUCE_MAX",), ("reduce_max",)),
    # torch.amin lowers to REDUCE_MIN, which the Keras rebuild and the TFLite emulations lack.
    Op("reduce_min", (torch.amin, "amin"), "shared", "invariant", ("REDUCE_MIN",), ("reduce_min",),
       unsupported=_no("keras", "integer_ref", "gpu_emulation")),
    Op("sum", (torch.sum, "sum"), "quantize", "invariant", ("SUM",), ("reduce_sum",)),
    # Both operands in PyTorch's channel order ("fixed"): the C axis is the matmul's inner one.
    # int8 and w8a16 graphs: EXPAND_DIMS, BATCH_MATMUL, SQUEEZE (dynamic H x W) or RESHAPE,
    # BATCH_MATMUL (fixed size); float graphs: MUL, SUM (keras_ops._channel_dot).
    Op("channel_dot", (channel_dot,), "quantize", "fixed",
       ("EXPAND_DIMS", "BATCH_MATMUL", "SQUEEZE", "RESHAPE", "MUL", "SUM"), ("mul", "reduce_sum")),
    # int8 MEAN has no kernel in the integer reference (no zoo model uses it).
    Op("mean", (torch.mean, "mean"), "quantize", "invariant", ("MEAN",), ("reduce_mean",), unsupported=_no("integer_ref")),
    Op("softmax", (nn.Softmax, F.softmax, torch.softmax, "softmax"), "fixed", "elementwise", ("SOFTMAX",), ("softmax",),
       fixed_range=SOFTMAX_RANGE),
    Op("sigmoid", (nn.Sigmoid, torch.sigmoid, "sigmoid"), "fixed", "elementwise", ("LOGISTIC",), ("sigmoid",),
       fixed_range=SOFTMAX_RANGE, unsupported=_no("keras")),
    Op("tanh", (nn.Tanh, torch.tanh, "tanh"), "fixed", "elementwise", ("TANH",), ("tanh",), fixed_range=TANH_RANGE),
    Op("exp", (torch.exp, "exp"), "quantize", "elementwise", ("EXP",), ("exp",)),
    # Shape ops: they keep their input's parameters; the Keras rebuild works on 4-D NHWC tensors
    # only and refuses them (no zoo deploy graph has one).
    Op("reshape", (torch.reshape, "reshape", "view", torch.flatten, "flatten", nn.Flatten), "shared",
       "fixed", ("RESHAPE",), ("reshape",), unsupported=_no("keras")),
    Op("transpose", (torch.permute, "permute", torch.transpose, "transpose"), "shared", "fixed", ("TRANSPOSE",),
       ("transpose",), unsupported=_no("keras", "integer_ref", "gpu_emulation")),
    Op("max_pool2d", (nn.MaxPool2d, F.max_pool2d), "shared", "fixed", ("MAX_POOL_2D",), ("max_pool",),
       unsupported=_no("keras", "integer_ref", "gpu_emulation", "mil")),
    # Shape queries (x.size(), x.dim(), getattr on a proxy): the Keras rebuild has static 4-D NHWC
    # tensors and refuses them.
    Op("shape", ("size", "dim", getattr), "none", "none", unsupported=_no("keras")),
)

_BY_TARGET: dict[object, Op] = {}
_BY_NAME: dict[str, Op] = {}
for _op in OPS:
    if _op.name in _BY_NAME:
        raise ValueError(f"op table: {_op.name} twice")
    _BY_NAME[_op.name] = _op
    for _t in _op.targets:
        if _BY_TARGET.get(_t, _op) is not _op:  # (some targets are aliases: F.pixel_shuffle is torch.pixel_shuffle)
            raise ValueError(f"op table: target {_t!r} in {_BY_TARGET[_t].name} and {_op.name}")
        _BY_TARGET[_t] = _op
del _op, _t


def op_named(name: str) -> Op:
    """The row called ``name``. Raises KeyError for an unknown name."""
    return _BY_NAME[name]


def op_of(gm: fx.GraphModule, node: fx.Node) -> Op | None:
    """The row of a ``call_module`` / ``call_function`` / ``call_method`` node, or None.

    Modules are matched by exact class first, then by ``isinstance`` (a subclass of
    ``nn.Conv2d`` is a conv). Placeholders, outputs and ``get_attr`` nodes are no op: None.
    """
    if node.op == "call_module":
        cls = type(gm.get_submodule(node.target))
        if cls in _BY_TARGET:
            return _BY_TARGET[cls]
        return next((op for t, op in _BY_TARGET.items() if isinstance(t, type) and issubclass(cls, t)), None)
    if node.op in ("call_function", "call_method"):
        try:
            return _BY_TARGET.get(node.target)
        except TypeError:  # an unhashable target
            return None
    return None


def consumer_ops(consumer: str) -> list[Op]:
    """The rows that ``consumer`` (one of :data:`CONSUMERS`) must implement."""
    if consumer not in CONSUMERS:
        raise ValueError(f"unknown consumer {consumer!r}; expected one of {', '.join(CONSUMERS)}")
    return [op for op in OPS if consumer not in op.unsupported]
