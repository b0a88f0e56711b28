"""The model zoo (eSR, SplitSR, PKN): parameter counts, shapes, clipping, collapse, export-friendliness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from edgesr.core.data import to_luma
from edgesr.core.errors import EdgesrError
from edgesr.core.models import create, list_models

ZOO_FAMILIES = ("esr", "splitsr", "pkn")
ZOO = [e for e in list_models() if e.family in ZOO_FAMILIES]


def crop(img: np.ndarray, h: int, w: int, y: int = 0, x: int = 0) -> np.ndarray:
    return np.ascontiguousarray(img[y : y + h, x : x + w])


def _trainable(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def _photo_tensor(photo: np.ndarray, h: int, w: int, y: int = 40, x: int = 60) -> torch.Tensor:
    return torch.from_numpy(to_luma(crop(photo, h, w, y, x)))[None, None]


def _conv(cin, cout, k, bias=True):
    return cout * cin * k * k + (cout if bias else 0)


def _splitsr_params(s, c, groups, blocks, hybrid, alpha=0.25):
    a = int(round(c * alpha))
    split_block = _conv(a, a, 3, bias=False) + 2 * a  # conv + BN affine
    res_block = 2 * (_conv(c, c, 3, bias=False) + 2 * c)
    group_conv = _conv(c, c, 3)
    total = _conv(1, c, 3) + _conv(c, c, 3) + _conv(c, s * s, 3)
    for g in range(groups):
        total += blocks * (split_block if g < hybrid else res_block) + group_conv
    return total


# Expected trainable parameters, from the papers' formulas (not from the code).
EXPECTED = {
    "eSR-MAX_s2_K7_C13": 2548, "eSR-TM_s2_K7_C16": 6272, "eSR-TR_s2_K7_C13": 7644, "eSR-CNN_s2_C8_D3_S9": 5514,
}
for s in (3, 4):
    EXPECTED[f"eSR-MAX_s{s}_K7_C13"] = s * s * 13 * 49
    EXPECTED[f"eSR-TM_s{s}_K7_C16"] = 2 * s * s * 16 * 49
    EXPECTED[f"eSR-TR_s{s}_K7_C13"] = 3 * s * s * 13 * 49
    EXPECTED[f"eSR-CNN_s{s}_C8_D3_S9"] = _conv(1, 3, 5) + _conv(3, 9, 3) + _conv(9, 2 * s * s * 8, 3, bias=False)


@pytest.mark.parametrize("alias,params", sorted(EXPECTED.items()))
def test_esr_published_parameter_counts(alias, params):
    scale = int(alias.split("_")[1][1:])
    assert _trainable(create(alias, scale=scale)) == params


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_splitsr_and_pkn_parameter_counts(scale):
    assert _trainable(create("splitsr", scale=scale)) == _splitsr_params(scale, 64, 6, 6, 3)
    assert _trainable(create("splitsr_s", scale=scale)) == _splitsr_params(scale, 32, 2, 4, 1)
    cnn = _conv(1, 16, 3) + 2 * _conv(16, 16, 3) + _conv(16, 4, 3)
    assert _trainable(create("pkn", scale=scale)) == cnn
    assert _trainable(create("pkn_fixed", scale=scale)) == 4


def test_esr_alias_refuses_another_scale():
    with pytest.raises(EdgesrError, match="does not support scale 4"):
        create("eSR-MAX_s2_K7_C13", scale=4)


def _deploy(entry_name: str, scale: int) -> nn.Module:
    m = create(entry_name, scale=scale)
    return (m.collapse() if hasattr(m, "collapse") else m).eval()


@pytest.mark.parametrize("entry", ZOO, ids=lambda e: e.name)
def test_forward_shape_odd_sizes_and_deploy_clip(entry, photo):
    torch.manual_seed(0)
    for scale in entry.scales:
        net = _deploy(entry.name, scale)
        x = _photo_tensor(photo, 13, 17)
        assert net.contract.scale == scale and net.contract.channels == 1
        with torch.no_grad():
            y = net(x)
            loud = net(x * 3.0 - 1.0)  # far outside the training range: unclipped outputs would leave [0, 1]
        assert y.shape == (1, 1, 13 * scale, 17 * scale) and y.dtype == torch.float32
        assert float(loud.min()) >= 0.0 and float(loud.max()) <= 1.0


def test_contracts():
    assert create("eSR-TR_s2_K7_C13", scale=2).contract.color == "luma_full"
    assert create("splitsr_s", scale=3).contract.color == "y"
    assert create("pkn", scale=4).contract.color == "y"


# --------------------------------------------------------------------------- eSR


def test_esr_matches_per_subpixel_reference(photo):
    """Channel c*s*s + i*s + j of the conv is sub-pixel (i, j) of group channel c (the authors' order)."""
    torch.manual_seed(1)
    x = _photo_tensor(photo, 11, 14)
    for name, s in [("esr_max", 3), ("esr_tm", 2), ("esr_tr", 2), ("esr_cnn", 3)]:
        net = create(name, scale=s).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(0.3)
            conv = net.filter(x)
            y = net(x)
        c = net.channels
        ref = torch.zeros_like(y)
        for i in range(s):
            for j in range(s):
                parts = [conv[:, [g * c * s * s + ch * s * s + i * s + j for ch in range(c)]] for g in range(conv.shape[1] // (c * s * s))]
                if name == "esr_max":
                    v = parts[0].max(dim=1, keepdim=True).values
                elif name == "esr_tr":
                    v = (parts[0] * torch.softmax(parts[1] * parts[2], 1)).sum(1, keepdim=True)
                elif name == "esr_cnn":
                    v = (parts[0] * torch.softmax(parts[1] ** 2, 1)).sum(1, keepdim=True)
                else:
                    v = (parts[0] * torch.softmax(parts[1], 1)).sum(1, keepdim=True)
                ref[:, :, i::s, j::s] = v.clamp(0, 1)
        assert torch.allclose(y, ref, atol=1e-6), name


# ------------------------------------------------------------------------ SplitSR


def _nontrivial_bn(model: nn.Module, photo: np.ndarray) -> None:
    """Give every BN real running statistics (forward passes on photo crops) and a random affine."""
    gen = torch.Generator().manual_seed(3)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = None  # cumulative average
            with torch.no_grad():
                mod.weight.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
                mod.bias.copy_(torch.rand(mod.num_features, generator=gen) * 0.4 - 0.2)
    model.train()
    with torch.no_grad():
        for y, x in [(0, 0), (100, 150), (200, 300)]:
            model(_photo_tensor(photo, 24, 24, y, x))
    model.eval()


@pytest.mark.parametrize("name,scale,damp", [("splitsr_s", 3, 1.0), ("splitsr", 2, 0.3)])
def test_splitsr_collapse_equivalence(name, scale, damp, photo):
    """float32, eval mode, real BN statistics. ``damp`` scales the paper network's conv
    weights: at PyTorch's default init its 36 residual blocks grow activations into the
    thousands (outputs of +-700), where float32 rounding of any refolding exceeds 1e-5;
    a trained network stays near [0, 1]. The exact algebra is checked in float64 below."""
    torch.manual_seed(0)
    model = create(name, scale=scale)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(damp)
    _nontrivial_bn(model, photo)
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(float(m.running_var.sub(1).abs().max()) > 1e-3 for m in bn)  # statistics are not the defaults
    deploy = model.collapse()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deploy.modules())
    assert not hasattr(deploy, "collapse")
    x = _photo_tensor(photo, 19, 23, 120, 200)
    with torch.no_grad():
        raw = model(x)
        ref = torch.clamp(raw, 0, 1)
        out = deploy(x)
    assert float(((raw > 0) & (raw < 1)).float().mean()) > 0.2  # not a trivially clipped output
    err = float((ref - out).abs().max())
    assert err < 1e-5, f"max abs error {err:.3g}"
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_splitsr_collapse_is_exact_in_float64(photo):
    torch.manual_seed(0)
    model = create("splitsr", scale=4)
    _nontrivial_bn(model, photo)
    model.double()
    deploy = model.collapse()
    x = _photo_tensor(photo, 11, 13).double()
    with torch.no_grad():
        raw = model(x)
        err = float((torch.clamp(raw, 0, 1) - deploy(x)).abs().max())
    assert float(raw.abs().max()) > 1.0 and err < 1e-9 * float(raw.abs().max()), err


def test_splitsr_every_block_has_its_own_weights():
    model = create("splitsr", scale=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len({id(m) for m in convs}) == len(convs)
    assert len({m.weight.data_ptr() for m in convs}) == len(convs)
    # 3 split groups x 6 blocks x 1 conv + 3 standard groups x 6 blocks x 2 convs + 6 group convs + head, body end, upsample
    assert len(convs) == 18 + 36 + 6 + 3
    same_shape = [m.weight for m in convs if m.weight.shape == (16, 16, 3, 3)]
    assert len(same_shape) == 18
    assert all(not torch.equal(a, b) for i, a in enumerate(same_shape) for b in same_shape[i + 1:])


def test_splitsr_rotates_processed_channels_to_the_end():
    from edgesr.core.models.splitsr import SplitBlock

    block = SplitBlock(8, 2, bn=False).eval()
    x = torch.rand(1, 8, 5, 6)
    with torch.no_grad():
        y = block(x)
        processed = torch.relu(block.conv(x[:, :2]) + x[:, :2])  # residual on the active channels
    assert torch.equal(y[:, :6], x[:, 2:])  # passive channels move to the front untouched
    assert torch.allclose(y[:, 6:], processed)


@pytest.mark.parametrize("config", [
    dict(channels=32, groups=2, blocks=4, hybrid_index=1, alpha=0.25),   # SplitSR-S: one full rotation
    dict(channels=64, groups=6, blocks=6, hybrid_index=3, alpha=0.25),   # the paper: 1.5 rotations
    dict(channels=16, groups=1, blocks=2, hybrid_index=1, alpha=0.25),   # fewer blocks than chunks
    dict(channels=32, groups=2, blocks=3, hybrid_index=2, alpha=0.3),    # chunks would not tile C
])
def test_splitsr_chunked_groups_equal_the_concatenating_blocks(config, photo):
    """A split group runs on a list of chunks (no concatenation per block); it must be the
    function of the blocks' own ``forward`` (slice, process, concatenate) to the bit."""
    from edgesr.core.models.splitsr import SplitSR

    torch.manual_seed(0)
    model = SplitSR(2, **config).eval()
    x = _photo_tensor(photo, 20, 24)
    with torch.no_grad():
        got = model(x)
        h = x0 = model.head(x)
        for group in model.groups:
            h = group.conv(group.blocks(h)) + h  # nn.Sequential of the blocks' forward
        want = F.pixel_shuffle(model.upsample(model.body_end(h) + x0), 2)
    assert torch.equal(got, want)


# ----------------------------------------------------------------------------- PKN

ALLOWED_PKN_OPS = {"add", "sub", "mul", "getitem", "cat", "clamp", "exp", "softmax", "channel_dot", "pixel_shuffle"}


@pytest.mark.parametrize("name", ["pkn", "pkn_fixed"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pkn_exports_with_standard_ops_only(name, scale, photo):
    net = create(name, scale=scale).eval()
    gm = torch.fx.symbolic_trace(net)
    x = _photo_tensor(photo, 9, 12)
    ShapeProp(gm).propagate(x)
    ops = set()
    for node in gm.graph.nodes:
        if node.op in ("call_function", "call_method"):
            ops.add(getattr(node.target, "__name__", str(node.target)))
        if node.op == "call_module":
            assert isinstance(gm.get_submodule(node.target), (nn.Conv2d, nn.ReLU)), node.target
        meta = node.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape"):
            assert len(meta.shape) <= 4, (node.name, meta.shape)
    assert ops <= ALLOWED_PKN_OPS, ops - ALLOWED_PKN_OPS
    assert not ops & {"gather", "index_select", "grid_sample", "take", "take_along_dim"}


@pytest.mark.parametrize("scale", [2, 3])
def test_pkn_kernel_weights_sum_to_one_and_constants_are_kept(scale, photo):
    torch.manual_seed(0)
    net = create("pkn", scale=scale).eval()
    with torch.no_grad():
        for p in net.net.parameters():  # a non-trivial parameter field
            p.add_(torch.randn_like(p) * 0.3)
        x = _photo_tensor(photo, 15, 18)
        p = net.kernel_parameters(x)
        weights = net.kernel_weights(p)
        assert len(weights) == scale * scale
        for w in weights:
            assert w.shape == (1, 25, 15, 18) and float(w.min()) >= 0
            assert torch.allclose(w.sum(dim=1), torch.ones(1, 15, 18), atol=1e-6)
        assert float(p[:, 3].abs().max()) > 0.01  # the detail gain is active, and still:
        flat = torch.full((1, 1, 10, 13), 0.4)
        assert torch.allclose(net(flat), torch.full((1, 1, 10 * scale, 13 * scale), 0.4), atol=1e-6)


def test_pkn_kernel_geometry():
    import math

    from edgesr.core.models.pkn import kernel_geometry

    # Q = diag(1/sx^2, 1/sy^2): L = diag(1/sx, 1/sy); sx = 2 (major, along x), sy = 0.5.
    p = torch.tensor([[math.log(0.5), 0.0, math.log(2.0), 0.3]])
    g = kernel_geometry(p)
    assert torch.allclose(g["sigma_major"], torch.tensor([2.0])) and torch.allclose(g["sigma_minor"], torch.tensor([0.5]))
    assert abs(float(g["theta"])) < 1e-6 and float(g["gain"]) == pytest.approx(0.3)
    # the same kernel's major axis along y
    g = kernel_geometry(torch.tensor([[math.log(2.0), 0.0, math.log(0.5), 0.0]]))
    assert float(g["theta"].abs()) == pytest.approx(math.pi / 2, abs=1e-6)


def test_pkn_extra_macs_declared_and_counted():
    from edgesr.core.complexity import macs_per_lr_pixel

    net = create("pkn", scale=2)
    assert net.extra_macs_per_lr_pixel() == 4 * (25 * 10 + 2) + 50
    cnn = 9 * 16 + 2 * 9 * 16 * 16 + 9 * 16 * 4
    gather = 2 * 25 * 25  # footprint of the image and of its validity mask
    assert macs_per_lr_pixel(net) == pytest.approx(cnn + gather + 25 * 4 + net.extra_macs_per_lr_pixel())


def test_pkn_fixed_weights_are_not_trained():
    net = create("pkn_fixed", scale=2)
    names = {n for n, p in net.named_parameters() if p.requires_grad}
    assert names == {"params"}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pkn_fixed_collapses_to_convolutions(scale, photo):
    """The non-adaptive PKN is linear: its deploy form is one kernel conv plus the border term,
    the same function to float32 rounding, with the same receptive field, and no PKN ops left."""
    net = create("pkn_fixed", scale=scale).eval()
    with torch.no_grad():  # away from the initial kernel: anisotropic, a nonzero gain
        net.params.add_(torch.tensor([0.3, 0.2, -0.1, 0.4]).view(1, 4, 1, 1))
    deploy = net.collapse().eval()
    assert not hasattr(deploy, "collapse")
    assert deploy.receptive_field == net.receptive_field
    x = _photo_tensor(photo, 37, 53)
    with torch.no_grad():
        np.testing.assert_allclose(deploy(x).numpy(), net(x).numpy(), rtol=0, atol=2e-6)
    gm = torch.fx.symbolic_trace(deploy)
    calls = {getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes if n.op in ("call_function", "call_method")}
    assert calls <= {"add", "mul", "pixel_shuffle", "clamp"}, calls


@pytest.mark.parametrize("name", ["esr_tm", "esr_tr", "esr_cnn"])
@pytest.mark.parametrize("scale", [2, 3])
def test_esr_attention_collapses_to_one_conv_per_group(name, scale, photo):
    """eSR-TM/TR/CNN's deploy form splits the head conv by channel group: the same function, and
    every group (value, query, key) an int8 tensor with its own parameters."""
    from edgesr.quantization.graph import QUANTIZE, quant_plan, trace

    net = create(name, scale=scale).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5).add_(0.05 * torch.randn_like(p))
    deploy = net.collapse().eval()
    assert not hasattr(deploy, "collapse") and deploy.receptive_field == net.receptive_field
    assert sum(p.numel() for p in deploy.parameters()) == sum(p.numel() for p in net.parameters())
    x = _photo_tensor(photo, 29, 41)
    with torch.no_grad():
        np.testing.assert_allclose(deploy(x).numpy(), net(x).numpy(), rtol=0, atol=1e-6)
    plan = quant_plan(trace(deploy))
    groups = ["value", "query", "key"] if name == "esr_tr" else ["value", "key"]
    assert all(plan[g].kind == QUANTIZE for g in groups), {g: plan[g] for g in groups}


def test_esr_split_head_lowers_the_int8_error(photo):
    """With trained-like logits (keys about 10x the values, as after training on T91), one head
    conv gives the values the keys' int8 step; the split deploy form gives each its own, and its
    int8 simulation is closer to the float model on a real photo."""
    from edgesr.core.evaluate import calibration_patches
    from edgesr.quantization import calibrate, fake_quant_module

    net = create("esr_tm", scale=2).eval()
    n = 4 * net.channels
    with torch.no_grad():
        net.filter.weight[n:] *= 10.0  # the key half of the head conv
    deploy = net.collapse().eval()
    patches = torch.from_numpy(calibration_patches([photo], net.contract, 32, 16))
    x = torch.from_numpy(calibration_patches([photo], net.contract, 64, 8, seed=5))
    errors = {}
    for form, module in (("one conv", net), ("split", deploy)):
        sim = fake_quant_module(module, calibrate(module, patches)).eval()
        with torch.no_grad():
            errors[form] = float((sim(x) - deploy(x)).pow(2).mean())
    assert errors["split"] < 0.7 * errors["one conv"], errors  # measured: 0.55x


def test_esr_deploy_checkpoint_of_the_single_conv_form_still_loads(tmp_path, photo):
    """Before the split, an eSR-TM checkpoint was saved as form 'deploy' with the head conv's
    weights: it loads, and its deploy form is the split one with the same outputs."""
    from edgesr.core.checkpoint import load_checkpoint, save_checkpoint
    from edgesr.core.models.esr import ESRDeploy

    net = create("esr_tm", scale=2).eval()
    path = save_checkpoint(tmp_path / "old.pt", net, form="deploy")
    loaded, _ = load_checkpoint(path, deploy=True)
    assert isinstance(loaded, ESRDeploy)
    x = _photo_tensor(photo, 20, 24)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), net(x).numpy(), rtol=0, atol=1e-6)



@pytest.mark.parametrize("entry", [e for e in list_models() if e.name != "bicubic"], ids=lambda e: e.name)
def test_deploy_form_keeps_its_registry_identity(entry, tmp_path):
    """Every registry model's deploy form (``collapse()`` where it has one) still names its model
    and settings, so ``edgesr quantize`` can save it as a checkpoint and load it back as the same
    model (pkn_fixed's did not: its quantized checkpoint could not be written)."""
    from edgesr.core.checkpoint import load_checkpoint, save_checkpoint

    scale = min(entry.scales)
    model = create(entry.name, scale=scale).eval()
    deploy = model.collapse() if hasattr(model, "collapse") else model
    assert deploy.registry_name == entry.name and deploy.registry_kwargs == model.registry_kwargs
    path = save_checkpoint(tmp_path / "deploy.pt", deploy, form="deploy")
    loaded, _ = load_checkpoint(path, deploy=True)
    assert type(loaded) is type(deploy) and loaded.registry_name == entry.name
