"""converters: deploy modules -> TFLite (LiteRT), Core ML and ONNX artifacts, and their runtimes.

Public API (TensorFlow, coremltools and ONNX load only when a function needs them):

* :func:`edgesr.converters.export.export` ``(model_or_checkpoint, out_dir, formats, precisions,
  calibration=None, io_dtype="int8") -> [{format, precision, path, bytes}]`` (a quantized
  checkpoint brings its activation ranges) and the per-format ``export_tflite`` /
  ``export_onnx`` / ``export_coreml``;
* the runtimes' Upscaler classes in :mod:`edgesr.converters.runtime` (open an artifact with
  :func:`edgesr.app.artifacts.open_artifact`, which reads its embedded contract);
* :func:`edgesr.converters.keras_rebuild.rebuild` (generic torch.fx -> Keras) with its emitters (``keras_ops.EMITTERS``) for the ops of the op table (``edgesr.core.ops``);
* :func:`edgesr.converters.tflite.graph_report`, :func:`edgesr.converters.coreml.structure` (structure checks).
"""

from edgesr.converters.export import (
    FORMATS,
    deploy_module,
    export,
    export_coreml,
    export_onnx,
    export_tflite,
)

__all__ = ["FORMATS", "deploy_module", "export", "export_coreml", "export_onnx", "export_tflite"]
