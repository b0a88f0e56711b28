"""Quantization-aware fine-tuning on real photographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from edgesr.quantization import calibrate, fake_quant_module, qat
from edgesr.quantization.qat import ValScore, degrade, hr_patches, sim_psnr, sim_scores, whole_images
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


def test_learned_ranges_leave_the_output_clamps_range_alone(setup):
    """LSQ learns every inner range but not the one of the tensors that end in the output
    clamp: narrowed on training patches it would clip the brighter pixels of other photos
    (SESR-M5's fell below 1 on T91 patches) and round twice on the way to 8 bits."""
    model, train, _, held_lr = setup
    start = calibrate(model, held_lr)
    sim = fake_quant_module(model, start, range_mode="lsq")
    assert sim.clamped == {"add_1": (0.0, 1.0)}
    assert sim.quantizers["add_1"].mode == "fixed" and sim.quantizers["last"].mode == "lsq"
    tuned, ranges = qat(model, train, steps=10, patch=48, count=16, ranges=start, range_mode="lsq", lr=1e-3,
                        range_lr=5e-2)
    assert any(ranges[k] != start[k] for k in start if k not in ("x", "add_1", "pixel_shuffle", "clamp"))
    assert ranges["add_1"] == ranges["clamp"] == (0.0, 1.0)


def test_whole_images_are_scored_pooled_with_the_benchmark_border(setup):
    """The recipe's validation set: held-out photos whole in model space (cropped to multiples
    of the scale), each run alone; their PSNR pools the squared errors of all of them inside a
    border of ``scale`` pixels, as the benchmarks crop."""
    model, _, _, _ = setup
    photos = [("chelsea", embedded_image("chelsea")), ("coffee", embedded_image("coffee"))]
    hr = whole_images(photos, model.contract)
    assert [tuple(h.shape) for h in hr] == [(1, 1, 300, 450), (1, 1, 400, 600)]
    assert hr[0].dtype == torch.float32 and 0.0 <= float(hr[0].min()) and float(hr[0].max()) <= 1.0
    lr = degrade(hr, 2)
    assert [tuple(x.shape) for x in lr] == [(1, 1, 150, 225), (1, 1, 200, 300)]
    sim = fake_quant_module(model, calibrate(model, lr[0])).eval()
    with torch.no_grad():
        se = sum(float((sim(x) - h)[..., 2:-2, 2:-2].double().pow(2).sum()) for x, h in zip(lr, hr))
    n = sum(h[..., 2:-2, 2:-2].numel() for h in hr)
    assert sim_psnr(sim, lr, hr) == pytest.approx(10 * np.log10(n / se), abs=1e-9)
    assert sim_psnr(sim, lr, hr, border=0) != sim_psnr(sim, lr, hr)
    each = sim_scores(sim, lr, hr).each
    assert each.shape == (2,) and each[0] == pytest.approx(
        10 * np.log10(hr[0][..., 2:-2, 2:-2].numel() / float((sim(lr[0]) - hr[0])[..., 2:-2, 2:-2].double().pow(2).sum())))
    with pytest.raises(EdgesrError, match="validation photo"):
        whole_images([np.zeros((6, 6), np.uint8)], model.contract)


def test_a_candidate_beats_the_incumbent_on_the_whole_and_on_most_images():
    """Pooled PSNR up is not enough: more than half of the images must rise too."""
    base = ValScore(30.0, np.array([30.0, 31.0, 29.0]))
    assert ValScore(30.1, np.array([30.1, 31.1, 28.9])).beats(base)  # up on the whole and on 2 of 3
    assert not ValScore(30.1, np.array([30.5, 30.9, 28.9])).beats(base)  # one image carries the gain
    assert not ValScore(29.9, np.array([30.1, 31.1, 28.0])).beats(base)  # most rise, the whole falls
    assert not base.beats(base)  # a tie keeps the incumbent
    assert not ValScore(30.1, np.array([30.1, 30.9])).beats(ValScore(30.0, np.array([30.0, 31.0])))  # half is not most


def test_qat_returns_the_int8_weights_it_trained(setup):
    """QAT's latent float weights are trained for what they round to; the module it returns
    carries those int8 values (conv weights per channel, PReLU slopes per tensor), so in float it
    is the int8 weights with float activations: the weights-only simulation exactly, and a
    second rounding changes nothing."""
    from edgesr.quantization.fake_quant import fake_quant_weight, snap_weights_to_int8

    model, train, _, held_lr = setup
    prelu_model = tiny_deploy("sesr_m3")  # PReLU slopes as well as convs
    for start in (model, prelu_model):
        tuned, ranges = qat(start, train, steps=10, patch=48, count=32, lr=1e-2, seed=3)
        weights = [m.weight for m in tuned.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.PReLU))]
        assert any(isinstance(m, torch.nn.PReLU) for m in tuned.modules()) == (start is prelu_model)
        for w in weights:
            assert torch.equal(fake_quant_weight(w.reshape(w.shape[0] if w.dim() > 1 else 1, -1)).reshape(w.shape), w)
        with torch.no_grad():
            assert torch.equal(tuned(held_lr), fake_quant_module(tuned, ranges, activations=False).eval()(held_lr))
            assert torch.equal(fake_quant_module(snap_weights_to_int8(tuned), ranges).eval()(held_lr),
                               fake_quant_module(tuned, ranges).eval()(held_lr))
        assert not all(torch.equal(a, b) for a, b in zip(weights, [m.weight for m in start.modules()
                                                                   if isinstance(m, (torch.nn.Conv2d, torch.nn.PReLU))]))


def test_distillation_brings_the_int8_model_closer_to_its_float_teacher(setup):
    """``teacher=``: QAT fits the float model's output, so the int8 simulation's error against that
    output on an unseen photo falls below the calibrated start's; fitting the HR patches instead
    (the default) takes this untrained model far from its own output."""
    model, train, _, held_lr = setup
    with torch.no_grad():
        teacher_out = model.eval()(held_lr)
    start = _sim_l1(*qat(model, train, steps=0, patch=48, count=32), held_lr, teacher_out)
    distilled = _sim_l1(*qat(model, train, steps=25, patch=48, count=32, lr=1e-4, teacher=model), held_lr, teacher_out)
    to_photos = _sim_l1(*qat(model, train, steps=25, patch=48, count=32, lr=1e-4), held_lr, teacher_out)
    assert distilled < 0.9 * start, (start, distilled)
    assert to_photos > 10 * start, (start, to_photos)
