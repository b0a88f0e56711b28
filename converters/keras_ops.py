"""The Keras emitters of the generic Keras rebuild (:mod:`edgesr.converters.keras_rebuild`).

Which fx targets are which op, and how each op treats channel layouts, is the op table's
(:mod:`edgesr.core.ops`); :data:`EMITTERS` holds, per op name, an emitter
``emit(builder, node, *args, **kwargs) -> keras tensor`` working on NHWC tensors, and
:func:`spec_of` pairs the two. To support a new op, add its row to the op table and its
emitter here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesr.core.errors import EdgesrError
from edgesr.core.ops import op_of
from edgesr.core.thirdparty import block_triton_after_tensorflow

# Channel kinds (the op table's ``channels`` column): how an op treats channel layouts.
ELEMENTWISE = "elementwise"  # per-channel op: output layout = input layout (any perm)
CONV = "conv"                # absorbs any input layout and produces any output layout
INVARIANT = "invariant"      # reduces over channels: accepts any layout, outputs 1 channel
FIXED = "fixed"              # needs the PyTorch channel order in and produces it
DEPTH_TO_SPACE = "depth_to_space"  # needs the permuted order (module doc) in, produces PyTorch order


@dataclass(frozen=True)
class OpSpec:
    """One entry of the op table: ``emit(builder, node, *args, **kwargs) -> keras tensor``."""

    emit: Callable
    kind: str


def _keras():
    block_triton_after_tensorflow()
    import keras

    return keras


# --------------------------------------------------------------------------- Keras layers


def _layers():
    """Small custom layers (defined lazily so importing this module does not load TF)."""
    global _LAYERS
    if _LAYERS is not None:
        return _LAYERS
    block_triton_after_tensorflow()
    import tensorflow as tf

    keras = _keras()

    class DepthToSpace(keras.layers.Layer):
        """NHWC depth-to-space (TFLite DEPTH_TO_SPACE): (1, H, W, r*r*C) -> (1, r*H, r*W, C)."""

        def __init__(self, block: int, **kw):
            super().__init__(**kw)
            self.block = block

        def call(self, x):
            return tf.nn.depth_to_space(x, self.block)

        def compute_output_shape(self, s):
            r = self.block
            mul = lambda d: None if d is None else d * r  # noqa: E731
            return (s[0], mul(s[1]), mul(s[2]), s[3] // (r * r))

    class FakeQuant(keras.layers.Layer):
        """8-bit fake-quant with fixed (min, max), nudged as TFLite does (zero exactly representable)."""

        def __init__(self, lo: float, hi: float, **kw):
            super().__init__(**kw)
            self.lo, self.hi = float(lo), float(hi)

        def call(self, x):
            return tf.quantization.fake_quant_with_min_max_args(x, min=self.lo, max=self.hi, num_bits=8)

    class ChannelGather(keras.layers.Layer):
        """Reorder channels: output channel k = input channel ``index[k]`` (TFLite GATHER)."""

        def __init__(self, index, **kw):
            super().__init__(**kw)
            self.index = [int(i) for i in index]

        def call(self, x):
            return tf.gather(x, self.index, axis=-1)

        def compute_output_shape(self, s):
            return (*s[:3], len(self.index))

    class ChannelSlice(keras.layers.Layer):
        """Channels ``start:stop`` of an NHWC tensor (TFLite STRIDED_SLICE)."""

        def __init__(self, start: int, stop: int, **kw):
            super().__init__(**kw)
            self.start, self.stop = int(start), int(stop)

        def call(self, x):
            return x[..., self.start : self.stop]

        def compute_output_shape(self, s):
            return (*s[:3], self.stop - self.start)

    class ConstMul(keras.layers.Layer):
        """``x * c`` for a constant ``c`` (TFLite MUL). ``keras.ops.multiply`` marks its result
        sparse when an operand is not a KerasTensor, which breaks the fake-quant after it."""

        def __init__(self, c, **kw):
            super().__init__(**kw)
            self.c = np.asarray(c, np.float32)

        def call(self, x):
            return x * tf.constant(self.c)

        def compute_output_shape(self, s):  # NumPy broadcasting; None (dynamic) stays None
            c = (1,) * (len(s) - self.c.ndim) + self.c.shape
            return tuple(d if k == 1 else k for d, k in zip(s, c))

    _LAYERS = {"DepthToSpace": DepthToSpace, "FakeQuant": FakeQuant, "ChannelGather": ChannelGather,
               "ChannelSlice": ChannelSlice, "ConstMul": ConstMul}
    return _LAYERS


_LAYERS = None


def _constant_nhwc(t: torch.Tensor, perm) -> np.ndarray:
    """A constant operand of an elementwise op as float32 NumPy, NCHW -> NHWC, channels in ``perm`` order."""
    arr = t.detach().numpy().astype(np.float32)
    if arr.ndim == 4:
        arr = arr.transpose(0, 2, 3, 1)
    return arr[..., _perm_index(perm, arr.shape[-1])] if perm is not None else arr


def _perm_index(perm, n):
    return np.asarray(perm if perm is not None else range(n))


# --------------------------------------------------------------------------- op emitters


def _bind(args, kwargs, names, defaults):
    out = dict(zip(names, args))
    for k in names:
        if k not in out:
            out[k] = kwargs.get(k, defaults.get(k))
    return out


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv(b, node, x, weight, bias, stride=1, padding=0, dilation=1, groups=1):
    """Conv2d (OIHW weights) as Keras Conv2D / DepthwiseConv2D with HWIO weights."""
    keras = _keras()
    w = weight.numpy().astype(np.float32)
    bias = np.zeros(w.shape[0], np.float32) if bias is None else bias.numpy().astype(np.float32)
    cout, cin_g, kh, kw = w.shape
    have = b.layout.get(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
    if groups == 1 and have is not None:  # absorb the input's channel layout
        w = w[:, _perm_index(have, cin_g)]
    elif have is not None:
        x = b.to_layout(x, have, None)
    out_perm = _perm_index(b.layout.get(node), cout)
    w, bias = w[out_perm], bias[out_perm]
    stride, dilation = _pair(stride), _pair(dilation)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise EdgesrError(f"keras rebuild: conv padding {padding!r} not supported")
        pad = padding
    else:
        ph, pw = _pair(padding)
        same = stride == (1, 1) and kh % 2 == 1 and kw % 2 == 1 and (ph, pw) == (dilation[0] * (kh // 2), dilation[1] * (kw // 2))
        pad = "same" if same else "valid"
        if not same and (ph or pw):
            x = keras.layers.ZeroPadding2D(((ph, ph), (pw, pw)))(x)
    cin = cin_g * groups
    if groups > 1 and groups == cin and cout % cin == 0:  # depthwise: TFLite DEPTHWISE_CONV_2D
        layer = keras.layers.DepthwiseConv2D((kh, kw), strides=stride, padding=pad, dilation_rate=dilation,
                                             depth_multiplier=cout // cin)
        y = layer(x)
        # OIHW (cin*m, 1, kh, kw) -> (kh, kw, cin, m); PyTorch output channel o = c*m + k
        layer.set_weights([w[:, 0].reshape(cin, cout // cin, kh, kw).transpose(2, 3, 0, 1), bias])
        return y
    layer = keras.layers.Conv2D(cout, (kh, kw), strides=stride, padding=pad, dilation_rate=dilation, groups=groups)
    y = layer(x)
    layer.set_weights([w.transpose(2, 3, 1, 0), bias])  # OIHW -> HWIO
    return y


def _conv_module(b, node, x):
    m = b.module(node)
    if not isinstance(m, nn.Conv2d) or m.padding_mode != "zeros":
        raise EdgesrError(f"keras rebuild: module {node.target} ({type(m).__name__}, padding_mode={getattr(m, 'padding_mode', None)}) not supported")
    bias = None if m.bias is None else m.bias.detach()
    return _conv(b, node, x, m.weight.detach(), bias, m.stride, m.padding, m.dilation, m.groups)


def _conv_function(b, node, *args, **kwargs):
    a = _bind(args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
              {"stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    for key in ("weight", "bias"):
        if a[key] is not None and not isinstance(a[key], torch.Tensor):
            raise EdgesrError(f"keras rebuild: F.conv2d {key} of node {node.name} is computed in forward, not a parameter (export the collapsed module)")
    return _conv(b, node, a["input"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"], a["groups"])


def _prelu(b, node, x):
    m = b.module(node)
    keras = _keras()
    alpha = m.weight.detach().numpy().astype(np.float32)
    if alpha.size == 1:
        layer = keras.layers.PReLU(shared_axes=[1, 2, 3])
        y = layer(x)
        layer.set_weights([alpha.reshape(1, 1, 1)])
        return y
    alpha = alpha[_perm_index(b.layout.get(node), alpha.size)]
    layer = keras.layers.PReLU(shared_axes=[1, 2])  # one slope per channel: native TFLite PRELU
    y = layer(x)
    layer.set_weights([alpha.reshape(1, 1, -1)])
    return y


def _binary(fn):
    def emit(b, node, x, y, *rest, **kw):
        if rest or kw.get("alpha", 1) != 1:
            raise EdgesrError(f"keras rebuild: {node.target} with alpha/extra arguments not supported")
        return fn(x, y)

    return emit


def _clamp(b, node, x, min=None, max=None):  # noqa: A002 (PyTorch's names)
    ops = _keras().ops
    if min is not None:
        x = ops.maximum(x, float(min))
    if max is not None:
        x = ops.minimum(x, float(max))
    return x


def _pixel_shuffle(b, node, x, upscale_factor):
    return _layers()["DepthToSpace"](int(upscale_factor))(x)


def _channel_dim(node, dim, what):
    if dim not in (1, -3):
        raise EdgesrError(f"keras rebuild: {what} over dim {dim} not supported (only channels, dim=1, of NCHW)")


def _reduction(name):
    def emit(b, node, x, dim=None, keepdim=False, **kw):
        _channel_dim(node, dim, name)
        if not keepdim and name != "max_pair":
            raise EdgesrError(f"keras rebuild: {name} over channels needs keepdim=True")
        ops = _keras().ops
        fn = {"sum": ops.sum, "mean": ops.mean, "amax": ops.max, "max_pair": ops.max}[name]
        y = fn(x, axis=-1, keepdims=True)
        return (y, None) if name == "max_pair" else y

    return emit


def _max(b, node, x, dim=None, keepdim=False):
    if dim is None:
        raise EdgesrError("keras rebuild: torch.max without dim (a global max) not supported")
    if not keepdim:
        raise EdgesrError("keras rebuild: torch.max over channels needs keepdim=True")
    return _reduction("max_pair")(b, node, x, dim, True)


def _softmax(b, node, x, dim=None, **kw):
    _channel_dim(node, dim, "softmax")
    return _keras().ops.softmax(x, axis=-1)


def _cat(b, node, tensors, dim=0):
    _channel_dim(node, dim, "concat")
    return _keras().layers.Concatenate(axis=-1)(list(tensors))


def _channel_dot(b, node, x, y):
    """``sum_c x[..., c] * y[..., c]`` (NHWC, keeping the channel axis).

    For the int8 and w8a16 exports (``b.dot_as_matmul``) as TFLite BATCH_MATMUL, so that the C
    products accumulate in int32 (int64 for 16x8) and no product tensor needs a range of its own:
    with dynamic H and W, (1, H, W, 1, C) x (1, H, W, C, 1) -> (1, H, W, 1, 1),
    squeezed to (1, H, W, 1) (EXPAND_DIMS, BATCH_MATMUL, SQUEEZE; no shape arithmetic, rank 5,
    which the GPU and NNAPI delegates do not take); with a fixed input size (``export
    --input-size``, what those delegates want anyway) rank 4 throughout: RESHAPE to (1, H*W, 1, C)
    and (1, H*W, C, 1), BATCH_MATMUL, RESHAPE to (1, H, W, 1). Float graphs (fp32, fp16) keep
    MUL and SUM: the GPU delegate takes no rank-5 tensor and no EXPAND_DIMS/SQUEEZE, and in float
    nothing is rounded in between.
    """
    ops = _keras().ops
    if not getattr(b, "dot_as_matmul", False):
        return ops.sum(_ops_mul(x, y), axis=-1, keepdims=True)
    _, h, w, c = x.shape
    if h is not None and w is not None and tuple(x.shape) == tuple(y.shape):  # fixed size: rank 4 throughout
        m = ops.matmul(ops.reshape(x, (1, h * w, 1, c)), ops.reshape(y, (1, h * w, c, 1)))
        return ops.reshape(m, (1, h, w, 1))
    return ops.squeeze(ops.matmul(ops.expand_dims(x, 3), ops.expand_dims(y, 4)), axis=4)


def _unary(fn_name):
    return lambda b, node, x, *a, **k: getattr(_keras().ops, fn_name)(x)


def _identity(b, node, x, *a, **k):
    return x


def _channel_slice(index) -> slice | None:
    """``x[:, a:b]`` (optionally with trailing ``:`` or ``...``) -> slice(a, b); else None."""
    if not isinstance(index, tuple) or len(index) < 2 or index[0] != slice(None):
        return None
    ch, rest = index[1], index[2:]
    if not isinstance(ch, slice) or ch.step not in (None, 1):
        return None
    if any(r is not Ellipsis and r != slice(None) for r in rest):
        return None
    return ch


def _getitem(b, node, obj, index):
    if isinstance(obj, torch.Tensor):  # a slice of a constant (parameter or buffer): fold it
        return obj[index]
    if isinstance(obj, tuple):  # (values, indices) of torch.max(x, dim, keepdim)
        if index != 0:
            raise EdgesrError(f"keras rebuild: only the values of {node.args[0]} are supported, not item {index!r}")
        return obj[0]
    ch = _channel_slice(index)
    if ch is None:
        raise EdgesrError(f"keras rebuild: indexing {node.args[0]} with {index!r} not supported (only channel slices x[:, a:b])")
    start, stop, _ = ch.indices(b.channels(node.args[0]))
    return _layers()["ChannelSlice"](start, stop)(obj)


def _ops_add(x, y):
    return _keras().ops.add(x, y)


def _ops_sub(x, y):
    return _keras().ops.subtract(x, y)


def _ops_mul(x, y):
    keras = _keras()
    x_sym, y_sym = isinstance(x, keras.KerasTensor), isinstance(y, keras.KerasTensor)
    if x_sym != y_sym:  # tensor * constant
        return _layers()["ConstMul"](y if x_sym else x)(x if x_sym else y)
    return keras.ops.multiply(x, y)


def _conv_op(b, node, *args, **kwargs):
    return _conv_module(b, node, *args) if node.op == "call_module" else _conv_function(b, node, *args, **kwargs)


def _clamp_op(b, node, x, *args, **kwargs):
    if node.op == "call_module":  # nn.Hardtanh (nn.ReLU6 is the relu6 row)
        m = b.module(node)
        return _clamp(b, node, x, m.min_val, m.max_val)
    if node.target is F.hardtanh:
        a = _bind(args, kwargs, ("min_val", "max_val"), {"min_val": -1.0, "max_val": 1.0})
        return _clamp(b, node, x, a["min_val"], a["max_val"])
    return _clamp(b, node, x, *args, **kwargs)


def _depth_to_space_op(b, node, x, *args, **kwargs):
    if node.op == "call_module":
        return _pixel_shuffle(b, node, x, b.module(node).upscale_factor)
    return _pixel_shuffle(b, node, x, *args, **kwargs)


#: The emitter of each op of the op table (:data:`edgesr.core.ops.OPS`), by the op's name:
#: ``emit(builder, node, *args, **kwargs) -> keras tensor`` on NHWC tensors. Every op whose
#: row does not list "keras" as unsupported has one (``tests/test_ops.py``).
EMITTERS: dict[str, Callable] = {
    "conv2d": _conv_op,
    "prelu": _prelu,
    "relu": _unary("relu"),
    "relu6": _unary("relu6"),
    "identity": _identity,
    "add": _binary(_ops_add),
    "sub": _binary(_ops_sub),
    "mul": _binary(_ops_mul),
    "clamp": _clamp_op,
    "depth_to_space": _depth_to_space_op,
    "concat": _cat,
    "getitem": _getitem,
    "reduce_max": _reduction("amax"),
    "max": _max,
    "sum": _reduction("sum"),
    "channel_dot": _channel_dot,
    "mean": _reduction("mean"),
    "softmax": _softmax,
    "tanh": _unary("tanh"),
    "exp": _unary("exp"),
}


def spec_of(gm, node) -> OpSpec:
    """The emitter and channel kind of a call node, from the op table.

    Raises:
        EdgesrError: the op is not in :data:`edgesr.core.ops.OPS` or the Keras rebuild has no
            emitter for it (both named).
    """
    op = op_of(gm, node)
    if op is None or op.name not in EMITTERS:
        key = type(gm.get_submodule(node.target)) if node.op == "call_module" else node.target
        name = getattr(key, "__name__", str(key))
        where = "is not in the op table (edgesr.core.ops)" if op is None else f"({op.name}) has no Keras emitter"
        raise EdgesrError(f"keras rebuild: op {name!r} (node {node.name}) {where}")
    return OpSpec(EMITTERS[op.name], op.channels)
