"""Fake quantization in PyTorch: float tensors that carry exactly the int8 values TFLite stores.

* Activations: per-tensor asymmetric int8 with TF's nudged range, bit for bit TF's
  ``FakeQuantWithMinMaxVars`` forward (:func:`fake_quant_activation`, tested against
  TensorFlow and :func:`edgesr.quantization.arithmetic.fake_quant`).
* Weights: per-output-channel symmetric int8 in [-127, 127], scale ``max|w| / 127``
  (:func:`fake_quant_weight`, equal to :func:`~edgesr.quantization.arithmetic.quantize_weights_per_channel`
  dequantized); conv biases as int32 with scale ``input_scale * weight_scale``.
* PReLU slopes: per-tensor symmetric int8, scale ``max|alpha| / 127`` (what TFLite stores).
* Constant operands of elementwise ops (fx ``get_attr`` tensors, e.g. PKN's sub-pixel offsets
  feeding a MUL): per-tensor asymmetric int8 at their own nudged range [min(c, 0), max(c, 0)],
  what the TFLite converter stores for a constant input of an int8 MUL/ADD (read back from a
  LiteRT model in ``tests/test_quantization_tflite.py``; PKN x2: offsets in [-2.25, 1.75] at
  scale 4/255, zero point 15). Python scalars need nothing: a one-value constant sits on an end
  of its own range, which the grid holds exactly.

Gradients are straight-through: d out / d x = 1 inside the nudged range, 0 outside (TF's
FakeQuant gradient); weights and biases pass gradients unchanged. With learnable ranges the
range bounds receive the gradient of the scale and nudged minimum (LSQ-style).

:func:`fake_quant_module` rewrites a traced deploy module: a fake-quant after every node that is
an int8 tensor in TFLite (:func:`edgesr.quantization.graph.quant_plan`), the same quantizer re-applied
where TFLite keeps the input's parameters, and quantized weights in every conv.
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from edgesr.quantization.graph import (
    QUANTIZE,
    SHARED,
    clip_limits,
    quant_plan,
    range_source,
    tensor_nodes,
    trace,
)
from edgesr.quantization.lsq import lsq_fake_quant
from torch import fx, nn

from edgesr.core.errors import EdgesrError

RANGE_MODES = ("fixed", "ema", "learn", "lsq")
"""How :class:`ActivationFakeQuant` ranges change in training mode."""

MIN_RANGE_WIDTH = 1e-6
"""Narrowest activation range used (a constant-zero tensor would give scale 0)."""


def _floor_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.floor(x) - x).detach()


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def _round_half_away_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (_round_half_away(x) - x).detach()


def fake_quant_activation(x: torch.Tensor, rmin: torch.Tensor, rmax: torch.Tensor) -> torch.Tensor:
    """Per-tensor asymmetric int8 fake quantization, TF's FakeQuant forward in float32.

    Nudging (``Nudge`` in ``fake_quant_ops_functor.h``), uint8 domain [0, 255]::

        scale = (rmax - rmin) / 255;  inv_scale = 255 / (rmax - rmin)
        zp = clamp(round_half_away(-rmin / scale), 0, 255)       (int8 zero point = zp - 128)
        nudged_min, nudged_max = -zp * scale, (255 - zp) * scale
        out = floor((clamp(x, nudged_min, nudged_max) - nudged_min) * inv_scale - zp + 0.5) * scale

    Args:
        x: float32 tensor, any shape (e.g. (N, C, H, W)).
        rmin, rmax: 0-dim float32 tensors with rmin <= 0 <= rmax, rmax > rmin (callers
            enforce it; see :class:`ActivationFakeQuant`). May require grad.
    Returns:
        float32 tensor of x's shape whose values are ``scale * (q - zero_point)``, q in [-128, 127].
    """
    scale = (rmax - rmin) / 255.0
    inv_scale = 255.0 / (rmax - rmin)
    zero_point_from_min = 0.0 - rmin.detach() / scale.detach()
    zp = torch.clamp(_round_half_away(zero_point_from_min), 0.0, 255.0)
    nudged_min = (0.0 - zp) * scale
    nudged_max = (255.0 - zp) * scale
    quant_zero = torch.floor(-nudged_min.detach() * inv_scale.detach() + 0.5)
    shifted = torch.minimum(torch.maximum(x, nudged_min), nudged_max) - nudged_min
    return _floor_ste(shifted * inv_scale - quant_zero + 0.5) * scale


def weight_scales(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scales ``max|w[c]| / 127`` (float64 division, float32 result), shape (O,).

    An all-zero channel gets 1.0. ``w``: (O, ...) float, e.g. conv OIHW.
    """
    absmax = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1).double()
    return torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax)).float()


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-channel symmetric int8 fake quantization of weights (O, ...): range [-127, 127], zp 0.

    ``q = clamp(round_half_away(w / scale[c]), -127, 127)`` in float64, returns ``q * scale[c]``
    as float32 with a straight-through gradient.
    """
    shape = (-1,) + (1,) * (w.dim() - 1)
    scale = weight_scales(w).double().reshape(shape)
    q = torch.clamp(_round_half_away(w.detach().double() / scale), -127.0, 127.0)
    return w + ((q * scale).float() - w).detach()


def fake_quant_bias(b: torch.Tensor, bias_scale: torch.Tensor) -> torch.Tensor:
    """int32 bias fake quantization: ``round_half_away(b / bias_scale) * bias_scale`` (STE).

    ``bias_scale``: (O,) float32, ``input_scale * weight_scale[c]``.
    """
    return _round_half_away_ste(b / bias_scale) * bias_scale


class ActivationFakeQuant(nn.Module):
    """The int8 quantizer of one TFLite tensor: range [rmin, rmax] -> :func:`fake_quant_activation`.

    Args:
        rmin, rmax: initial range (widened to contain 0 and at least :data:`MIN_RANGE_WIDTH`).
        mode: ``"fixed"`` (buffers), ``"ema"`` (buffers; in training mode each observed batch
            moves them by ``momentum`` towards the batch min/max, as tfmot's moving-average
            quantizers do), ``"learn"`` (parameters trained by the straight-through gradient
            of the exact arithmetic) or ``"lsq"`` (parameters; in training mode the fused
            :func:`~edgesr.quantization.lsq.lsq_fake_quant` with LSQ's step-size and offset
            gradients, in eval mode the exact arithmetic).
    """

    def __init__(self, rmin: float, rmax: float, mode: str = "fixed", momentum: float = 0.01):
        super().__init__()
        if mode not in RANGE_MODES:
            raise EdgesrError(f"range mode must be one of {', '.join(RANGE_MODES)}, got {mode!r}")
        lo, hi = min(float(rmin), 0.0), max(float(rmax), 0.0)
        lo_t, hi_t = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
        if mode in ("learn", "lsq"):
            self.rmin, self.rmax = nn.Parameter(lo_t), nn.Parameter(hi_t)
        else:
            self.register_buffer("rmin", lo_t)
            self.register_buffer("rmax", hi_t)
        self.mode, self.momentum = mode, momentum

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The range in use: rmin <= 0 <= rmax, rmax - rmin >= MIN_RANGE_WIDTH (0-dim float32)."""
        lo = torch.clamp(self.rmin, max=0.0)
        hi = torch.maximum(torch.clamp(self.rmax, min=0.0), lo + MIN_RANGE_WIDTH)
        return lo, hi

    def range(self) -> tuple[float, float]:
        lo, hi = self.bounds()
        return float(lo.detach()), float(hi.detach())

    def forward(self, x: torch.Tensor, observe: bool = True) -> torch.Tensor:
        if self.training and observe and self.mode == "ema":
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                self.rmin.lerp_(torch.clamp(lo, max=0.0), self.momentum)
                self.rmax.lerp_(torch.clamp(hi, min=0.0), self.momentum)
        if self.training and (self.mode == "lsq" or (self.mode == "fixed" and x.requires_grad)):
            # the fused function: the same forward as the composite below in fewer passes, LSQ's
            # range gradients, and for the input exactly the straight-through gradient on [m, M]
            return lsq_fake_quant(x, self.rmin, self.rmax, MIN_RANGE_WIDTH)
        lo, hi = self.bounds()
        return fake_quant_activation(x, lo, hi)


class QuantConv2d(nn.Module):
    """A conv with per-channel int8 weights and an int32 bias (scale input_scale * weight_scale).

    Wraps (does not copy) ``conv``, so training updates the float conv. ``input_quantizer``
    is the :class:`ActivationFakeQuant` of the conv's input (None: bias left in float).
    Input and output (N, C, H, W) float32.
    """

    def __init__(self, conv: nn.Conv2d, input_quantizer: ActivationFakeQuant | None):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise EdgesrError(f"int8 conv supports zero padding only, got padding_mode={conv.padding_mode!r}")
        self.conv = conv
        self._input_quantizer = [input_quantizer]  # a list: not registered as a second owner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        w = fake_quant_weight(c.weight)
        b, quantizer = c.bias, self._input_quantizer[0]
        if b is not None and quantizer is not None:
            lo, hi = quantizer.bounds()
            input_scale = ((hi - lo) / 255.0).detach()
            b = fake_quant_bias(b, input_scale * weight_scales(c.weight))
        return F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)


class QuantPReLU(nn.Module):
    """PReLU with int8 slopes as TFLite's converter stores PRELU's alpha: one symmetric scale
    ``max|alpha| / 127`` for the whole tensor, range [-127, 127], zero point 0 (checked against
    a converted model). Input and output (N, C, H, W) float32.
    """

    def __init__(self, prelu: nn.PReLU):
        super().__init__()
        self.prelu = prelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.prelu.weight
        return F.prelu(x, fake_quant_weight(a.reshape(1, -1)).reshape(a.shape))


_UNSUPPORTED = (nn.Linear, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Conv1d, nn.Conv3d)
_UNSUPPORTED_FUNCTIONS = {F.conv2d, F.conv_transpose2d, F.linear, F.prelu, torch.conv2d}


def fake_quant_module(deploy_module: nn.Module, ranges: dict[str, tuple[float, float]], *,
                      range_mode: str = "fixed", share_weights: bool = False,
                      activations: bool = True) -> fx.GraphModule:
    """The int8 simulation of ``deploy_module``: a traced copy with fake-quant inserted.

    Args:
        deploy_module: a plain deploy module (after ``collapse()``), float32, traceable by fx.
        ranges: ``{fx node name: (min, max)}`` for every int8 tensor node
            (:func:`edgesr.quantization.graph.tensor_nodes`), e.g. from :func:`edgesr.quantization.calibrate`.
        range_mode: one of :data:`RANGE_MODES` (:class:`ActivationFakeQuant`), for
            every quantizer except softmax/tanh outputs, the input (the contract's range) and
            a group that ends in the output clamp (its ``clamped`` entry: the clamp's range,
            the display grid; :func:`~edgesr.quantization.calibrate`), which stay fixed.
        share_weights: wrap ``deploy_module``'s own convs (QAT trains them) instead of a copy.
        activations: False leaves every activation and bias in float: the int8 weights (and
            PReLU slopes) alone, which is what a w8a16 model's int16 activations come within
            1/256 of an int8 step of (``ranges`` then unused; ``quantizers`` empty).
    Returns:
        ``fx.GraphModule`` with the same ``contract``/``scale`` attributes, input and output
        shapes as ``deploy_module``; its ``quantizers`` attribute maps node names to their
        :class:`ActivationFakeQuant` (:func:`quantizer_ranges` reads them back), its ``clamped``
        attribute the groups that end in the output clamp, ``{source node: (lo, hi)}``
        (:func:`edgesr.quantization.graph.clip_limits`).

    Raises:
        EdgesrError: a node without a range, or a layer int8 simulation does not cover
        (weights passed to a functional conv/linear/prelu, Linear, ConvTranspose2d, BatchNorm).
    """
    module = deploy_module if share_weights else copy.deepcopy(deploy_module)
    gm = trace(module)
    plan = quant_plan(gm)
    limits = clip_limits(gm, plan)
    quantizers: dict[str, ActivationFakeQuant] = {}
    for name, point in plan.items():  # first every quantizer: a shared one may come later (concat)
        if point.kind == QUANTIZE and activations:
            rng = point.fixed_range or ranges.get(name)
            if rng is None:
                raise EdgesrError(f"activation range missing for node {name!r} (have: {', '.join(sorted(ranges))})")
            # fixed: softmax/tanh outputs and the input (the contract's range). A same-scale
            # cluster's EMA is updated once per member, which narrows its range below the union;
            # measured on SplitSR-S (Set5 int8 drop after 200 QAT steps) that beats keeping the
            # calibrated union fixed: x2 1.42 vs 1.92 dB, x4 0.51 vs 0.60 dB.
            fixed = (point.fixed_range is not None or name in limits
                     or gm.graph.find_nodes(op="placeholder", target=name) != [])
            quantizers[name] = ActivationFakeQuant(rng[0], rng[1], "fixed" if fixed else range_mode)
            gm.add_submodule(f"fq_{name}", quantizers[name])
    graph = gm.graph
    for node in list(graph.nodes):
        point = plan[node.name]
        if point.kind not in (QUANTIZE, SHARED) or not activations:
            continue
        with graph.inserting_after(node):
            kwargs = {} if point.kind == QUANTIZE or point.observed else {"observe": False}
            fq_node = graph.call_module(f"fq_{range_source(plan, node.name)}", (node,), kwargs)
        node.replace_all_uses_with(fq_node, delete_user_cb=lambda user, fq=fq_node: user is not fq)
    if activations:
        quantize_constant_operands(gm)
    for node in graph.nodes:
        if node.op == "call_function" and node.target in _UNSUPPORTED_FUNCTIONS:
            raise EdgesrError(f"int8 simulation needs weights in modules; node {node.name!r} calls {node.target.__name__}")
        if node.op != "call_module" or node.target.startswith("fq_"):
            continue
        mod = gm.get_submodule(node.target)
        if isinstance(mod, _UNSUPPORTED):
            raise EdgesrError(f"int8 simulation does not support {type(mod).__name__} (node {node.name!r})")
        if isinstance(mod, nn.Conv2d):
            arg = node.args[0]
            feeds_from_quantizer = arg.op == "call_module" and str(arg.target).startswith("fq_")
            new = QuantConv2d(mod, quantizers[arg.target[3:]] if feeds_from_quantizer else None)
        elif isinstance(mod, nn.PReLU):
            new = QuantPReLU(mod)
        else:
            continue
        parent, _, leaf = node.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, leaf, new)
    graph.lint()
    gm.recompile()
    for attr in ("contract", "scale", "registry_name", "registry_kwargs"):
        if hasattr(deploy_module, attr):
            setattr(gm, attr, getattr(deploy_module, attr))
    gm.quantizers, gm.quant_plan, gm.clamped = quantizers, plan, limits
    return gm.train(deploy_module.training)


def snap_weights_to_int8(deploy_module: nn.Module) -> nn.Module:
    """A copy of ``deploy_module`` whose conv weights and PReLU slopes are their int8 values.

    Every weight the int8 simulation quantizes (:func:`fake_quant_module`: each ``nn.Conv2d``
    per output channel, symmetric [-127, 127]; each PReLU's slopes per tensor) is replaced by its
    dequantized int8 value ``q * scale`` (round half away from zero, float64 then float32;
    :func:`fake_quant_weight`). The int8 values are unchanged by a second snap, so exports and
    the simulation of the result carry the same int8 weights as before, while the float module
    now computes with them. QAT needs it: its latent float weights are trained for what they
    round to, and their float function can be far from it (the authors' eSR-MAX x2 after the
    default recipe's LSQ QAT on T91: 30.83 dB on Set5 in float against 34.86 dB with its int8
    weights), which would make the float module a wrong reference and a wrong fp32 export.

    Args:
        deploy_module: plain deploy module (after ``collapse()``), float32, fx-traceable; not modified.
    Returns:
        a new module of the same class and attributes, in ``deploy_module``'s train/eval mode.
    Raises:
        EdgesrError: what :func:`fake_quant_module` raises for layers it does not cover.
    """
    module = copy.deepcopy(deploy_module)
    sim = fake_quant_module(module, {}, share_weights=True, activations=False)
    with torch.no_grad():
        for mod in sim.modules():
            if isinstance(mod, QuantConv2d):
                mod.conv.weight.copy_(fake_quant_weight(mod.conv.weight))
            elif isinstance(mod, QuantPReLU):
                a = mod.prelu.weight
                a.copy_(fake_quant_weight(a.reshape(1, -1)).reshape(a.shape))
    return module


def constant_operand_range(value: torch.Tensor) -> tuple[float, float]:
    """The int8 range TFLite's converter gives a constant operand: ``[min(c, 0), max(c, 0)]``
    (widened to :data:`MIN_RANGE_WIDTH` for an all-zero constant)."""
    lo, hi = min(float(value.min()), 0.0), max(float(value.max()), 0.0)
    return (lo, hi) if hi - lo >= MIN_RANGE_WIDTH else (lo, lo + MIN_RANGE_WIDTH)


def quantize_constant_operands(gm: fx.GraphModule) -> None:
    """Point every float ``get_attr`` tensor that a non-module op reads (an elementwise op's
    constant operand) at its int8 values as TFLite stores them (:func:`constant_operand_range`,
    dequantized, same shape and dtype) in a new buffer ``fq_const_<name>``, in place on ``gm``;
    the module's own constant is left as it is."""
    for node in list(gm.graph.nodes):
        if node.op != "get_attr" or all(user.op == "call_module" for user in node.users):
            continue
        value = functools.reduce(getattr, node.target.split("."), gm)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        lo, hi = constant_operand_range(value)
        with torch.no_grad():
            q = fake_quant_activation(value.detach().float(), torch.tensor(lo), torch.tensor(hi)).to(value.dtype)
        name = "fq_const_" + node.target.replace(".", "_")
        gm.register_buffer(name, q)
        node.target = name


def quantizer_ranges(gm: fx.GraphModule) -> dict[str, tuple[float, float]]:
    """Current ``{node name: (min, max)}`` of a :func:`fake_quant_module` result.

    Every int8 tensor node of the original graph is a key; nodes that keep their input's
    parameters (depth-to-space, the final clip) repeat their source's range.
    """
    plan = gm.quant_plan
    return {name: gm.quantizers[range_source(plan, name)].range() for name in tensor_nodes(plan)}
