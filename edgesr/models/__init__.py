"""Model architectures. Importing this package registers every built-in model.

Use :func:`create` (re-exported from :mod:`edgesr.registry`)::

    from edgesr.models import create
    net = create("sesr_m5", scale=2)
"""

from edgesr.registry import IOContract, create, list_models, register_model  # noqa: F401

from . import bicubic, sesr  # noqa: F401  (registration side effects)

# Later families register themselves here when present.
import importlib as _importlib

for _name in ("esr", "splitsr", "pkn"):
    try:
        _importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _exc:  # family not written yet
        if _exc.name != f"{__name__}.{_name}":
            raise
