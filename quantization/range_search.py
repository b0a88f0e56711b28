"""Activation-range search per int8 tensor: per-tensor MSE, or driven by the model's output.

Min/max ranges waste int8 levels on rare outliers; clipping them trades a little clipping
error for a finer step everywhere else. Two criteria:

* ``"mse"``: each tensor on its own, the range minimising the mean squared error between its
  values and their int8 fake quantization (:class:`~edgesr.quantization.calibration.MSEObserver`;
  Banner et al., "Post training 4-bit quantization", NeurIPS 2019, choose clipping the same way).
* ``"output"``: greedy coordinate search on what the user sees. For each calibrated tensor in
  graph order, both ends of its range are shrunk by each factor in turn and the choice that
  gives the least mean squared error between the int8 simulation's output and the float
  model's output on the calibration patches (inside a border crop) is kept (maximising the
  output PSNR against the float model), the tensors before it already set. The model's input (the contract's range),
  fixed-range tensors (softmax, tanh) and a group that ends in the output clamp (the clamp's range, the
  8-bit display grid; :func:`~edgesr.quantization.calibrate`) are not searched.
"""

from __future__ import annotations

import torch
from edgesr.quantization.calibration import calibrate
from edgesr.quantization.fake_quant import fake_quant_module, quantizer_ranges
from torch import nn

from edgesr.core.errors import EdgesrError

DEFAULT_FACTORS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
"""Shrink factors tried per tensor. Down to 0.1: a softmax's logits need only the top few units
of their range (an int8 SOFTMAX output step is 1/256, so a logit more than ~6 below the pixel's
largest gives 0), and PKN's quadratic forms reach -100 or below (docs/quant.md's range-search
column, ``python bench/quant.py``, gives what the search does per model)."""


def _output_mse(sim: nn.Module, x: torch.Tensor, want: torch.Tensor, batch_size: int) -> float:
    """Mean squared error against ``want`` inside a border crop of a sixth of the side (patch edges
    see zero padding, which no whole-image score does; :func:`edgesr.quantization.qat.val_border`)."""
    b = min(want.shape[-2:]) // 6
    se = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            d = (sim(x[i : i + batch_size]) - want[i : i + batch_size])[..., b : want.shape[-2] - b, b : want.shape[-1] - b]
            se += float(d.double().pow(2).sum())
    return se / want[..., b : want.shape[-2] - b, b : want.shape[-1] - b].numel()


def search_ranges(deploy_module: nn.Module, patches, ranges: dict[str, tuple[float, float]] | None = None, *,
                  criterion: str = "output", factors=DEFAULT_FACTORS, batch_size: int = 32,
                  ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """Searched activation ranges of ``deploy_module``'s int8 simulation.

    Args:
        deploy_module: plain deploy module (after ``collapse()``), float32, fx-traceable.
        patches: float32 (N, C, P, P) calibration inputs in the contract's range.
        ranges: the starting ranges (default: min/max :func:`~edgesr.quantization.calibrate`);
            for ``"mse"`` they are ignored.
        criterion: ``"output"`` (output MSE against the float model, greedy per tensor) or
            ``"mse"`` (per-tensor quantization MSE).
        factors: shrink factors in (0, 1] tried for each tensor (``"output"``).
        batch_size: patches per forward pass.
    Returns:
        ``(ranges, report)``: ``{fx node: (min, max)}`` for every int8 tensor node (min <= 0 <= max),
        and for ``"output"`` ``{node: chosen factor}`` of every searched tensor plus
        ``"output_mse_before"`` / ``"output_mse_after"`` (float32 model space, values in [0, 1]).

    Raises:
        EdgesrError: unknown criterion, factors outside (0, 1], or bad patches.
    """
    x = torch.as_tensor(patches, dtype=torch.float32)
    if x.ndim != 4 or x.shape[0] == 0:
        raise EdgesrError(f"range search needs patches (N, C, H, W), got shape {tuple(x.shape)}")
    if criterion == "mse":
        return calibrate(deploy_module, x, "mse"), {}
    if criterion != "output":
        raise EdgesrError(f"range search criterion must be 'output' or 'mse', got {criterion!r}")
    if not factors or any(not 0.0 < float(f) <= 1.0 for f in factors):
        raise EdgesrError(f"range search factors must lie in (0, 1], got {list(factors)}")
    start = calibrate(deploy_module, x) if ranges is None else dict(ranges)
    sim = fake_quant_module(deploy_module, start).eval()
    with torch.no_grad():
        want = torch.cat([deploy_module(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    inputs = {n.name for n in sim.graph.nodes if n.op == "placeholder"}
    searchable = [n for n, p in sim.quant_plan.items()
                  if n in sim.quantizers and p.fixed_range is None and n not in inputs and n not in sim.clamped]
    report: dict[str, float] = {"output_mse_before": _output_mse(sim, x, want, batch_size)}
    best_err = report["output_mse_before"]
    for name in searchable:
        q = sim.quantizers[name]
        lo0, hi0 = q.rmin.clone(), q.rmax.clone()
        best = 1.0
        for f in factors:
            if f == 1.0:
                continue
            q.rmin.copy_(lo0 * f)
            q.rmax.copy_(hi0 * f)
            err = _output_mse(sim, x, want, batch_size)
            if err < best_err:
                best, best_err = float(f), err
        q.rmin.copy_(lo0 * best)
        q.rmax.copy_(hi0 * best)
        report[name] = best
    report["output_mse_after"] = best_err
    return quantizer_ranges(sim), report
