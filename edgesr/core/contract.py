"""The I/O contract of a model or artifact: what it consumes and produces, and the one reader
of the contract every artifact carries inside its own file.

Every model carries one as ``model.contract``; every exported artifact carries it, with its
provenance, as edgesr metadata JSON inside the file, so a model file copied alone into an app
still says how to feed it:

* ``.tflite``: an entry named ``"edgesr"`` in the flatbuffer's ``Model.metadata`` list whose
  ``Buffer`` holds the UTF-8 JSON (TFLite schema ``Metadata {name, buffer}``);
* ``.onnx``: ``ModelProto.metadata_props["edgesr"]``;
* ``.mlpackage``: the Core ML model's ``user_defined_metadata["edgesr"]``
  (``Model.description.metadata.userDefined``);
* ``.lut``: the bundle's ``meta`` header (:mod:`edgesr.lut_baking.bundle`), translated here.

Artifacts written before the contract was embedded have it only in a sidecar ``PATH.json``;
:func:`read_artifact_metadata` falls back to it with a :class:`LegacySidecarWarning`.
The runtimes that read these files (``tflite``, ``onnx``, ``coremltools``) are imported only
when a file of that kind is read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgesr.core.errors import EdgesrError
from edgesr.core.thirdparty import block_triton_after_tensorflow

Color = Literal["y", "luma_full", "rgb"]
COLORS = ("y", "luma_full", "rgb")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float16", "int8", "uint8")
SCALES = range(1, 9)
"""Upscaling factors a contract may state (x1 is allowed: an SR-LUT bundle of scale 1 is valid)."""


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
        layout: the layout of the tensor the model itself takes: ``"NCHW"`` for PyTorch
            modules, ONNX and Core ML; ``"NHWC"`` for TFLite artifacts. Every
            :class:`~edgesr.core.evaluate.Upscaler` is called with NCHW whatever this says.
        dtype: ``"float32"`` for networks; LUT models document their integer path separately.
        value_range: input and output range; outputs are clipped to it at deployment.
        input_sizes: the input sizes ``((H, W), ...)`` in LR pixels that the artifact accepts:
            None (the default, and every PyTorch model's) for any H x W; one size for a fixed
            input shape (``edgesr export --input-size HxW``: TFLite ``[1, H, W, C]``, ONNX and
            Core ML ``(1, C, H, W)``); several for Core ML enumerated shapes
            (``ct.EnumeratedShapes``, the first is the default). A photo of another size runs
            in tiles of one of these sizes (:class:`edgesr.core.tiling.FixedShapeUpscaler`).
        receptive_field: side, in LR pixels, of the input window an output pixel depends on
            (the model's ``receptive_field``); recorded with ``input_sizes``, since tiles of a
            fixed size need a halo of ``receptive_field // 2`` pixels. None otherwise.

    ``to_dict`` leaves out ``input_sizes`` and ``receptive_field`` when they are None, so the
    contract of a dynamic-shape artifact reads as it did before they existed.
    """

    scale: int
    color: Color = "y"
    channels: int = 1
    per_channel: bool = False
    layout: str = "NCHW"
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    input_sizes: tuple[tuple[int, int], ...] | None = None
    receptive_field: int | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in OPTIONAL_FIELDS:
            if d[key] is None:
                del d[key]
            elif key == "input_sizes":
                d[key] = [list(hw) for hw in d[key]]
        return d

    @classmethod
    def from_dict(cls, d, where: str) -> IOContract:
        """Build a contract from untrusted data (a file's metadata JSON) and check every field.

        Args:
            d: ``{"scale", "color", "channels", "per_channel", "layout", "dtype",
                "value_range"}``; missing fields take the defaults above.
            where: the file (or JSON path) it came from, named in errors.

        Raises:
            EdgesrError: not a dict, an unknown field, or a value out of its domain: scale not
                an int in 1..8, color not in y/luma_full/rgb, channels not 1 or 3, per_channel
                not a bool (or set with channels 3), layout not NCHW/NHWC, dtype not
                float32/float16/int8/uint8, value_range not two finite numbers lo < hi,
                input_sizes not a list of distinct [H, W] positive-integer pairs (or given without
                receptive_field), receptive_field not a positive integer.
        """
        if not isinstance(d, dict):
            raise EdgesrError(f"{where}: the I/O contract must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise EdgesrError(f"{where}: unknown I/O contract field(s) {', '.join(map(repr, unknown))}")
        c = {**dataclasses.asdict(cls(scale=2)), **d}

        def bad(field: str, want: str):
            return EdgesrError(f"{where}: I/O contract {field} {c[field]!r} is not {want}")

        if type(c["scale"]) is not int or c["scale"] not in SCALES:
            raise bad("scale", f"an integer in {SCALES.start}..{SCALES.stop - 1}")
        if c["color"] not in COLORS:
            raise bad("color", " / ".join(COLORS))
        if type(c["channels"]) is not int or c["channels"] not in (1, 3):
            raise bad("channels", "1 or 3")
        if type(c["per_channel"]) is not bool or (c["per_channel"] and c["channels"] != 1):
            raise bad("per_channel", "a boolean (true only with 1 channel)")
        if c["layout"] not in LAYOUTS:
            raise bad("layout", " or ".join(LAYOUTS))
        if c["dtype"] not in DTYPES:
            raise bad("dtype", " / ".join(DTYPES))
        vr = c["value_range"]
        if (not isinstance(vr, (list, tuple)) or len(vr) != 2
                or not all(type(v) in (int, float) and math.isfinite(v) for v in vr) or not vr[0] < vr[1]):
            raise bad("value_range", "two finite numbers [lo, hi] with lo < hi")
        c["value_range"] = (float(vr[0]), float(vr[1]))
        rf = c["receptive_field"]
        if rf is not None and (type(rf) is not int or rf < 1):
            raise bad("receptive_field", "a positive integer (LR pixels) or absent")
        if c["input_sizes"] is not None:
            try:
                c["input_sizes"] = normalize_input_sizes(c["input_sizes"])
            except ValueError:
                raise bad("input_sizes", "a non-empty list of distinct [H, W] pairs of positive integers, or absent") from None
            if rf is None:
                raise EdgesrError(f"{where}: I/O contract input_sizes needs the receptive_field (to tile other sizes)")
        return cls(**c)


OPTIONAL_FIELDS = ("input_sizes", "receptive_field")
"""Contract fields that :meth:`IOContract.to_dict` leaves out when they are None."""


def normalize_input_sizes(sizes) -> tuple[tuple[int, int], ...]:
    """``[(H, W), ...]`` -> a tuple of ``(int H, int W)`` pairs, checked.

    Raises:
        ValueError: empty, not pairs, a side that is not a positive ``int`` (bools refused),
            or a size given twice.
    """
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (list, tuple)) or not sizes:
        raise ValueError(f"input sizes must be a non-empty list of (H, W) pairs, got {sizes!r}")
    out = []
    for hw in sizes:
        if (not isinstance(hw, (list, tuple)) or len(hw) != 2
                or not all(type(v) is int and v >= 1 for v in hw)):
            raise ValueError(f"input size {hw!r} is not a pair of positive integers (H, W)")
        out.append((hw[0], hw[1]))
    if len(set(out)) != len(out):
        raise ValueError(f"input sizes {sizes!r} name a size twice")
    return tuple(out)


def infer_contract(channels: int, probe, layout: str = "NCHW") -> IOContract:
    """The contract of a bare network file with no edgesr metadata (e.g. from another tool):
    1 input channel = BT.601 Y (``"y"``), 3 = RGB; the scale from one probe run.

    Args:
        channels: C of the model's input tensor.
        probe: ``probe(side) -> output height`` runs the model on a ``side x side`` input.
        layout: the file's tensor layout (``"NHWC"`` for TFLite).
    """
    side = 4
    return IOContract(scale=int(probe(side)) // side, color="y" if channels == 1 else "rgb", channels=int(channels),
                      layout=layout)


# --------------------------------------------------------------------------- artifact metadata

FORMAT = "edgesr-artifact"
"""The ``format`` field of every artifact's metadata JSON."""
KEY = "edgesr"
"""The name under which artifacts embed the metadata JSON (TFLite ``Metadata.name``, ONNX
``metadata_props`` key, Core ML ``user_defined_metadata`` key)."""
LUT_FORMAT = "edgesr-lut"
"""The ``format`` field of a ``.lut`` bundle's header."""


class MissingMetadata(EdgesrError):
    """The artifact has no edgesr metadata, neither embedded nor in a sidecar."""


class LegacySidecarWarning(UserWarning):
    """The contract was read from a sidecar ``PATH.json`` because the file embeds none."""


def sidecar_path(path: str | os.PathLike) -> Path:
    """``PATH.json``, the legacy (and optional) sidecar of the artifact at ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def metadata_text(meta: dict) -> str:
    """The JSON text artifacts embed (keys sorted, so equal metadata gives equal bytes)."""
    return json.dumps(meta, sort_keys=True)


def parse(text: str | bytes, where: str) -> dict:
    """Parse embedded/sidecar metadata JSON and check its contract.

    Raises:
        EdgesrError: not UTF-8 JSON, not edgesr artifact metadata, or an invalid contract
            (the message names ``where``).
    """
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgesrError(f"{where}: corrupt edgesr metadata ({getattr(exc, 'msg', None) or type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "contract" not in meta:
        raise EdgesrError(f"{where}: not edgesr artifact metadata")
    IOContract.from_dict(meta["contract"], where)
    if not isinstance(meta.get("provenance", {}), dict):
        raise EdgesrError(f"{where}: edgesr metadata 'provenance' is not an object")
    return meta


def _tflite_embedded(path: Path) -> str | None:
    """The ``"edgesr"`` metadata buffer of a TFLite flatbuffer as text (``tflite`` package)."""
    import tflite

    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgesrError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() != KEY.encode():
                continue
            buf = model.Buffers(entry.Buffer())
            if buf.Offset() > 1:  # buffer stored after the flatbuffer (models > 2 GB)
                raw = data[buf.Offset() : buf.Offset() + buf.Size()]
            else:
                raw = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
            return raw.decode("utf-8", errors="strict")
    except (struct.error, IndexError, ValueError, AttributeError):  # offsets beyond the data
        raise EdgesrError(f"{path}: truncated or malformed TFLite flatbuffer (an offset points outside the file)") from None
    return None


def _onnx_embedded(path: Path) -> str | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in model.metadata_props if p.key == KEY), None)


def _coreml_embedded(path: Path) -> str | None:
    """``user_defined_metadata["edgesr"]`` of a ``.mlpackage``, read without modifying the
    package: ``Manifest.json``'s root item names the spec file under ``Data/``, a
    ``CoreML.Specification.Model`` protobuf. (Opening the package with coremltools rewrites
    its ``Manifest.json``.)"""
    block_triton_after_tensorflow()
    from coremltools.proto import Model_pb2

    manifest = json.loads((path / "Manifest.json").read_text(encoding="utf-8"))
    spec_file = path / "Data" / manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"]
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_file.read_bytes())
    return spec.description.metadata.userDefined.get(KEY)


def _lut_header(path: Path) -> str | None:
    """The ``.lut`` bundle's header as artifact metadata JSON (contract, provenance, LUT fields)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        header = parse_lut_header(str(z["meta"][()]), str(path))
    provenance = {"model": header.get("model", ""), "scale": header.get("scale"), "artifact_format": "lut",
                  "precision": "int8", "source": header.get("source", {})}
    lut = {k: header.get(k) for k in ("method", "scale", "bits", "variant", "sha256")}
    return metadata_text({"format": FORMAT, "version": 1, "contract": header["contract"],
                          "provenance": provenance, "lut": lut})


def parse_lut_header(text: str, where: str) -> dict:
    """Parse a ``.lut`` bundle's ``meta`` JSON and check its contract (the one LUT-header parser).

    Raises:
        EdgesrError: not JSON, not an edgesr LUT header, or an invalid contract.
    """
    try:
        header = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgesrError(f"{where}: corrupt LUT bundle header ({exc.msg})") from None
    if not isinstance(header, dict) or header.get("format") != LUT_FORMAT:
        raise EdgesrError(f"{where}: not an edgesr LUT bundle (no '{LUT_FORMAT}' metadata)")
    IOContract.from_dict(header.get("contract"), where)
    return header


PTE_METADATA_METHOD = "edgesr_metadata"
"""The constant method of an ExecuTorch program that returns its metadata JSON (UTF-8 bytes as uint8)."""


def _pte_embedded(path: Path) -> str | None:
    """The metadata an ExecuTorch ``.pte`` returns from :data:`PTE_METADATA_METHOD` (read on the
    ExecuTorch runtime: the ``edgesr[executorch]`` extra)."""
    try:
        from executorch.runtime import Runtime
    except ImportError:
        raise EdgesrError(f"{path}: reading an ExecuTorch program needs the executorch package "
                          "(pip install 'edgesr[executorch]')") from None
    program = Runtime.get().load_program(path)
    if PTE_METADATA_METHOD not in program.method_names:
        return None
    values = program.load_method(PTE_METADATA_METHOD).execute([])[0]
    return bytes(values.numpy().astype("uint8").tolist()).decode("utf-8")


EMBEDDED_READERS = {".tflite": _tflite_embedded, ".onnx": _onnx_embedded, ".mlpackage": _coreml_embedded,
                    ".pte": _pte_embedded, ".lut": _lut_header}
"""``{suffix: reader(path) -> embedded metadata JSON text or None}``, one per artifact kind."""


def read_artifact_metadata(path: str | os.PathLike) -> dict:
    """The edgesr metadata embedded in the artifact at ``path`` (module doc for where it
    lives), else the legacy sidecar ``PATH.json`` with a :class:`LegacySidecarWarning`.

    Returns:
        ``{"format": "edgesr-artifact", "version": 1, "contract": IOContract dict,
        "provenance": {"model", "scale", "artifact_format", "precision", ...}}`` (``.lut``
        bundles add ``"lut": {"method", "scale", "bits", "variant", "sha256"}``).

    Raises:
        MissingMetadata: neither embedded metadata nor a sidecar.
        EdgesrError: missing file, unknown suffix, unreadable file, or metadata that is not
            edgesr's or holds an invalid contract (one line naming the file).
    """
    path = Path(path)
    if not path.exists():
        raise EdgesrError(f"{path}: no such artifact")
    reader = EMBEDDED_READERS.get(path.suffix.lower())
    if reader is None:
        raise EdgesrError(f"{path}: unknown artifact type {path.suffix!r} (expected {', '.join(EMBEDDED_READERS)})")
    try:
        text = reader(path)
    except EdgesrError:
        raise
    except Exception as exc:  # flatbuffer / protobuf / zip decode errors on a corrupt file
        detail = (str(exc).splitlines() or [""])[0][:100]
        raise EdgesrError(f"{path}: unreadable {path.suffix} artifact ({type(exc).__name__}{': ' + detail if detail else ''})") from None
    if text is not None:
        return parse(text, str(path))
    side = sidecar_path(path)
    if not side.is_file():
        raise MissingMetadata(f"{path}: no edgesr metadata (none embedded, no {side.name}); cannot tell the model's I/O contract")
    warnings.warn(f"{path}: no embedded edgesr metadata; read the legacy sidecar {side.name} (re-export to embed it)",
                  LegacySidecarWarning, stacklevel=2)
    return parse(side.read_text(encoding="utf-8"), str(side))


def contract_of(meta: dict, where: str = "artifact metadata") -> IOContract:
    """The validated :class:`IOContract` in artifact metadata (:func:`read_artifact_metadata`)."""
    return IOContract.from_dict(meta.get("contract"), where)


def read_contract(path: str | os.PathLike) -> IOContract:
    """The :class:`IOContract` the artifact at ``path`` carries (:func:`read_artifact_metadata`).

    Raises:
        MissingMetadata, EdgesrError: as :func:`read_artifact_metadata`.
    """
    return contract_of(read_artifact_metadata(path), str(path))
