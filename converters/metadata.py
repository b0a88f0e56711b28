"""The contract and provenance every artifact carries.

Each artifact ``PATH`` gets a sidecar ``PATH.json`` (written atomically after the artifact)::

    {"format": "edgesr-artifact", "version": 1,
     "contract": IOContract.to_dict(),
     "provenance": {"model", "scale", "kwargs", "artifact_format", "precision",
                    "io_dtype", "source", "created_utc", "tools": {package: version}}}

ONNX models also hold it in ``metadata_props["edgesr"]`` and Core ML packages in
``user_defined_metadata["edgesr"]`` (JSON text), so a copied file is still self-describing;
:func:`edgesr.core.contract.read_metadata` prefers the embedded copy and falls back to the sidecar.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edgesr.core.atomic import write_text_atomic
from edgesr.core.contract import FORMAT, sidecar_path


def _versions(packages) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in packages:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def build_metadata(module, artifact_format: str, precision: str, *, io_dtype: str = "float32",
                   source: str | None = None, tools=("torch",), extra: dict | None = None) -> dict:
    """The metadata dict of an artifact exported from ``module`` (a registry-built deploy module)."""
    provenance = {
        "model": getattr(module, "registry_name", None) or type(module).__name__,
        "scale": int(module.contract.scale),
        "kwargs": dict(getattr(module, "registry_kwargs", {}) or {}),
        "artifact_format": artifact_format,
        "precision": precision,
        "io_dtype": io_dtype,
        "source": None if source is None else str(source),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tools": _versions(("edgesr", "torch", *tools)),
    }
    if extra:
        provenance.update(extra)
    return {"format": FORMAT, "version": 1, "contract": module.contract.to_dict(), "provenance": provenance}


def write_sidecar(path: str | os.PathLike, meta: dict) -> Path:
    """Write ``PATH.json`` atomically; returns its path."""
    return write_text_atomic(sidecar_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
