"""The contract and provenance every artifact carries.

Each artifact ``PATH`` gets a sidecar ``PATH.json`` (written atomically after the artifact)::

    {"format": "edgesr-artifact", "version": 1,
     "contract": IOContract.to_dict(),
     "provenance": {"model", "scale", "kwargs", "artifact_format", "precision",
                    "io_dtype", "source", "created_utc", "tools": {package: version}}}

ONNX models also hold it in ``metadata_props["edgesr"]`` and Core ML packages in
``user_defined_metadata["edgesr"]`` (JSON text), so a copied file is still self-describing;
:func:`read_metadata` prefers the embedded copy and falls back to the sidecar.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edgesr.core.atomic import write_text_atomic
from edgesr.core.errors import EdgesrError
from edgesr.core.contract import IOContract

FORMAT = "edgesr-artifact"
KEY = "edgesr"


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


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_sidecar(path: str | os.PathLike, meta: dict) -> Path:
    """Write ``PATH.json`` atomically; returns its path."""
    return write_text_atomic(sidecar_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")


def parse(text: str, where: str) -> dict:
    """Parse embedded/sidecar JSON text; EdgesrError naming ``where`` if it is not edgesr metadata."""
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgesrError(f"{where}: corrupt edgesr metadata ({exc.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "contract" not in meta:
        raise EdgesrError(f"{where}: not edgesr artifact metadata")
    return meta


def read_metadata(path: str | os.PathLike, embedded: str | None = None) -> dict:
    """The artifact's metadata: ``embedded`` JSON text if given, else the sidecar ``PATH.json``.

    Raises:
        EdgesrError: neither exists, or the JSON is not edgesr metadata.
    """
    if embedded is not None:
        return parse(embedded, str(path))
    side = sidecar_path(path)
    if not side.is_file():
        raise EdgesrError(f"{path}: no edgesr metadata (embedded or {side.name}); cannot tell the model's I/O contract")
    return parse(side.read_text(encoding="utf-8"), str(side))


def contract_of(meta: dict) -> IOContract:
    """The :class:`IOContract` stored in artifact metadata."""
    c = dict(meta["contract"])
    c["value_range"] = tuple(c.get("value_range", (0.0, 1.0)))
    try:
        return IOContract(**c)
    except TypeError as exc:
        raise EdgesrError(f"artifact contract has unknown fields ({exc})") from None
