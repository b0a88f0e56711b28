"""Model architectures, one file per family; importing this package registers all of them.

:func:`create` is the one way to build a registered model (timm's ``create_model``)::

    from edgesr.core.models import create
    net = create("sesr_m5", scale=2)
"""

from __future__ import annotations

from edgesr.core.errors import EdgesrError
from edgesr.core.registry import _ALIASES, _REGISTRY, ModelEntry

# Importing a family registers its configurations.
from . import bicubic, esr, lut, pkn, sesr, splitsr  # noqa: F401,E402


def resolve(name: str) -> ModelEntry:
    """Return the registry entry for ``name`` or one of its aliases.

    Raises:
        EdgesrError: unknown name (the message lists the known ones).
    """
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
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
