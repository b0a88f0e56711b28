"""The contract and provenance every artifact carries, embedded in the artifact itself.

The metadata JSON::

    {"format": "edgesr-artifact", "version": 1,
     "contract": IOContract.to_dict(),   # layout: the artifact's own tensor layout (NHWC for TFLite)
     "provenance": {"model", "scale", "kwargs", "artifact_format", "precision",
                    "io_dtype", "source", "created_utc", "tools": {package: version}}}

is written into the file by each exporter (TFLite: a ``Metadata`` entry named ``"edgesr"``,
:func:`edgesr.converters.tflite.embed_metadata`; ONNX: ``metadata_props["edgesr"]``; Core ML:
``user_defined_metadata["edgesr"]``), so a model file copied alone is still self-describing;
:func:`edgesr.core.contract.read_artifact_metadata` reads it back. The sidecar ``PATH.json``
(:func:`write_sidecar`) is optional output (``edgesr export --sidecar``) for tools that want
the JSON beside the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from edgesr.core.atomic import write_text_atomic
from edgesr.core.contract import FORMAT, sidecar_path

LAYOUT = {"tflite": "NHWC", "onnx": "NCHW", "coreml": "NCHW"}
"""The tensor layout of each artifact format's input and output (what its contract states)."""


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
                   source: str | None = None, tools=("torch",), extra: dict | None = None,
                   input_sizes=None) -> dict:
    """The metadata dict of an artifact exported from ``module`` (a registry-built deploy module).

    The contract is ``module.contract`` with ``layout`` set to the artifact's own tensor layout
    (:data:`LAYOUT`: NHWC for TFLite, NCHW for ONNX and Core ML) and, for a fixed-shape export,
    ``input_sizes`` (``[(H, W), ...]`` LR pixels) with the module's ``receptive_field``.
    """
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
    contract = dataclasses.replace(module.contract, layout=LAYOUT.get(artifact_format, module.contract.layout))
    if input_sizes:
        contract = dataclasses.replace(contract, input_sizes=tuple((int(h), int(w)) for h, w in input_sizes),
                                       receptive_field=int(module.receptive_field))
    return {"format": FORMAT, "version": 1, "contract": contract.to_dict(), "provenance": provenance}


def write_sidecar(path: str | os.PathLike, meta: dict) -> Path:
    """Write the optional sidecar ``PATH.json`` (the embedded metadata, pretty-printed) atomically; returns its path."""
    return write_text_atomic(sidecar_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
