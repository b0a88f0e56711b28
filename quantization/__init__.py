"""Int8 quantization for TFLite: arithmetic, calibration, QAT and checkpoint quantization.

Public API::

    calibrate(deploy_module, patches, observer="minmax", **kw) -> {fx node: (min, max)}
    fake_quant_module(deploy_module, ranges) -> fx.GraphModule (the int8 simulation)
    qat(deploy_module, patches_or_images, steps, ...) -> (module, ranges)
    quantize_checkpoint(ckpt_path, calib_dir, observer, qat_steps, out_path, recipe=None) -> report dict
    read_quantized(path) -> QuantizedCheckpoint (module, activation_ranges): what exporters read

Post-training techniques and the recipe (each on any registered model's traced deploy graph)::

    equalize(deploy_module) -> (module, EqualizationReport)          cross-layer equalization
    correct_bias(deploy_module, ranges, patches) -> (module, report)   empirical bias correction
    adaround(deploy_module, ranges, patches) -> (module, report)       learned weight rounding
    search_ranges(deploy_module, patches, ranges) -> (ranges, report)  activation-range search
    run_recipe(deploy_module, calib, hr, val_hr, recipe="default") -> RecipeResult

The bit-exact integer arithmetic (nudging, per-channel weights, int32 bias, fixed-point
requantization) is in :mod:`edgesr.quantization.arithmetic`; which fx nodes are int8 tensors in
TFLite is decided in :mod:`edgesr.quantization.graph`.
"""

from edgesr.quantization.adaround import adaround
from edgesr.quantization.api import (
    QuantizedCheckpoint,
    is_quantized,
    load_activation_ranges,
    quantize_checkpoint,
    read_quantized,
)
from edgesr.quantization.bias_correction import correct_bias
from edgesr.quantization.calibration import OBSERVERS, calibrate
from edgesr.quantization.equalization import equalize
from edgesr.quantization.fake_quant import fake_quant_module, quantizer_ranges
from edgesr.quantization.qat import qat
from edgesr.quantization.range_search import search_ranges
from edgesr.quantization.recipe import RECIPES, run_recipe

__all__ = ["OBSERVERS", "QuantizedCheckpoint", "RECIPES", "adaround", "calibrate", "correct_bias", "equalize",
           "fake_quant_module", "is_quantized", "load_activation_ranges", "qat", "quantize_checkpoint", "quantizer_ranges",
           "read_quantized", "run_recipe", "search_ranges"]
