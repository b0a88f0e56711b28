"""Core ML w8a8 (int8 weights and activations) keeps a fitted model's output.

A tiny SESR-M3 ReLU (expansion 16, x2) fitted for 60 steps on the embedded training photos,
calibrated on 16 patches of those photos, scored on two held-out photos: 'chelsea' (RGB, its
Y stays inside the calibration range) and 'camera' (grayscale: the input reaches 0 and 1,
beyond every calibration patch). Checked twice: the fake-quantized PyTorch module that
``edgesr.converters.coreml`` traces, and the converted ML program run by the MIL interpreter.

Thresholds (PSNR of the clipped output vs the float model's, in [0, 1]):

* 55 dB. Rounding the float output to 8 bits, which every evaluation does, alone is
  10 log10(12 * 255^2) = 58.9 dB; int8 activations with calibrated ranges add noise of that
  order (measured on these crops: 61.7 dB on chelsea and 59.6 dB on camera for the PyTorch
  module, 61.2 / 59.3 dB for the MIL program). What this catches, measured on the same model
  and crops: the moving-average observers coremltools uses by default, which barely leave
  the first calibration patch's ranges (16.4 / 11.3 dB), and quantizing the residual add
  and the output symmetrically (50.2 / 43.6 dB; on a trained SESR-M5 ReLU that is 0.33 dB
  below float on Set5 instead of 0.09 dB, though on these crops only 0.09 dB on HR).
* The MIL program within 3 dB of the PyTorch module (fp16 compute, and activations that land
  on the other side of a rounding boundary move by one int8 step).
* On HR: at most 0.15 dB below the float model (the int8 tolerance of
  :mod:`edgesr.app.validation`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesr.core.data import embedded_image, eval_pairs
from edgesr.core.evaluate import (
    TorchUpscaler,
    calibration_patches,
    evaluate,
    model_input,
)
from edgesr.core.imresize import make_lr

MIN_PSNR_VS_FLOAT_DB = 55.0
MAX_MIL_BELOW_TORCH_DB = 3.0
MAX_HR_DROP_DB = 0.15


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from edgesr.core.checkpoint import load_checkpoint
    from edgesr.core.train import TrainConfig, train

    out = tmp_path_factory.mktemp("w8a8_train")
    ckpt = train(TrainConfig(model="sesr_m3_relu", scale=2, model_kwargs={"expansion": 16}, out=str(out), steps=60,
                             batch=8, lr_patch=24, lr=2e-3, val_every=0, checkpoint_every=10**6, device="cpu",
                             progress=False))
    model, _ = load_checkpoint(ckpt, deploy=True)
    return model.eval()


@pytest.fixture(scope="module")
def calib(fitted):
    return calibration_patches(None, fitted.contract, count=16, patch=32)


@pytest.fixture(scope="module")
def photos():
    """Held-out HR crops (not among the calibration photographs): RGB and grayscale."""
    return [("chelsea", embedded_image("chelsea")[:200, :240]), ("camera", embedded_image("camera")[100:300, 150:390])]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return 10.0 * np.log10(1.0 / mse)


def _outputs(fn, model, photos) -> dict:
    outs = {}
    for name, hr in photos:
        x = model_input(make_lr(hr, model.scale), model.contract)
        with torch.no_grad():
            outs[name] = np.asarray(fn(x), dtype=np.float32)
    return outs


@pytest.fixture(scope="module")
def float_outputs(fitted, photos):
    return _outputs(lambda x: fitted(torch.from_numpy(x)).numpy(), fitted, photos)


@pytest.fixture(scope="module")
def fake_quant(fitted, calib):
    from edgesr.converters.coreml import _w8a8

    q = _w8a8(fitted, 1, calib)
    q.contract, q.scale = fitted.contract, fitted.scale
    return q


def test_fake_quantized_module_is_close_to_float(fitted, fake_quant, photos, float_outputs):
    assert torch.is_tensor(fake_quant.first_input_scale_0)  # the input really is quantized
    outs = _outputs(lambda x: fake_quant(torch.from_numpy(x)).numpy(), fitted, photos)
    for name, ref in float_outputs.items():
        assert outs[name].shape == ref.shape
        assert _psnr(outs[name], ref) >= MIN_PSNR_VS_FLOAT_DB, name
    pairs = eval_pairs(photos, fitted.scale)
    drop = evaluate(TorchUpscaler(fitted), pairs)["psnr_y"] - evaluate(TorchUpscaler(fake_quant), pairs)["psnr_y"]
    assert drop <= MAX_HR_DROP_DB


def test_converted_program_is_close_to_float(fitted, fake_quant, calib, photos, float_outputs, tmp_path):
    from edgesr.converters import export_coreml
    from edgesr.converters.coreml import check_structure
    from edgesr.converters.mil_interpreter import MILUpscaler

    art = export_coreml(fitted, tmp_path / "m_w8a8.mlpackage", "w8a8", calib)
    s = check_structure(art["path"], "w8a8", channels=1)
    assert s["passed"], s["problems"]
    assert s["ops"].count("quantize") >= 1 + len(fitted.blocks) + 1  # the input, each block, the last conv's input
    up = MILUpscaler(art["path"])
    outs = _outputs(up, fitted, photos)
    torch_outs = _outputs(lambda x: fake_quant(torch.from_numpy(x)).numpy(), fitted, photos)
    for name, ref in float_outputs.items():
        assert outs[name].shape == ref.shape
        got = _psnr(outs[name], ref)
        assert got >= MIN_PSNR_VS_FLOAT_DB, name
        assert got >= _psnr(torch_outs[name], ref) - MAX_MIL_BELOW_TORCH_DB, name
    pairs = eval_pairs(photos, fitted.scale)
    drop = evaluate(TorchUpscaler(fitted), pairs)["psnr_y"] - evaluate(up, pairs)["psnr_y"]
    assert drop <= MAX_HR_DROP_DB
