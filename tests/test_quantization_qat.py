"""Quantization-aware fine-tuning on real photographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from edgesr.quantization import calibrate, fake_quant_module, qat
from edgesr.quantization.qat import hr_patches
from test_quantization_common import one_thread, tiny_deploy  # noqa: F401 (fixture)

from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.imresize import imresize_torch
from edgesr.core.metrics import psnr

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    model = tiny_deploy()
    train = [("camera", embedded_image("camera")), ("astronaut", embedded_image("astronaut"))]
    held_hr = hr_patches([embedded_image("chelsea")], model.contract, patch=48, count=16, seed=7)  # unseen photo
    return model, train, held_hr, imresize_torch(held_hr, 0.5)


def _sim_l1(module, ranges, lr, hr):
    with torch.no_grad():
        return float(F.l1_loss(fake_quant_module(module, ranges).eval()(lr), hr))


def test_qat_lowers_the_int8_loss_on_unseen_patches(setup):
    model, train, held_hr, held_lr = setup
    before_weights = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    tuned, ranges = qat(model, train, steps=25, patch=48, count=32, lr=1e-3, on_step=lambda s, l: losses.append(l))
    assert len(losses) == 25 and all(np.isfinite(losses))
    before = _sim_l1(model, calibrate(model, held_lr), held_lr, held_hr)
    after = _sim_l1(tuned, ranges, held_lr, held_hr)
    assert after < before
    assert type(tuned) is type(model) and not tuned.training
    for k, v in model.state_dict().items():  # the input module is left alone
        assert torch.equal(v, before_weights[k])
    with torch.no_grad():  # the int8 simulation stays close to the tuned float module
        out_f, out_q = tuned(held_lr).numpy(), fake_quant_module(tuned, ranges).eval()(held_lr).numpy()
    assert psnr(out_q * 255.0, out_f * 255.0) > 40.0


def test_learned_ranges_move_and_patch_input_is_accepted(setup):
    model, _, held_hr, held_lr = setup
    start = calibrate(model, held_lr)
    tuned, ranges = qat(model, held_hr.numpy(), steps=6, ranges=start, range_mode="learn", lr=1e-2, batch_size=4)
    assert set(ranges) == set(start)
    assert any(abs(ranges[k][1] - start[k][1]) > 1e-4 for k in start)
    for lo, hi in ranges.values():
        assert lo <= 0.0 <= hi


def test_qat_rejects_bad_input(setup):
    model, train, _, _ = setup
    with pytest.raises(EdgesrError, match="steps"):
        qat(model, train, steps=-1)
    with pytest.raises(EdgesrError, match="patches"):
        qat(model, np.zeros((2, 3, 8, 8), np.float32), steps=1)
