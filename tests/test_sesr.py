"""SESR: collapse equivalence, parameter and MAC counts for every registered configuration."""

from __future__ import annotations

import pytest
import torch

from edgesr.core.complexity import count_params, macs_per_frame_720p, model_info
from edgesr.core.evaluate import model_input
from edgesr.core.models import create, list_models

SESR_NAMES = [e.name for e in list_models() if e.family == "sesr"]
CONFIGS = {"m3": (16, 3), "m5": (16, 5), "m7": (16, 7), "m11": (16, 11), "xl": (32, 11)}


def _config(name: str) -> tuple[int, int]:
    return CONFIGS[name.split("_")[1]]


@pytest.mark.parametrize("name", SESR_NAMES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_collapse_matches_expanded_form_on_a_photo(name, scale, photo):
    torch.manual_seed(0)
    model = create(name, scale=scale, training_form="expanded").eval()
    with torch.no_grad():  # non-trivial PReLU slopes, so the activation matters
        for act in model.acts:
            if hasattr(act, "weight"):
                act.weight.uniform_(-0.5, 0.5)
    x = torch.from_numpy(model_input(photo[60:123, 90:161], model.contract))  # odd size
    deploy = model.collapse()
    with torch.no_grad():
        ref, out = model(x), deploy(x)
    inside = ((ref > 0) & (ref < 1)).float().mean()
    assert inside > 0.5, "test image saturates: the comparison would be vacuous"
    assert out.shape == (1, 1, 63 * scale, 71 * scale)
    assert float((ref.clamp(0, 1) - out).abs().max()) < 1e-5
    assert deploy is not model and isinstance(deploy, torch.nn.Module)


@pytest.mark.parametrize("name", SESR_NAMES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_parameter_and_mac_counts(name, scale):
    f, m = _config(name)
    model = create(name, scale=scale)
    prelu = "relu" not in name
    weights = 25 * f + m * 9 * f * f + 25 * f * scale * scale
    biases = f + m * f + scale * scale
    slopes = m * f if prelu else 0
    info = model_info(model)
    assert info["params_deploy"] == weights + biases + slopes
    p = 256
    expected_train = (25 * p + p + p * f + f) + m * (9 * f * p + p + p * f + f) + (25 * f * p + p + p * scale * scale + scale * scale) + slopes
    assert info["params"] == expected_train
    lr_h, lr_w = -(-720 // scale), -(-1280 // scale)
    assert info["macs_per_frame_720p"] == weights * lr_h * lr_w


def test_m5_x2_against_the_paper():
    # Paper (Bhardwaj et al. 2022, Table 2): SESR-M5 x2 13.52K parameters, 3.11 GMACs at 720p.
    # The paper counts conv weights only; edgesr keeps the biases (100) and PReLU slopes (80).
    deploy = create("sesr_m5", scale=2).collapse()
    weights = sum(m.weight.numel() for m in deploy.modules() if isinstance(m, torch.nn.Conv2d))
    assert weights == 13520
    assert count_params(deploy) == 13520 + 100 + 80
    assert round(macs_per_frame_720p(deploy) / 1e9, 2) == 3.12  # 3.115e9: the paper truncates to 3.11
    assert macs_per_frame_720p(deploy) == 13520 * 360 * 640


def test_collapsed_forward_training_form_equals_expanded():
    torch.manual_seed(1)
    model = create("sesr_m3", scale=2).train()
    x = torch.rand(2, 1, 20, 24)
    y_c = model(x)
    g_c = torch.autograd.grad(y_c.square().sum(), model.first.expand.weight)[0]
    model.training_form = "expanded"
    y_e = model(x)
    g_e = torch.autograd.grad(y_e.square().sum(), model.first.expand.weight)[0]
    assert float((y_c - y_e).abs().max()) < 1e-5
    assert float((g_c - g_e).abs().max() / g_e.abs().max()) < 1e-4


def test_relu_variant_is_selectable_by_name():
    model = create("sesr_m5_relu", scale=2)
    assert all(isinstance(a, torch.nn.ReLU) for a in model.acts)
    assert all(isinstance(a, torch.nn.ReLU) for a in model.collapse().acts)
    assert create("SESR-M5", scale=4).scale == 4  # alias of the factory
