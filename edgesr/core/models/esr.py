"""edge-SR (eSR): one-layer super-resolution for the masses.

Navarrete Michelini, Lu, Jiang, "edge-SR: Super-Resolution For The Masses", WACV 2022.
https://arxiv.org/abs/2108.10335 (upstream: github.com/pnavarre/eSR, GPL-3.0; the
authors publish 1,185 trained files in ``model-files/``, importable with
:func:`edgesr.core.importers.import_esr`).

Single-channel models on full-range luma (PIL ``convert('L')`` / 255, no 16-235 offset:
``IOContract(color="luma_full")``); scale s, kernel K, channels C:

* eSR-MAX: K x K conv 1 -> s*s*C (no bias) -> depth-to-space(s) -> max over the C channels.
* eSR-TM: conv 1 -> 2*s*s*C -> depth-to-space -> [value, key] ->
  sum_C value * softmax_C(key).
* eSR-TR: conv 1 -> 3*s*s*C -> depth-to-space -> [value, query, key] ->
  sum_C value * softmax_C(query * key).
* eSR-CNN (D > 0): conv 5x5 1 -> D (bias), tanh, conv 3x3 D -> S (bias), tanh,
  conv 3x3 S -> 2*s*s*C (no bias) -> depth-to-space -> [value, key] ->
  sum_C value * softmax_C(key * key).

After depth-to-space the channel groups lie on dim 1 of an (N, m*C, sH, sW) tensor (the
authors' order: PyTorch's pixel shuffle maps conv channel ``c*s*s + i*s + j`` to output
channel ``c``, sub-pixel (i, j)), so every reduction is over dim 1 with ``keepdim=True``
and no tensor exceeds rank 4. Every model clips its output to [0, 1]. Parameter and
state-dict key names match the authors' (``filter.weight``; ``filter.0/2/4.*`` for eSR-CNN).

eSR-MAX is its own deploy form. eSR-TM, -TR and -CNN collapse (the reparameterization
protocol, :mod:`edgesr.core.collapse`) into :class:`ESRDeploy`, which splits the head conv into
one conv per channel group. The function is the same; the int8 graph is not: in one conv the
value channels (pixel intensities, about [0, 1]) and the key/query channels (softmax logits,
about +-10 after training) are one TFLite tensor with one int8 scale, a step of about 0.07 for
the values, which is most of these models' int8 loss.

Registry: a generic factory per kind (``esr_max(scale, kernel, channels)``, ...) and the
paper's highlighted configurations per scale, named after the authors' ids
(``esr_max_s2_k7_c13``, alias ``eSR-MAX_s2_K7_C13``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from edgesr.core.contract import IOContract
from edgesr.core.ops import channel_dot
from edgesr.core.registry import register_model

torch.fx.wrap("channel_dot")  # a leaf of fx traces here too (fx.wrap patches the calling module's globals)

KINDS = ("MAX", "TM", "TR", "CNN")
_GROUPS = {"MAX": 1, "TM": 2, "TR": 3, "CNN": 2}  # channel groups m after depth-to-space


def _init_like_authors(conv: nn.Conv2d) -> None:
    """Xavier-normal weights with the kernel centre of input channel 0 set to 1 (the authors' init)."""
    nn.init.xavier_normal_(conv.weight, gain=1.0)
    k = conv.kernel_size[0] // 2
    with torch.no_grad():
        conv.weight[:, 0, k, k] = 1.0


class ESR(nn.Module):
    """An eSR-MAX, -TM or -TR model (one K x K conv, then a per-pixel channel reduction).

    Input (N, 1, H, W) float32 full-range luma in [0, 1]; output (N, 1, sH, sW) float32
    clipped to [0, 1].

    Args:
        kind: ``"MAX"``, ``"TM"`` or ``"TR"``.
        scale: s (2, 3 or 4).
        kernel: K, odd.
        channels: C, the channels reduced per output pixel.

    Raises:
        ValueError: unknown kind, even kernel or non-positive sizes.
    """

    def __init__(self, kind: str, scale: int, kernel: int = 7, channels: int = 13):
        super().__init__()
        if kind not in ("MAX", "TM", "TR"):
            raise ValueError(f"eSR kind must be MAX, TM or TR, got {kind!r}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"eSR kernel K must be odd and positive, got {kernel!r}")
        if channels < 1:
            raise ValueError(f"eSR channels C must be positive, got {channels!r}")
        self.kind, self.scale, self.kernel, self.channels = kind, scale, kernel, channels
        self.contract = IOContract(scale=scale, color="luma_full", channels=1)
        m = _GROUPS[kind]
        self.filter = nn.Conv2d(1, m * scale * scale * channels, kernel, padding=(kernel - 1) // 2, bias=False)
        _init_like_authors(self.filter)

    @property
    def model_id(self) -> str:
        """The authors' id, e.g. ``eSR-MAX_s2_K7_C13``."""
        return f"eSR-{self.kind}_s{self.scale}_K{self.kernel}_C{self.channels}"

    @property
    def receptive_field(self) -> int:
        """side, in LR pixels, of the square input window centred on an LR pixel that its s x s output pixels depend on (the tiling halo is ``receptive_field // 2``; tested by perturbing one input pixel): the one K x K filter."""
        return self.kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pixel_shuffle(self.filter(x), self.scale)  # (N, m*C, sH, sW)
        c = self.channels
        if self.kind == "MAX":
            y = torch.amax(h, dim=1, keepdim=True)
        elif self.kind == "TM":
            value, key = h[:, :c], h[:, c:]
            y = torch.sum(value * torch.softmax(key, dim=1), dim=1, keepdim=True)
        else:
            value, query, key = h[:, :c], h[:, c : 2 * c], h[:, 2 * c :]
            y = torch.sum(value * torch.softmax(query * key, dim=1), dim=1, keepdim=True)
        return torch.clamp(y, 0.0, 1.0)


class ESRAttention(ESR):
    """eSR-TM or -TR: an :class:`ESR` whose deploy form splits the conv per channel group."""

    def collapse(self) -> "ESRDeploy":
        """:class:`ESRDeploy` of this model (same function, exact in float); ``self`` is unchanged."""
        return ESRDeploy.of(self, self.filter, None)


class ESRDeploy(nn.Module):
    """Deploy form of eSR-TM, -TR and -CNN: one conv per channel group instead of one head conv.

    PyTorch's pixel shuffle maps conv channel ``c*s*s + i*s + j`` to output channel ``c``, so the
    head conv's output channels ``[g*s*s*C, (g+1)*s*s*C)`` become channel group ``g`` (value,
    then query for eSR-TR, then key) after depth-to-space. Group ``g``'s conv holds exactly those
    output channels of the head conv; the forward is the trained model's, group by group::

        value = d2s(value(h)); key = d2s(key(h))   (h = x, or trunk(x) for eSR-CNN)
        logits = key (TM), d2s(query(h)) * key (TR), key * key (CNN)
        y = clip(channel_dot(value, softmax_C(logits)), 0, 1)

    so every group is its own int8 tensor with its own scale (module doc of :mod:`edgesr.core.models.esr`),
    and the sum over C of value * softmax is one :func:`edgesr.core.ops.channel_dot` (TFLite
    BATCH_MATMUL: the products accumulate in int32 instead of being rounded to int8 one by one).
    Input (N, 1, H, W) float32 full-range luma in [0, 1]; output (N, 1, sH, sW) float32 in [0, 1].

    Args:
        kind: ``"TM"``, ``"TR"`` or ``"CNN"``.
        scale: s; channels: C.
        groups: ``{"value": conv, ["query": conv,] "key": conv}``, each (s*s*C) output channels.
        trunk: the layers before the head (eSR-CNN's two tanh convs), or None.
        receptive_field: the trained model's.
    """

    def __init__(self, kind: str, scale: int, channels: int, groups: dict[str, nn.Conv2d], trunk: nn.Module | None,
                 receptive_field: int):
        super().__init__()
        if kind not in ("TM", "TR", "CNN") or set(groups) != ({"value", "query", "key"} if kind == "TR" else {"value", "key"}):
            raise ValueError(f"eSR deploy form: kind {kind!r} with groups {sorted(groups)}")
        self.kind, self.scale, self.channels, self._receptive_field = kind, scale, channels, receptive_field
        self.contract = IOContract(scale=scale, color="luma_full", channels=1)
        self.trunk = trunk
        self.value, self.key = groups["value"], groups["key"]
        self.query = groups.get("query")

    @classmethod
    def of(cls, model: nn.Module, head: nn.Conv2d, trunk: nn.Module | None) -> "ESRDeploy":
        """The deploy form of ``model`` (an eSR-TM/TR/CNN) whose last conv is ``head`` (copied, not shared)."""
        names = ("value", "query", "key") if model.kind == "TR" else ("value", "key")
        n = model.scale * model.scale * model.channels
        groups = {}
        for g, name in enumerate(names):
            conv = nn.Conv2d(head.in_channels, n, head.kernel_size, padding=head.padding, bias=head.bias is not None)
            with torch.no_grad():
                conv.weight.copy_(head.weight[g * n : (g + 1) * n])
                if head.bias is not None:
                    conv.bias.copy_(head.bias[g * n : (g + 1) * n])
            groups[name] = conv.to(head.weight.device)
        deploy = cls(model.kind, model.scale, model.channels, groups, copy.deepcopy(trunk), model.receptive_field)
        deploy.registry_name = getattr(model, "registry_name", None)
        deploy.registry_kwargs = getattr(model, "registry_kwargs", {})
        return deploy

    @property
    def receptive_field(self) -> int:
        """The trained model's receptive field (LR pixels)."""
        return self._receptive_field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.trunk is None else self.trunk(x)
        value = F.pixel_shuffle(self.value(h), self.scale)
        key = F.pixel_shuffle(self.key(h), self.scale)
        if self.query is not None:
            logits = F.pixel_shuffle(self.query(h), self.scale) * key
        elif self.kind == "CNN":
            logits = key * key
        else:
            logits = key
        y = channel_dot(value, torch.softmax(logits, dim=1))
        return torch.clamp(y, 0.0, 1.0)


class ESRCNN(nn.Module):
    """eSR-CNN with D > 0: two tanh conv layers feed a [value, key] depth-to-space head.

    Input (N, 1, H, W) float32 full-range luma in [0, 1]; output (N, 1, sH, sW) float32
    clipped to [0, 1].

    Args:
        scale: s (2, 3 or 4).
        channels: C; depth: D (> 0, the 5x5 layer's width); size: S (the 3x3 layer's width).

    Raises:
        ValueError: a non-positive C, D or S (the authors' D = 0 variant is not supported).
    """

    def __init__(self, scale: int, channels: int = 8, depth: int = 3, size: int = 9):
        super().__init__()
        if min(channels, depth, size) < 1:
            raise ValueError(f"eSR-CNN needs C, D, S > 0, got C={channels} D={depth} S={size}")
        self.kind, self.scale, self.channels, self.depth, self.size = "CNN", scale, channels, depth, size
        self.contract = IOContract(scale=scale, color="luma_full", channels=1)
        self.filter = nn.Sequential(
            nn.Conv2d(1, depth, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(depth, size, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(size, 2 * scale * scale * channels, 3, padding=1, bias=False),
        )
        for i in (0, 2, 4):
            _init_like_authors(self.filter[i])

    @property
    def model_id(self) -> str:
        """The authors' id, e.g. ``eSR-CNN_s2_C8_D3_S9``."""
        return f"eSR-CNN_s{self.scale}_C{self.channels}_D{self.depth}_S{self.size}"

    @property
    def receptive_field(self) -> int:
        """side, in LR pixels, of the square input window centred on an LR pixel that its s x s output pixels depend on (the tiling halo is ``receptive_field // 2``; tested by perturbing one input pixel): 5x5, 3x3, 3x3 convs."""
        return 2 * (2 + 1 + 1) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pixel_shuffle(self.filter(x), self.scale)  # (N, 2C, sH, sW)
        value, key = h[:, : self.channels], h[:, self.channels :]
        y = torch.sum(value * torch.softmax(key * key, dim=1), dim=1, keepdim=True)
        return torch.clamp(y, 0.0, 1.0)

    def collapse(self) -> ESRDeploy:
        """:class:`ESRDeploy` of this model (same function, exact in float); ``self`` is unchanged."""
        return ESRDeploy.of(self, self.filter[4], self.filter[:4])


# ---------------------------------------------------------------- generic factories


@register_model(scales=(2, 3, 4), aliases=("eSR-MAX",))
def esr_max(scale: int = 2, kernel: int = 7, channels: int = 13) -> ESR:
    """eSR-MAX with any (s, K, C): conv K x K 1 -> s*s*C, depth-to-space, max over C."""
    return ESR("MAX", scale, kernel, channels)


@register_model(scales=(2, 3, 4), aliases=("eSR-TM",))
def esr_tm(scale: int = 2, kernel: int = 7, channels: int = 16) -> ESR:
    """eSR-TM with any (s, K, C): template matching, sum of value * softmax(key)."""
    return ESRAttention("TM", scale, kernel, channels)


@register_model(scales=(2, 3, 4), aliases=("eSR-TR",))
def esr_tr(scale: int = 2, kernel: int = 7, channels: int = 13) -> ESR:
    """eSR-TR with any (s, K, C): transformer-like, sum of value * softmax(query * key)."""
    return ESRAttention("TR", scale, kernel, channels)


@register_model(scales=(2, 3, 4), aliases=("eSR-CNN",))
def esr_cnn(scale: int = 2, channels: int = 8, depth: int = 3, size: int = 9) -> ESRCNN:
    """eSR-CNN with any (s, C, D, S): 5x5 tanh, 3x3 tanh, 3x3 -> [value, key] head."""
    return ESRCNN(scale, channels, depth, size)


def build(model_id: str) -> nn.Module:
    """The module for an authors' id such as ``eSR-TR_s3_K7_C13`` or ``eSR-CNN_s2_C8_D3_S9``.

    Raises:
        ValueError: not an eSR id, or a field missing / not an integer.
    """
    kind, fields = parse_model_id(model_id)
    if kind == "CNN":
        return ESRCNN(fields["s"], fields["C"], fields["D"], fields["S"])
    return (ESR if kind == "MAX" else ESRAttention)(kind, fields["s"], fields["K"], fields["C"])


def parse_model_id(model_id: str) -> tuple[str, dict[str, int]]:
    """``"eSR-MAX_s2_K7_C13"`` -> ``("MAX", {"s": 2, "K": 7, "C": 13})``.

    Raises:
        ValueError: not of the form ``eSR-{MAX,TM,TR}_s*_K*_C*`` or ``eSR-CNN_s*_C*_D*_S*``.
    """
    parts = model_id.split("_")
    head = parts[0]
    kind = head[4:] if head.startswith("eSR-") else None
    if kind not in KINDS:
        raise ValueError(f"{model_id!r} is not an eSR model id (eSR-MAX/TM/TR/CNN_...)")
    need = ("s", "C", "D", "S") if kind == "CNN" else ("s", "K", "C")
    fields: dict[str, int] = {}
    for p in parts[1:]:
        if p[:1] in need and p[1:].isdigit():
            fields[p[:1]] = int(p[1:])
    missing = [k for k in need if k not in fields]
    if missing or len(parts) != len(need) + 1:
        raise ValueError(f"{model_id!r}: expected fields {'_'.join(k + '*' for k in need)} after eSR-{kind}")
    return kind, fields


# ------------------------------------------------- the paper's highlighted configurations

#: (kind, fields) of the configurations the paper highlights, registered at s = 2, 3, 4.
HIGHLIGHTED = (
    ("MAX", {"K": 7, "C": 13}),
    ("TM", {"K": 7, "C": 16}),
    ("TR", {"K": 7, "C": 13}),
    ("CNN", {"C": 8, "D": 3, "S": 9}),
)


def _id(kind: str, s: int, f: dict) -> str:
    if kind == "CNN":
        return f"eSR-CNN_s{s}_C{f['C']}_D{f['D']}_S{f['S']}"
    return f"eSR-{kind}_s{s}_K{f['K']}_C{f['C']}"


def _config_factory(kind: str, s: int, fields: dict):
    model_id = _id(kind, s, fields)

    def fn(scale: int = s) -> nn.Module:
        return build(_id(kind, scale, fields))

    fn.__name__ = model_id.replace("eSR-", "esr_").replace("-", "_").lower()
    fn.__doc__ = f"{model_id}: the authors' published configuration (WACV 2022), x{s} only."
    return register_model(fn, scales=(s,), aliases=(model_id,), family="esr")


REGISTERED_IDS = []
for _kind, _fields in HIGHLIGHTED:
    for _s in (2, 3, 4):
        _fn = _config_factory(_kind, _s, _fields)
        globals()[_fn.__name__] = _fn
        REGISTERED_IDS.append(_id(_kind, _s, _fields))
