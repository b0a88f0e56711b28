"""Calibration patches and observers on real photographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgesr.quantization import calibrate
from edgesr.quantization.calibration import (
    MinMaxObserver,
    MSEObserver,
    PercentileObserver,
    make_observer,
)
from edgesr.quantization.graph import quant_plan, tensor_nodes, trace
from test_quantization_common import one_thread, tiny_deploy  # noqa: F401 (fixture)

from edgesr.core.contract import IOContract
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import calibration_patches, model_input
from edgesr.core.imresize import make_lr

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_deploy()


@pytest.fixture(scope="module")
def patches(model):
    return calibration_patches([embedded_image("chelsea"), ("camera", embedded_image("camera"))], model.contract, 48, 24)


def _activation(model, patches, node="add"):
    """Real activations of one node of the traced model on the patches."""
    got = {}

    class Grab(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            got.setdefault(n.name, out)
            return out

    with torch.no_grad():
        Grab(trace(model)).run(torch.from_numpy(patches))
    return got[node]


def test_patches_are_crops_of_the_model_input(model):
    img = embedded_image("coffee")[50:150, 200:330]  # a 100 x 130 window keeps the search below cheap
    a = calibration_patches([img], model.contract, patch=40, count=10, seed=3)
    b = calibration_patches([img], model.contract, patch=40, count=10, seed=3)
    assert a.shape == (10, 1, 40, 40) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    full = model_input(img, model.contract)[0, 0]
    for crop in a[:3, 0]:  # each crop occurs in the full model input
        hits = np.argwhere(np.all(np.lib.stride_tricks.sliding_window_view(full, (40, 40)) == crop, axis=(2, 3)))
        assert len(hits) >= 1
    lr = calibration_patches([img], model.contract, patch=40, count=3, degrade=True)
    full_lr = model_input(make_lr(img, 2), model.contract)[0, 0]
    assert np.all(np.lib.stride_tricks.sliding_window_view(full_lr, (40, 40)) == lr[0, 0], axis=(2, 3)).any()
    rgb = calibration_patches([img], IOContract(scale=2, color="rgb", channels=3), patch=16, count=2)
    assert rgb.shape == (2, 3, 16, 16)
    with pytest.raises(EdgesrError, match="at least 64x64"):
        calibration_patches([img[:30, :30]], model.contract, patch=64)


def test_ranges_cover_every_int8_tensor_and_contain_zero(model, patches):
    ranges = calibrate(model, patches, "minmax")
    assert set(ranges) == set(tensor_nodes(quant_plan(trace(model))))
    assert "x" in ranges and "blocks_0" not in ranges and "acts_0" in ranges
    x = torch.from_numpy(patches)
    assert ranges["x"] == model.contract.value_range == (0.0, 1.0) and float(x.min()) > 0.0  # the contract's range
    for lo, hi in ranges.values():
        assert lo <= 0.0 <= hi and hi > lo
    act = _activation(model, patches, "add")
    assert ranges["add"] == (min(float(act.min()), 0.0), max(float(act.max()), 0.0))
    assert ranges["pixel_shuffle"] == ranges["clamp"] == ranges["add_1"]


def test_percentile_range_is_inside_minmax(model, patches):
    mm = calibrate(model, patches, "minmax")
    pc = calibrate(model, patches, "percentile", percentile=99.0)
    for name in mm:
        assert mm[name][0] <= pc[name][0] <= 0.0 <= pc[name][1] <= mm[name][1]
    assert any(pc[n][1] < mm[n][1] for n in mm)  # real activations have tails to clip
    wider = calibrate(model, patches, "percentile", percentile=99.99)
    assert all(wider[n][1] >= pc[n][1] and wider[n][0] <= pc[n][0] for n in mm)


def test_mse_range_minimizes_its_error():
    act = _activation(tiny_deploy(), calibration_patches(
        [embedded_image("chelsea")], IOContract(scale=2), 48, 16), "first")
    obs = MSEObserver()
    obs.update(act)
    mm = MinMaxObserver()
    mm.update(act)
    chosen = obs.range()
    err = obs.error(*chosen)
    assert err <= obs.error(*mm.range())
    assert err <= min(obs.error(*r) for r in obs.candidates())
    pc = PercentileObserver(percentile=99.9)
    pc.update(act)
    assert err <= obs.error(*pc.range())
    (lo, hi), (m_lo, m_hi) = chosen, mm.range()
    for f in (0.9, 0.95, 0.99, 1.01, 1.05, 1.1):  # no move of one end inside the observed range does better
        if m_lo <= lo * f:
            assert err <= obs.error(lo * f, hi)
        if hi * f <= m_hi:
            assert err <= obs.error(lo, hi * f)


def test_observer_selection_errors():
    with pytest.raises(EdgesrError, match="unknown observer"):
        make_observer("kl")
    with pytest.raises(EdgesrError, match="percentile"):
        make_observer("percentile", percentile=30)
    with pytest.raises(EdgesrError, match="observer 'minmax'"):
        make_observer("minmax", percentile=99.0)
    with pytest.raises(EdgesrError, match="no values"):
        MinMaxObserver().range()


def test_input_takes_the_contracts_range_and_the_output_clamp_sets_its_groups(model, patches):
    """The input range is the contract's [0, 1] (scale 1/255: every 8-bit level representable),
    not the calibration maximum; a group of tensors that ends in the output clamp gets the
    clamp's range; tensors with other consumers keep their observed ranges."""
    from edgesr.quantization.graph import clip_limits

    from edgesr.core.models import create

    ranges = calibrate(model, patches)
    assert ranges["x"] == (0.0, 1.0)
    assert calibrate(model, patches * 0.5)["x"] == (0.0, 1.0)  # dark calibration photos: still [0, 1]
    torch.manual_seed(0)
    esr = create("esr_max", scale=2).eval()
    with torch.no_grad():
        esr.filter.weight.mul_(4.0)  # conv outputs far outside [0, 1], as in the authors' trained eSR-MAX
    gm = trace(esr)
    plan = quant_plan(gm)
    (source, limits), = clip_limits(gm, plan).items()  # conv -> depth-to-space -> max -> clamp
    assert limits == (0.0, 1.0) and plan["amax"].source == source and plan["clamp"].source == source
    esr_patches = calibration_patches([embedded_image("camera")], esr.contract, 32, 8)
    with torch.no_grad():
        conv = esr.filter(torch.from_numpy(esr_patches))
    assert float(conv.min()) < -0.4 and float(conv.max()) > 1.5
    r = calibrate(esr, esr_patches)
    assert r[source] == r["clamp"] == (0.0, 1.0)
    # SESR: the last add feeds depth-to-space and the clamp only, so it narrows; the inner
    # tensors feed convs and keep their observed ranges
    gm = trace(model)
    assert clip_limits(gm, quant_plan(gm)) == {"add_1": (0.0, 1.0)}
    assert ranges["add_1"] == ranges["clamp"] == (0.0, 1.0)
    # exactly the clamp's range even when no calibration output comes near its top: the int8
    # grid (scale 1/255, zero point -128) is then the 8-bit grid the output is shown on
    dark = calibrate(model, patches * 0.3)
    with torch.no_grad():
        assert float(model(torch.as_tensor(patches) * 0.3).max()) < 0.9
    assert dark["add_1"] == dark["clamp"] == (0.0, 1.0)
    act = _activation(model, patches, "add")
    assert ranges["add"] == (min(float(act.min()), 0.0), max(float(act.max()), 0.0))  # observed, not narrowed
