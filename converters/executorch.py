"""PyTorch deploy module -> ExecuTorch program (``.pte``), run on the ExecuTorch runtime.

The path is PyTorch's own (https://pytorch.org/executorch): ``torch.export.export`` ->
``executorch.exir.to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`` ->
``.to_executorch()``. The program's ``forward`` takes float32 (1, C, H, W) NCHW in the
contract's input space ([0, 1]) and returns float32 (1, C, s*H, s*W), whatever the precision:

* ``fp32``: float32 weights and arithmetic inside the XNNPACK delegate;
* ``fp16``: the module in float16 (weights and activations, XNNPACK's f16 kernels); the
  float32 input is cast to float16 and the output back to float32 by two copy ops at the edges;
* ``int8``: PT2E static quantization (``torchao.quantization.pt2e.prepare_pt2e`` /
  ``convert_pt2e`` with ExecuTorch's ``XNNPACKQuantizer``, symmetric per-channel int8
  weights, per-tensor int8 activations, ``real = scale * (q - zero_point)``), its histogram
  observers calibrated on the caller's real image patches (the same patches the int8 TFLite
  model is calibrated on, :func:`edgesr.converters.export.calibration_patches`); the quantize
  and dequantize at the edges run inside the delegate, so the I/O stays float32.
  edgesr's own activation ranges (:mod:`edgesr.quantization`) are not injected: the
  XNNPACK quantizer places its observers by its own fusion patterns, which do not map
  one-to-one onto edgesr's TFLite node plan.

H and W are dynamic (``torch.export.Dim`` in [:data:`MIN_SIDE`, ``max_side``]); the XNNPACK
delegate resizes per call. ExecuTorch plans activation memory for the upper bound, and the
runtime enforces it as a capacity: any H x W with ``H * W <= max_side**2`` runs (measured:
200 x 16 runs in a program exported with ``max_side=64``, 65 x 64 is refused), smaller sides
than :data:`MIN_SIDE` included. ``max_side`` trades the largest input for the memory the
runtime reserves; a larger photo must be tiled by the caller.

``delegate="coreml"`` lowers to ExecuTorch's Core ML backend instead (``CoreMLPartitioner``,
compute precision fp32 or fp16, iOS 17 / macOS 14 minimum deployment target): the ``.pte`` an
iOS app runs. coremltools compiles it on Linux, but only Apple's runtime has the Core ML
backend, so such a program cannot run here (the artifact opener says so; no validation).

The I/O contract travels inside the program: a constant method :data:`METADATA_METHOD`
returns the metadata JSON (:mod:`edgesr.converters.metadata`) as a uint8 tensor of UTF-8 bytes;
:func:`embedded_metadata` reads it back on the runtime. Importing this module does not import
ExecuTorch; every function that needs it does (the ``edgesr[executorch]`` extra).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgesr.core.atomic import write_bytes_atomic
from edgesr.core.contract import PTE_METADATA_METHOD, _pte_embedded
from edgesr.core.errors import EdgesrError

PRECISIONS = ("fp32", "fp16", "int8")
DELEGATES = {"xnnpack": "XnnpackBackend", "coreml": "CoreMLBackend"}
"""edgesr's delegate names -> the backend id in the program."""
DELEGATE_PRECISIONS = {"xnnpack": PRECISIONS, "coreml": ("fp32", "fp16")}
METADATA_METHOD = PTE_METADATA_METHOD
MIN_SIDE = 8
MAX_SIDE = 1024
"""Default upper bound of the dynamic input H and W (pixels, LR side)."""

SHAPE_OPS = frozenset({"aten::sym_size", "executorch_prim::mul", "executorch_prim::add", "executorch_prim::sub",
                       "executorch_prim::floordiv", "executorch_prim::et_view"})
"""Operators outside a delegate that move no pixel data: shape arithmetic on the dynamic H x W
and ``et_view`` (a reshape the memory planner makes a view of the same buffer)."""


def unavailable_reason() -> str | None:
    """None when ExecuTorch (the ``executorch`` package) can be imported, else why not."""
    try:
        import executorch.runtime  # noqa: F401
    except ImportError as exc:
        return f"ExecuTorch is not installed ({exc.name or exc}); install edgesr[executorch]"
    return None


def _require() -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise EdgesrError(reason)


class _Half(torch.nn.Module):
    """float32 I/O around a float16 copy of ``module`` (casts at the edges)."""

    def __init__(self, module):
        super().__init__()
        import copy

        self.inner = copy.deepcopy(module).half()

    def forward(self, x):
        return self.inner(x.half()).float()


def _dynamic_shapes(max_side: int):
    from torch.export import Dim

    return ({2: Dim("h", min=MIN_SIDE, max=max_side), 3: Dim("w", min=MIN_SIDE, max=max_side)},)


def _quantize_pt2e(module, example, calibration: np.ndarray, dynamic):
    """PT2E int8: prepare with the XNNPACK quantizer, calibrate on the patches, convert."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    graph = torch.export.export(module, (example,), dynamic_shapes=dynamic).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for patch in calibration:
            prepared(torch.from_numpy(np.ascontiguousarray(patch[None])))
    return convert_pt2e(prepared)


def _partitioner(delegate: str, precision: str):
    if delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return XnnpackPartitioner()
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    specs = CoreMLBackend.generate_compile_specs(
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)
    return CoreMLPartitioner(compile_specs=specs)


def lower(module, channels: int, precision: str = "fp32", calibration: np.ndarray | None = None,
          metadata: dict | None = None, max_side: int = MAX_SIDE, delegate: str = "xnnpack"):
    """Export and lower a deploy module to ``delegate``; returns the ExecuTorch program manager.

    Args:
        module: deploy ``nn.Module``, float32 (1, C, H, W) NCHW in [0, 1] -> (1, C, s*H, s*W).
        channels: C of the input.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (module doc).
        calibration: for int8: float32 (N, C, h, w) NCHW real image patches in [0, 1].
        metadata: the artifact metadata dict, embedded as the constant method
            :data:`METADATA_METHOD` (uint8 UTF-8 JSON); none when None.
        max_side: upper bound of the dynamic H and W (pixels).
        delegate: ``"xnnpack"`` (precisions fp32, fp16, int8) or ``"coreml"`` (fp32, fp16:
            the Core ML compute precision; the module stays float32).

    Raises:
        EdgesrError: ExecuTorch missing, unknown delegate or precision, int8 without patches, or
        ``torch.export`` / lowering failing on the module (the message names the cause).
    """
    _require()
    from executorch.exir import to_edge_transform_and_lower

    if delegate not in DELEGATES:
        raise EdgesrError(f"unknown ExecuTorch delegate {delegate!r} (expected {', '.join(DELEGATES)})")
    if precision not in DELEGATE_PRECISIONS[delegate]:
        raise EdgesrError(f"unknown ExecuTorch precision {precision!r} for the {delegate} delegate "
                          f"(expected {', '.join(DELEGATE_PRECISIONS[delegate])})")
    if not MIN_SIDE <= int(max_side):
        raise EdgesrError(f"max_side must be at least {MIN_SIDE} pixels, got {max_side}")
    module = module.eval()
    example = torch.rand(1, channels, 2 * MIN_SIDE, 2 * MIN_SIDE, generator=torch.Generator().manual_seed(0))
    dynamic = _dynamic_shapes(int(max_side))
    try:
        if precision == "int8":
            calibration = _check_patches(calibration, channels)
            module = _quantize_pt2e(module, example, calibration, dynamic)
        elif precision == "fp16" and delegate == "xnnpack":
            module = _Half(module)
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.export.export(module, (example,), dynamic_shapes=dynamic)
            constants = None
            if metadata is not None:
                text = json.dumps(metadata, sort_keys=True).encode("utf-8")
                constants = {METADATA_METHOD: torch.tensor(list(text), dtype=torch.uint8)}
            return to_edge_transform_and_lower(program, partitioner=[_partitioner(delegate, precision)],
                                               constant_methods=constants)
    except EdgesrError:
        raise
    except Exception as exc:  # torch.export / ExecuTorch lowering errors on an unsupported graph
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EdgesrError(f"ExecuTorch {precision} export of {type(module).__name__} failed: {type(exc).__name__}: {first}") from None


def _check_patches(calibration, channels: int) -> np.ndarray:
    if calibration is None or len(calibration) == 0:
        raise EdgesrError("int8 ExecuTorch needs calibration patches (real images; e.g. --calib DIR)")
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or calibration.shape[1] != channels:
        raise EdgesrError(f"calibration patches must be float32 (N, {channels}, h, w), got shape {calibration.shape}")
    return calibration


def convert(module, channels: int, precision: str = "fp32", calibration: np.ndarray | None = None,
            metadata: dict | None = None, max_side: int = MAX_SIDE, delegate: str = "xnnpack") -> bytes:
    """The ``.pte`` bytes of :func:`lower` (same arguments and errors)."""
    edge = lower(module, channels, precision, calibration, metadata, max_side, delegate)
    try:
        return bytes(edge.to_executorch().buffer)
    except Exception as exc:  # memory planning / emission errors
        raise EdgesrError(f"ExecuTorch {precision} program emission failed: {type(exc).__name__}: {str(exc)[:200]}") from None


def save(data: bytes, path: str | os.PathLike) -> Path:
    """Write the program bytes atomically."""
    return write_bytes_atomic(path, data)


# --------------------------------------------------------------------------- the runtime


def load_program(path: str | os.PathLike):
    """The ``.pte`` at ``path`` loaded by ``executorch.runtime.Runtime``.

    Raises:
        EdgesrError: ExecuTorch missing, or the file is not a loadable program.
    """
    _require()
    from executorch.runtime import Runtime

    try:
        return Runtime.get().load_program(Path(path))
    except Exception as exc:  # the runtime raises RuntimeError on a corrupt program
        raise EdgesrError(f"{path}: not a loadable ExecuTorch program ({str(exc)[:120] or type(exc).__name__})") from None


def embedded_metadata(path: str | os.PathLike) -> str | None:
    """The metadata JSON text the program's :data:`METADATA_METHOD` returns, None if it has none
    (:func:`edgesr.core.contract.read_artifact_metadata` reads it the same way)."""
    load_program(path)  # one-line errors for a missing runtime or an unloadable file
    return _pte_embedded(Path(path))


def missing_backends(path: str | os.PathLike) -> list[str]:
    """The delegate backends the program calls that this machine's ExecuTorch runtime lacks
    (e.g. ``CoreMLBackend`` off Apple platforms)."""
    _require()
    from executorch.runtime import Runtime

    registry = Runtime.get().backend_registry
    used = dict.fromkeys(s.name for s in forward_plan(path) if s.kind == "delegate")
    return [b for b in used if not registry.is_available(b)]


class ExecuTorchUpscaler:
    """A ``.pte`` program's ``forward`` on the ExecuTorch runtime as an Upscaler.

    ``__call__``: float32 (N, C, h, w) NCHW in the contract's space -> float32 (N, C, s*h, s*w),
    one image per call (the program holds batch 1). ``program`` is public. ``num_threads``
    resets ExecuTorch's threadpool, which is one per process (it applies to every program
    loaded in the process; default: left as it is).

    Raises:
        EdgesrError: ExecuTorch missing, unreadable program, no ``forward`` method, ``num_threads`` < 1.
    """

    def __init__(self, path: str | os.PathLike, contract, num_threads: int | None = None):
        self.path, self.contract = Path(path), contract
        if num_threads is not None:
            if int(num_threads) < 1:
                raise EdgesrError(f"num_threads must be at least 1, got {num_threads}")
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            with contextlib.redirect_stdout(io.StringIO()):
                _unsafe_reset_threadpool(int(num_threads))
        self.program = load_program(path)
        if "forward" not in self.program.method_names:
            raise EdgesrError(f"{path}: the program has no forward method")
        self._forward = self.program.load_method("forward")

    def _run(self, x: np.ndarray):
        return self._forward.execute([torch.from_numpy(x)])[0].numpy().astype(np.float32, copy=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != self.contract.channels:
            raise ValueError(f"expected float32 (N, {self.contract.channels}, h, w), got shape {x.shape}")
        try:
            return np.concatenate([self._run(x[i : i + 1]) for i in range(x.shape[0])], axis=0)
        except RuntimeError as exc:  # a shape outside the exported Dim range
            raise EdgesrError(f"{self.path}: the program cannot run an input of {x.shape[2]} x {x.shape[3]} px "
                              f"({str(exc)[:120]}); its H x W capacity is fixed at export (max_side)") from None


# --------------------------------------------------------------------------- partition report (lint)


@dataclass
class PlanStep:
    """One instruction of the program's ``forward``: a delegate call or a kernel outside it."""

    kind: str          # "delegate" | "kernel"
    name: str          # backend id (e.g. "XnnpackBackend") or operator "ns::op.overload"


def forward_plan(path: str | os.PathLike) -> list[PlanStep]:
    """The instructions of ``forward`` as serialized in the ``.pte`` (ground truth of the lowering).

    Read from the program's flatbuffer with ``executorch.exir._serialize``: every
    ``DelegateCall`` names its backend, every ``KernelCall`` its operator (run by ExecuTorch's
    portable / optimized kernels, outside any delegate). Moves and jumps are omitted.

    Raises:
        EdgesrError: ExecuTorch missing, a file that is not a program, no ``forward`` plan.
    """
    _require()
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DelegateCall, KernelCall

    try:
        pte = deserialize_pte_binary(Path(path).read_bytes())
    except Exception as exc:  # flatbuffer / header decode errors
        raise EdgesrError(f"{path}: not an ExecuTorch program ({type(exc).__name__})") from None
    program = getattr(pte, "program", pte)
    plans = [p for p in program.execution_plan if p.name == "forward"]
    if not plans:
        raise EdgesrError(f"{path}: the program has no forward method")
    plan, steps = plans[0], []
    for chain in plan.chains:
        for instruction in chain.instructions:
            args = instruction.instr_args
            if isinstance(args, DelegateCall):
                steps.append(PlanStep("delegate", plan.delegates[args.delegate_index].id))
            elif isinstance(args, KernelCall):
                op = plan.operators[args.op_index]
                steps.append(PlanStep("kernel", f"{op.name}.{op.overload}" if op.overload else op.name))
    return steps


def lint_findings(path: str | os.PathLike, backend: str = "XnnpackBackend") -> list[dict]:
    """What the partitioner left outside ``backend``, read from the program (:func:`forward_plan`).

    Returns ``[{"severity", "check", "message", "op"}]`` (the fields of
    :class:`edgesr.converters.lint.Finding`): ``warning`` for each operator that computes
    on pixels outside the delegate (it runs on ExecuTorch's CPU kernels, with a copy in and
    out of the delegate), ``error`` when no instruction is delegated to ``backend``, ``info``
    for shape arithmetic and views (:data:`SHAPE_OPS`) and for a graph split into several
    delegate calls.
    """
    steps = forward_plan(path)
    out: list[dict] = []
    delegated = [s for s in steps if s.kind == "delegate" and s.name == backend]
    if not delegated:
        out.append({"severity": "error", "check": "delegate", "op": None,
                    "message": f"no part of forward is delegated to {backend}; the whole graph runs on ExecuTorch's CPU kernels"})
    compute = {}
    for s in steps:
        if s.kind == "kernel" and s.name.split(".")[0] not in SHAPE_OPS:
            compute[s.name] = compute.get(s.name, 0) + 1
    for name, count in compute.items():
        out.append({"severity": "warning", "check": "op-coverage", "op": name,
                    "message": f"{count} x {name} outside the {backend} delegate: runs on ExecuTorch's CPU kernels"})
    shape = sorted({s.name for s in steps if s.kind == "kernel" and s.name.split(".")[0] in SHAPE_OPS})
    if len(delegated) > 1:
        out.append({"severity": "info", "check": "delegate-split", "op": None,
                    "message": f"forward makes {len(delegated)} {backend} calls, split by {', '.join(shape) or 'non-delegated ops'} "
                               "(shape arithmetic and views move no pixels, but each call is a delegate round trip)"})
    elif shape:
        out.append({"severity": "info", "check": "shape-ops", "op": None,
                    "message": f"outside the delegate only shape arithmetic / views: {', '.join(shape)}"})
    return out
