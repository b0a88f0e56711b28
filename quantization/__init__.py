"""Int8 quantization for TFLite: arithmetic, calibration, QAT and checkpoint quantization.

Public API::

    calibrate(deploy_module, patches, observer="minmax", **kw) -> {fx node: (min, max)}
    fake_quant_module(deploy_module, ranges) -> fx.GraphModule (the int8 simulation)
    qat(deploy_module, patches_or_images, steps, ...) -> (module, ranges)
    quantize_checkpoint(ckpt_path, calib_dir, observer, qat_steps, out_path) -> report dict
    read_quantized(path) -> QuantizedCheckpoint (module, activation_ranges): what exporters read

The bit-exact integer arithmetic (nudging, per-channel weights, int32 bias, fixed-point
requantization) is in :mod:`edgesr.quantization.arithmetic`; which fx nodes are int8 tensors in
TFLite is decided in :mod:`edgesr.quantization.graph`.
"""

from edgesr.quantization.api import (
    QuantizedCheckpoint,
    is_quantized,
    load_activation_ranges,
    quantize_checkpoint,
    read_quantized,
)
from edgesr.quantization.calibration import OBSERVERS, calibrate
from edgesr.quantization.fake_quant import fake_quant_module, quantizer_ranges
from edgesr.quantization.qat import qat

__all__ = ["OBSERVERS", "QuantizedCheckpoint", "calibrate", "fake_quant_module", "is_quantized", "load_activation_ranges", "qat",
           "quantize_checkpoint", "quantizer_ranges", "read_quantized"]
