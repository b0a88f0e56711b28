"""converters: deploy modules -> TFLite (LiteRT), Core ML and ONNX artifacts, and their runtimes.

Public API (TensorFlow, coremltools and ONNX load only when a function needs them):

* :func:`converters.export.export` ``(model_or_checkpoint, out_dir, formats, precisions,
  calibration=None, activation_ranges=None, io_dtype="int8") -> [{format, precision, path, bytes}]``
  and the per-format ``export_tflite`` / ``export_onnx`` / ``export_coreml``;
* :func:`converters.export.calibration_patches` (real image patches for int8);
* :func:`converters.runtime.load_upscaler` ``(path, **options) -> Upscaler``;
* :func:`converters.keras_rebuild.rebuild` (generic torch.fx -> Keras) and its op table ``OPS``;
* :func:`converters.tflite.graph_report`, :func:`converters.coreml.structure` (structure checks).
"""

from converters.export import FORMATS, calibration_patches, deploy_module, export, export_coreml, export_onnx, export_tflite

__all__ = ["FORMATS", "calibration_patches", "deploy_module", "export", "export_coreml", "export_onnx", "export_tflite"]
