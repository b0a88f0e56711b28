"""Post-training int8 techniques on real photographs: CLE, bias correction, AdaRound, range search."""

from __future__ import annotations

import copy

import pytest
import torch
from edgesr.quantization import calibrate, fake_quant_module
from edgesr.quantization.adaround import adaround
from edgesr.quantization.bias_correction import correct_bias
from edgesr.quantization.equalization import equalization_pairs, equalize
from edgesr.quantization.fake_quant import fake_quant_weight
from edgesr.quantization.graph import trace
from edgesr.quantization.qat import hr_patches, qat
from edgesr.quantization.range_search import search_ranges
from edgesr.quantization.recipe import RecipeConfig, choose_w8a16_weights
from test_quantization_common import one_thread, tiny_deploy  # noqa: F401 (fixture)

from edgesr.core.data import embedded_images
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import calibration_patches
from edgesr.core.models import create

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos():
    """Calibration patches from the training photos, held-out patches from the validation photos."""
    model = tiny_deploy()
    calib = torch.from_numpy(calibration_patches(embedded_images("train"), model.contract, 32, 24, seed=0))
    held = torch.from_numpy(calibration_patches(embedded_images("val"), model.contract, 48, 12, seed=1))
    return model, calib, held


@pytest.mark.parametrize("name", ["sesr_m3", "sesr_m3_relu"])
def test_equalization_preserves_the_float_function(name, photos):
    _, _, held = photos
    torch.manual_seed(1)
    model = create(name, scale=2, expansion=16).collapse()
    with torch.no_grad():  # unbalanced channels, as trained nets have: CLE must move them
        model.blocks[0].weight.mul_(torch.logspace(-1, 1, model.blocks[0].out_channels).reshape(-1, 1, 1, 1))
    equalized, report = equalize(model)
    assert [(a, b) for a, b, _ in report.pairs] == [("blocks_0", "blocks_1"), ("blocks_1", "blocks_2")]
    assert {act for _, _, act in report.pairs} == ({"prelu"} if name == "sesr_m3" else {"relu"})
    assert "first" in report.skipped and "2 consumers" in report.skipped["first"]  # residual from the first conv
    with torch.no_grad():
        assert float((equalized(held) - model(held)).abs().max()) < 1e-5
    w1, w2 = equalized.blocks[0].weight.detach(), equalized.blocks[1].weight.detach()
    r1 = w1.abs().amax(dim=(1, 2, 3))
    r2 = w2.abs().amax(dim=(0, 2, 3))
    before = model.blocks[0].weight.detach().abs().amax(dim=(1, 2, 3))
    assert float((r1 / r2).log().abs().max()) < 0.05 < float((before / model.blocks[1].weight.detach().abs().amax(dim=(0, 2, 3))).log().abs().max())


def test_equalization_skips_what_the_graph_forbids():
    torch.manual_seed(0)
    esr = create("eSR-CNN_s2_C8_D3_S9", scale=2)
    pairs, skipped = equalization_pairs(trace(esr))
    assert pairs == [] and "Tanh" in skipped["filter_0"] and "pixel_shuffle" in skipped["filter_4"]


def _mean_abs_error(module, ranges, x, reference):
    with torch.no_grad():
        return float((fake_quant_module(module, ranges).eval()(x) - reference(x)).abs().mean())


def test_bias_correction_reduces_the_mean_output_error_on_held_out_photos(photos):
    model, calib, held = photos
    ranges = calibrate(model, calib)
    corrected, report = correct_bias(model, ranges, calib)
    assert set(report) == {"first", "blocks.0", "blocks.1", "blocks.2", "last"}
    assert all(isinstance(v, float) and v > 0 for v in report.values())
    assert _mean_abs_error(corrected, ranges, held, model) < 0.9 * _mean_abs_error(model, ranges, held, model)
    for name, p in model.named_parameters():  # only biases move
        if name.endswith("weight"):
            assert torch.equal(p, corrected.get_parameter(name))


def test_adaround_does_not_increase_any_layer_reconstruction_error(photos):
    model, calib, held = photos
    ranges = calibrate(model, calib)
    rounded, report = adaround(model, ranges, calib[:8], iters=40, batch_size=4)
    assert set(report) == {"first", "blocks.0", "blocks.1", "blocks.2", "last"}
    for r in report.values():
        assert r.adaround <= r.nearest
    assert sum(r.adaround for r in report.values()) < 0.8 * sum(r.nearest for r in report.values())
    changed = 0
    for name, conv in rounded.named_modules():
        if isinstance(conv, torch.nn.Conv2d):
            w = conv.weight
            assert torch.equal(fake_quant_weight(w), w)  # on TFLite's per-channel int8 grid, same scales
            assert torch.equal(w.abs().amax(dim=(1, 2, 3)), fake_quant_weight(model.get_submodule(name).weight).abs().amax(dim=(1, 2, 3)))
            changed += int((w != fake_quant_weight(model.get_submodule(name).weight)).sum())
    assert changed > 0  # some weights rounded the other way than nearest
    assert _mean_abs_error(rounded, ranges, held, model) < _mean_abs_error(model, ranges, held, model)


def test_output_range_search_lowers_the_output_error(photos):
    model, calib, held = photos
    start = calibrate(model, calib)
    lo, hi = start["acts_1"]
    start["acts_1"] = (3 * lo, 3 * hi)  # as a rare outlier would stretch a min/max range
    ranges, report = search_ranges(model, calib, start, factors=(1.0, 0.8, 0.6, 0.4))
    assert set(ranges) == set(start)
    assert report["output_mse_after"] < report["output_mse_before"]
    assert report["acts_1"] < 1.0 and ranges["acts_1"][1] < 3 * hi
    assert ranges["x"] == start["x"]  # the input keeps the contract's range
    # the group that ends in the output clamp keeps the clamp's range (the 8-bit display grid)
    assert "add_1" not in report and ranges["add_1"] == start["add_1"] == (0.0, 1.0)
    for lo, hi in ranges.values():
        assert lo <= 0.0 <= hi
    mse_ranges, _ = search_ranges(model, calib, criterion="mse")
    assert set(mse_ranges) == set(start)
    with pytest.raises(EdgesrError, match="criterion"):
        search_ranges(model, calib, criterion="psnr?")
    with pytest.raises(EdgesrError, match="factors"):
        search_ranges(model, calib, factors=(1.5,))


def test_weights_only_simulation_is_the_model_with_int8_weights(photos):
    model, calib, held = photos
    sim = fake_quant_module(model, {}, activations=False).eval()
    assert sim.quantizers == {}
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for conv in rounded.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.copy_(fake_quant_weight(conv.weight))
        assert torch.equal(sim(held), rounded(held))
        assert not torch.equal(sim(held), model(held))


def test_w8a16_weights_are_the_better_of_the_recipes_and_the_float_models(photos):
    """The choice follows the held-out PSNR with int8 weights and float activations, whichever
    candidate plays which role; the recipe's wins a tie."""
    model, calib, _ = photos
    val = hr_patches(embedded_images("val"), model.contract, patch=48, count=8, seed=2)
    worse = copy.deepcopy(model)
    with torch.no_grad():
        worse.first.weight.mul_(1.3)  # other weights, a worse function
    chosen, record = choose_w8a16_weights(model, worse, val)
    assert chosen is model and record["weights"] == "float"
    assert record["val_psnr_db"]["float"] > record["val_psnr_db"]["recipe"]
    chosen, record = choose_w8a16_weights(worse, model, val)
    assert chosen is model and record["weights"] == "recipe"
    chosen, record = choose_w8a16_weights(model, model, val)
    assert record["weights"] == "recipe" and record["val_psnr_db"]["float"] == record["val_psnr_db"]["recipe"]


def test_adaround_for_float_activations_lowers_the_w8a16_error(photos):
    """AdaRound with ``activations=False`` fits the int8 weights' rounding to float activations
    (a w8a16 model): on held-out photos the weights-only simulation's error falls below nearest
    rounding's (measured: mean absolute error 9.8e-4 against 1.8e-3; the layers' reconstruction
    errors sum to 0.71 of nearest rounding's), and :func:`choose_w8a16_weights` offers it as a
    third candidate, taken here."""
    model, calib, held = photos
    rounded, report = adaround(model, {}, calib[:8], iters=40, batch_size=4, activations=False)
    assert set(report) == {"first", "blocks.0", "blocks.1", "blocks.2", "last"}
    assert sum(r.adaround for r in report.values()) < 0.8 * sum(r.nearest for r in report.values())

    def w8a16_error(m):
        with torch.no_grad():
            return float((fake_quant_module(m, {}, activations=False).eval()(held) - model(held)).abs().mean())

    assert w8a16_error(rounded) < w8a16_error(model)
    val = hr_patches(embedded_images("val"), model.contract, patch=48, count=8, seed=2)
    chosen, record = choose_w8a16_weights(model, model, val, calib[:8], adaround_iters=40)
    assert set(record["val_psnr_db"]) == {"recipe", "float", "adaround_w8a16"}
    assert record["weights"] == "adaround_w8a16" and chosen is not model
    assert record["val_psnr_db"]["adaround_w8a16"] > record["val_psnr_db"]["recipe"]


def test_qat_for_float_activations_is_the_last_w8a16_candidate(photos):
    """Given HR patches, :func:`choose_w8a16_weights` fine-tunes the candidate chosen so far
    through int8 weights and float activations (``qat(activations=False)``, keep-best on the
    held-out patches): it never scores below its start there, it is taken only where it beats
    it, and it trains the weights a w8a16 model runs, not the int8 activations' ones."""
    model, _, held = photos
    val = hr_patches(embedded_images("val"), model.contract, patch=48, count=8, seed=2)
    hr = hr_patches(embedded_images("train"), model.contract, patch=48, count=32, seed=1)
    config = RecipeConfig(qat_steps=40, qat_eval_every=10, qat_lr=1e-3)
    chosen, record = choose_w8a16_weights(model, model, val, None, hr, config=config)
    assert set(record["val_psnr_db"]) == {"recipe", "float", "qat_w8a16"} and record["qat_from"] == "recipe"
    assert record["val_psnr_db"]["qat_w8a16"] > record["val_psnr_db"]["recipe"]
    assert record["weights"] == "qat_w8a16" and chosen is not model and record["qat_best_step"] > 0

    # what QAT trained through: float activations (the same steps through int8 activations
    # move the weights elsewhere), and the ranges it returns are the calibrated ones, untouched
    ranges = calibrate(model, held)
    w16, w16_ranges = qat(model, hr, 5, ranges=ranges, lr=1e-3, activations=False)
    a8, _ = qat(model, hr, 5, ranges=ranges, lr=1e-3)
    assert w16_ranges == ranges
    assert not torch.equal(w16.first.weight, a8.first.weight) and not torch.equal(w16.first.weight, model.first.weight)
    _, untrained = choose_w8a16_weights(model, model, val, None, hr, config=RecipeConfig(qat_steps=0))
    assert "qat_w8a16" not in untrained["val_psnr_db"]
