"""The one model registry: the CLI, the exporters, the benchmarks and the tests all read it.

Each published configuration is a small factory registered with :func:`register_model`
(timm's habit)::

    @register_model(aliases=("SESR-M5",))
    def sesr_m5(scale: int = 2, **kw) -> nn.Module: ...

A factory returns an ``nn.Module`` that carries its deployment contract as ``.contract``
(an :class:`IOContract`) and, when it has a training-only form, a ``collapse()`` method
returning a new plain module that computes the same function (the one reparameterization
protocol of edgesr).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Callable, Literal

from edgesr.errors import EdgesrError

Color = Literal["y", "luma_full", "rgb"]


@dataclass(frozen=True)
class IOContract:
    """What a deployed model consumes and produces (Qualcomm AI Hub's habit).

    Attributes:
        scale: upscaling factor s; output (N, C, s*H, s*W) for input (N, C, H, W).
        color: the colour space of the tensor:
            ``"y"``: BT.601 luma as MATLAB ``rgb2ycbcr`` computes it (16-235 studio range)
            divided by 255, so values lie in [16/255, 235/255] for natural images;
            ``"luma_full"``: full-range luma (PIL ``convert('L')`` weights 0.299/0.587/0.114,
            no offset) divided by 255, in [0, 1] (the eSR authors' convention);
            ``"rgb"``: R, G, B divided by 255, in [0, 1].
        channels: channels of the model's input tensor (1 for Y models).
        per_channel: for ``color == "rgb"`` with ``channels == 1``: the model is applied to
            each RGB channel separately (SR-LUT's convention).
        layout: tensor layout, always ``"NCHW"`` on the PyTorch side (TFLite artifacts are NHWC).
        dtype: ``"float32"`` for networks; LUT models document their integer path separately.
        value_range: input and output range; outputs are clipped to it at deployment.
    """

    scale: int
    color: Color = "y"
    channels: int = 1
    per_channel: bool = False
    layout: str = "NCHW"
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelEntry:
    """A registered factory: ``fn(scale=..., **kwargs) -> nn.Module``."""

    name: str
    fn: Callable
    family: str
    scales: tuple[int, ...]
    aliases: tuple[str, ...]
    doc: str


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    fn: Callable | None = None,
    *,
    name: str | None = None,
    scales: tuple[int, ...] = (2, 3, 4),
    aliases: tuple[str, ...] = (),
    family: str | None = None,
):
    """Decorator registering a model factory under its function name (or ``name``).

    Args:
        scales: the upscaling factors the factory supports; ``create`` refuses others.
        aliases: other names for the same factory (e.g. the authors' ids).
        family: the architecture family (defaults to the defining module's last name).
    """

    def wrap(f: Callable) -> Callable:
        key = name or f.__name__
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model {key!r} registered twice")
        fam = family or f.__module__.rsplit(".", 1)[-1]
        doc = (inspect.getdoc(f) or "").split("\n", 1)[0]
        _REGISTRY[key] = ModelEntry(key, f, fam, tuple(scales), tuple(aliases), doc)
        for alias in aliases:
            _ALIASES[alias] = key
        return f

    return wrap(fn) if fn is not None else wrap


def _load_builtin_models() -> None:
    # Importing the package registers every built-in architecture.
    import edgesr.models  # noqa: F401

    try:  # LUT models live in the lut_baking package (optional at this level)
        import lut_baking.models  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name not in ("lut_baking.models",):
            raise


def resolve(name: str) -> ModelEntry:
    """Return the registry entry for ``name`` or one of its aliases.

    Raises:
        EdgesrError: unknown name (the message lists the known ones).
    """
    _load_builtin_models()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise EdgesrError(f"unknown model {name!r}; known models: {known}")
    return _REGISTRY[key]


def create(name: str, scale: int = 2, **kwargs):
    """Build a registered model.

    Args:
        name: registry name or alias (``edgesr list`` prints them).
        scale: upscaling factor; must be one the model supports.
        **kwargs: the factory's keyword arguments (a config block maps onto them 1:1).

    Returns:
        ``nn.Module`` with ``.contract`` (:class:`IOContract`), ``.scale`` and
        ``.registry_name``/``.registry_kwargs`` (used by checkpoints).

    Raises:
        EdgesrError: unknown model or unsupported scale.
    """
    entry = resolve(name)
    if not isinstance(scale, int) or scale not in entry.scales:
        raise EdgesrError(f"model {entry.name!r} does not support scale {scale!r}; supported: {', '.join(map(str, entry.scales))}")
    model = entry.fn(scale=scale, **kwargs)
    model.registry_name = entry.name
    model.registry_kwargs = dict(kwargs)
    return model


def list_models() -> list[ModelEntry]:
    """All registered entries, sorted by name."""
    _load_builtin_models()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
