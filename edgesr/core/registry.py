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

import inspect
from dataclasses import dataclass
from typing import Callable


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


