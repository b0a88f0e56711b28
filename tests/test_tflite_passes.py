"""Dropping the int8 output clamp the quantization already saturates at: bit-identical, and whole on XNNPACK.

SESR-M5-ReLU and eSR-MAX (the issue's targets) exported to int8 with and without the pass, run
on real photographs by the integer reference (every kernel family) and by LiteRT: identical codes;
the XNNPACK delegate then takes the whole graph as one partition.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgesr.converters import tflite as tflite_mod
from edgesr.converters.export import calibration_patches, deploy_module
from edgesr.converters.partitions import xnnpack_partitions
from edgesr.converters.tflite_passes import drop_saturating_clamps
from edgesr.quantization.integer_ref import IntegerGraph
from edgesr.quantization.tflite_model import read_model

from edgesr.app.integer_litert import run_litert
from edgesr.core.data import to_luma
from edgesr.core.models import create


def _photos(photo, gray_photo) -> list[np.ndarray]:
    """int8 NHWC luma crops of two real photographs (odd sizes), quantized as the input tensor (1/255, -128)."""
    crops = [gray_photo[101:158, 203:274].astype(np.float32) / 255, to_luma(photo[40:93, 60:127])]
    return [np.clip(np.round(c * 255) - 128, -128, 127).astype(np.int8)[None, :, :, None] for c in crops]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``{name: (path without the pass, path with it, dropped op names)}`` for the targets."""
    root, out = tmp_path_factory.mktemp("passes"), {}
    for name in ("sesr_m5_relu", "esr_max"):
        torch.manual_seed(0)
        module = deploy_module(create(name, scale=2))
        calib = calibration_patches(None, module.contract, patch=32, count=4)
        with pytest.MonkeyPatch.context() as mp:  # the converter's own graph, pass switched off
            mp.setattr(tflite_mod, "drop_saturating_clamps", lambda data: (data, []))
            raw = tflite_mod.convert(module, 1, "int8", calib)
        new, dropped = drop_saturating_clamps(raw)
        (root / f"{name}.raw.tflite").write_bytes(raw)
        (root / f"{name}.tflite").write_bytes(new)
        (root / f"{name}.export.tflite").write_bytes(tflite_mod.convert(module, 1, "int8", calib))
        ops = lambda p: [op.name for op in read_model(p)[1]]
        assert ops(root / f"{name}.export.tflite") == ops(root / f"{name}.tflite")  # convert applies the pass
        out[name] = (root / f"{name}.raw.tflite", root / f"{name}.tflite", dropped)
    return out


@pytest.mark.parametrize("name,dropped", [("sesr_m5_relu", ["MINIMUM"]), ("esr_max", ["RELU", "MINIMUM"])])
def test_dropped_clamp_is_bit_identical_on_photos(exports, photo, gray_photo, name, dropped):
    raw, new, got = exports[name]
    assert got == dropped
    for q in _photos(photo, gray_photo):
        for kernels in ("reference", "xnnpack"):
            before, after = IntegerGraph(raw, kernels).run(q)[0], IntegerGraph(new, kernels).run(q)[0]
            assert np.array_equal(before, after), kernels
        litert = run_litert(new, q, "xnnpack")
        assert np.array_equal(litert, IntegerGraph(new, "xnnpack").run(q)[0])
        assert np.array_equal(litert, run_litert(raw, q, "xnnpack"))


@pytest.mark.parametrize("name", ["sesr_m5_relu", "esr_max"])
def test_targets_run_whole_on_xnnpack(exports, name):
    raw, new, _ = exports[name]
    assert xnnpack_partitions(raw)["ops_outside"]  # the clamp stayed outside before
    whole = xnnpack_partitions(new)
    assert whole["partitions"] == 1 and whole["ops_outside"] == []
    tensors, _, _, outputs = read_model(new)
    assert tensors[outputs[0]].name == read_model(raw)[0][read_model(raw)[3][0]].name  # output keeps its name


@pytest.mark.parametrize("kind", ["relu_rescales", "min_of_two_tensors"])
def test_a_clamp_that_computes_is_kept(kind):
    """A RELU whose input is quantized over [-1, 2] and output over [0, 2] requantizes; a MINIMUM
    of two activations is no constant clamp: neither is an identity on codes, both stay."""
    import keras
    import tensorflow as tf

    inp = keras.Input((None, None, 1), batch_size=1)
    out = keras.ops.relu(inp) if kind == "relu_rescales" else keras.ops.minimum(inp, keras.ops.tanh(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.uniform(-1, 2, (1, 8, 8, 1)).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    data = conv.convert()
    new, dropped = drop_saturating_clamps(data)
    assert dropped == [] and new == data
