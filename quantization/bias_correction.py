"""Empirical bias correction: remove the mean output shift that int8 adds to each conv.

Nagel, van Baalen, Blankevoort, Welling, "Data-Free Quantization Through Weight Equalization
and Bias Correction", ICCV 2019 (section 4.2). Quantizing weights (and the activations feeding
a conv) shifts the expected value of its output: ``E[W~ x~] - E[W x] = eps`` per output
channel, and the shift accumulates through the network. The empirical variant measures it on
calibration patches: for each conv, in graph order, the per-channel mean of its output in the
float model (on float inputs) minus that in the int8 simulation (on quantized inputs, with the
convs before it already corrected), and adds the difference to the conv's float bias. The bias
then goes to int32 as usual (scale ``input_scale * weight_scale``), so the fake-quant still
predicts LiteRT. The correction is measured at the conv's own output (before a fused RELU).
"""

from __future__ import annotations

import torch
from edgesr.quantization.layer_io import channel_mean, layerwise_setup, run_capture
from torch import nn


def correct_bias(deploy_module: nn.Module, ranges: dict[str, tuple[float, float]], patches, *,
                 batch_size: int = 16) -> tuple[nn.Module, dict[str, float | str]]:
    """Empirically bias-corrected copy of ``deploy_module`` for the int8 simulation with ``ranges``.

    Args:
        deploy_module: plain deploy module (after ``collapse()``), float32, fx-traceable.
        ranges: ``{fx node: (min, max)}`` activation ranges (e.g. :func:`~edgesr.quantization.calibrate`).
        patches: float32 (N, C, P, P) model inputs in the contract's range (calibration patches).
        batch_size: patches per forward pass.
    Returns:
        ``(module, report)``: a new module (eval mode) whose conv biases include the correction,
        and ``{conv module path: max |correction| over channels}``; a conv without a bias is
        reported as ``"no bias (skipped)"`` (adding one would change the model's parameters).

    Raises:
        EdgesrError: ``patches`` not (N, C, H, W) with N > 0.
    """
    x, reference, module, sim, targets = layerwise_setup(deploy_module, ranges, patches, "bias correction")
    report: dict[str, float | str] = {}
    for path in targets:
        conv = module.get_submodule(path)
        if conv.bias is None:
            report[path] = "no bias (skipped)"
            continue
        want = channel_mean(run_capture(reference, path, x, batch_size))
        got = channel_mean(run_capture(sim, path, x, batch_size))
        delta = want - got
        with torch.no_grad():
            conv.bias.add_(delta.float())
        report[path] = float(delta.abs().max())
    return module.eval(), report
