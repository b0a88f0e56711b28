"""Small int8 TFLite models for the deployment tests, built once per session from Keras.

Built with ``tf.lite.TFLiteConverter.from_keras_model``, per-channel int8 weights, int8
input and output, representative dataset = real patches of the embedded photographs (BT.601
Y / 255), dynamic H x W. Files are cached in one temporary folder for the whole session, so
every test module that asks for the same model shares one conversion.

Other test modules import :func:`int8_model` from here (``from test_integer_ref_models import
int8_model``).
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_CACHE = Path(tempfile.mkdtemp(prefix="edgesr_int8_models_"))


def _patches(n: int = 12, size: int = 32, seed: int = 0):
    from edgesr.core.data import embedded_image, to_luma

    rng = np.random.default_rng(seed)
    ys = [to_luma(embedded_image(k)) for k in ("camera", "astronaut", "coffee")]
    for i in range(n):
        y = ys[i % len(ys)]
        a, b = rng.integers(0, y.shape[0] - size), rng.integers(0, y.shape[1] - size)
        yield [y[a : a + size, b : b + size][None, :, :, None]]


def _build(kind: str):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 1))
    d2s = keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2))
    if kind == "sesr_like":  # every op the zoo's int8 exports use, plus MUL/CONCAT/depthwise/RELU6
        x0 = keras.layers.Conv2D(8, 5, padding="same")(inp)
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x0)
        h = keras.layers.PReLU(shared_axes=[1, 2])(keras.layers.Conv2D(8, 3, padding="same")(h))
        h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(h)
        h = keras.layers.Add()([h, x0])
        c = keras.layers.Concatenate()([h, keras.layers.Multiply()([h, h])])
        out = d2s(keras.layers.Add()([keras.layers.Conv2D(4, 3, padding="same")(c), inp]))
    elif kind == "rank6_shuffle":  # unfriendly: pixel shuffle via rank-6 reshape/transpose
        h = keras.layers.Conv2D(4, 3, padding="same")(inp)
        out = keras.layers.Lambda(lambda t: tf.reshape(tf.transpose(tf.reshape(t, [1, 16, 16, 2, 2, 1]), [0, 1, 3, 2, 4, 5]), [1, 32, 32, 1]))(h)
    elif kind == "float_island":  # unfriendly: SIN has no int8 kernel, so it stays float
        h = keras.layers.Conv2D(4, 3, padding="same")(inp)
        h = keras.layers.Lambda(lambda t: tf.math.sin(t))(h)
        out = d2s(keras.layers.Conv2D(4, 3, padding="same")(h))
    else:
        raise ValueError(kind)
    return keras.Model(inp, out)


def _quantized_tflite(model, representative, name: str, io_dtype: str = "int8", ops=("TFLITE_BUILTINS_INT8",)) -> Path:
    """Convert a Keras model with TFLite's full-integer quantizer (``ops``: OpsSet names; the
    16x8 quantizer is ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``), integer
    I/O of ``io_dtype``, calibrated by ``representative``; written to the session cache as ``name``."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [getattr(tf.lite.OpsSet, o) for o in ops]
    conv.inference_input_type = conv.inference_output_type = getattr(tf, io_dtype)
    path = _CACHE / name
    path.write_bytes(conv.convert())
    return path


@functools.cache
def int8_model(kind: str = "sesr_like") -> Path:
    """Path of a cached int8 ``.tflite``, int8 I/O; ``kind``: ``"sesr_like"`` (clean),
    ``"rank6_shuffle"`` (pixel shuffle through rank-6 reshape/transpose, static 16 x 16 input)
    or ``"float_island"`` (a float SIN between int8 convs, allowed by ``TFLITE_BUILTINS``)."""
    model = _build(kind)
    if kind == "rank6_shuffle":  # static shape: the rank-6 reshape needs it
        model = _static(model)
    ops = ("TFLITE_BUILTINS_INT8", "TFLITE_BUILTINS") if kind == "float_island" else ("TFLITE_BUILTINS_INT8",)
    return _quantized_tflite(model, lambda: _patches(size=16 if kind == "rank6_shuffle" else 32), f"{kind}.tflite",
                             ops=ops)


@functools.cache
def single_op_int8(kind: str, lo: float, hi: float, channels: int = 1) -> Path:
    """A one-operator int8 ``.tflite`` (int8 I/O, dynamic H x W) whose input is calibrated on
    [lo, hi], so its input scale is ``(hi - lo) / 255``: ``kind`` ``"tanh"`` (TANH),
    ``"sigmoid"`` (LOGISTIC), ``"softmax"`` (SOFTMAX over the channel axis) or ``"sum"`` (SUM
    over channels, keep_dims). Cached per session like :func:`int8_model`."""
    import keras
    import tensorflow as tf

    layers = {"tanh": lambda: keras.layers.Activation("tanh"), "sigmoid": lambda: keras.layers.Activation("sigmoid"),
              "softmax": lambda: keras.layers.Softmax(axis=-1),
              "sum": lambda: keras.layers.Lambda(lambda t: tf.reduce_sum(t, axis=-1, keepdims=True))}
    inp = keras.Input((None, None, channels))
    model = keras.Model(inp, layers[kind]()(inp))

    def representative():
        rng = np.random.default_rng(0)
        for _ in range(4):
            v = rng.uniform(lo, hi, (1, 4, 4, channels)).astype(np.float32)
            v.flat[0], v.flat[1] = lo, hi  # the calibrated range is exactly [lo, hi]
            yield [v]

    return _quantized_tflite(model, representative, f"single_{kind}_{lo:g}_{hi:g}_c{channels}.tflite")


@functools.cache
def single_op_int16(kind: str, lo: float, hi: float, channels: int = 1, broadcast: bool = False) -> Path:
    """A one-operator 16x8 ``.tflite`` (int16 I/O, zero points 0, dynamic H x W) from TFLite's
    16x8 quantizer, calibrated so the input range is [lo, hi] (scale ``max(|lo|, |hi|) / 32767``).

    Unary ``kind``: ``"tanh"``, ``"sigmoid"`` (LOGISTIC), ``"exp"``, ``"softmax"`` (over channels),
    ``"sum"`` (over channels, keep_dims). Binary ``kind`` (two int16 inputs, the second calibrated
    on [-hi, hi] / 2): ``"mul"``, ``"sub"`` (``broadcast``: the second input is fed as [1, 1, 1, C]),
    ``"matmul"`` (BATCH_MATMUL of (N, 6, 8) by (N, 8, 5)). Cached per session."""
    import keras
    import tensorflow as tf

    unary = {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "exp": tf.exp, "softmax": lambda t: tf.nn.softmax(t, axis=-1),
             "sum": lambda t: tf.reduce_sum(t, axis=-1, keepdims=True)}
    binary = {"mul": lambda a, b: a * b, "sub": lambda a, b: a - b, "matmul": lambda a, b: tf.matmul(a, b)}
    shapes = [(6, 8), (8, 5)] if kind == "matmul" else [(None, None, channels)] * (2 if kind in binary else 1)
    # named so that the converter's input order (by name) is the list order whatever Keras's
    # session-wide tensor counter has reached
    inputs = [keras.Input(s, name=f"in{k}") for k, s in enumerate(shapes)]
    if kind in binary:
        out = keras.layers.Lambda(lambda t: binary[kind](*t))(inputs)
    else:
        out = keras.layers.Lambda(unary[kind])(inputs[0])
    model = keras.Model(inputs, out)

    def representative():
        rng = np.random.default_rng(0)
        for _ in range(4):
            sample = []
            for k, shape in enumerate(shapes):
                a, b = (lo, hi) if k == 0 else (-hi / 2, hi / 2)
                dims = [1] + [1 if broadcast and k == 1 and d is None else (4 if d is None else d) for d in shape]
                v = rng.uniform(a, b, dims).astype(np.float32)
                v.flat[0], v.flat[-1] = a, b  # the calibrated range is exactly [a, b]
                sample.append(v)
            yield sample

    return _quantized_tflite(model, representative, f"single16_{kind}_{lo:g}_{hi:g}_c{channels}{'_b' if broadcast else ''}.tflite",
                             "int16", ("EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",))


def _static(model):
    import keras

    inp = keras.Input((16, 16, 1), batch_size=1)
    return keras.Model(inp, model(inp))


def test_sesr_like_model_has_the_zoo_ops():
    from edgesr.quantization.integer_ref import read_model

    _, ops, _, _ = read_model(int8_model("sesr_like"))
    names = {op.name for op in ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MUL", "CONCATENATION", "DEPTH_TO_SPACE"} <= names


def _zoo_export(name: str, scale: int, precision: str):
    """``(path, deploy module)``: edgesr's own TFLite export at ``precision`` of a registry model with
    seeded random weights, at min/max ranges calibrated on real patches."""
    import torch
    from edgesr.converters.export import (
        calibration_patches,
        deploy_module,
        export_tflite,
    )

    from edgesr.core.models import create

    torch.manual_seed(0)
    module = deploy_module(create(name, scale=scale))
    path = _CACHE / f"zoo_{name}_x{scale}_{precision}.tflite"
    export_tflite(module, path, precision, calibration_patches(None, module.contract, patch=32, count=8))
    return path, module


@functools.cache
def zoo_int8(name: str, scale: int = 2):
    """``(path, deploy module)``: edgesr's own int8 TFLite export (edgesr.converters.export) of a
    registry model with seeded random weights, calibrated on real patches; cached per session.
    An export failure fails the calling test (every zoo model exports)."""
    return _zoo_export(name, scale, "int8")


@functools.cache
def zoo_w8a16(name: str, scale: int = 2):
    """``(path, deploy module)``: edgesr's w8a16 TFLite export of a registry model with seeded
    random weights, at min/max ranges calibrated on real patches (as :func:`zoo_int8`); cached."""
    return _zoo_export(name, scale, "w8a16")
