"""Importing the eSR authors' published files (pnavarre/eSR) and reproducing their PSNR."""

from __future__ import annotations

import pytest
import torch

from edgesr.core.checkpoint import load_checkpoint, read_checkpoint
from edgesr.core.errors import EdgesrError
from edgesr.core.importers import import_esr
from edgesr.core.models import create

PUBLISHED_SET5_X2 = 34.94  # eSR-MAX_s2_K7_C13, the authors' table (../shared/peer_weights/README.md)


@pytest.fixture(scope="module")
def esr_sample(peer_weights):
    path = peer_weights / "esr" / "eSR-MAX_s2_K7_C13.model"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    return path


def test_import_writes_a_deploy_checkpoint_with_the_authors_weights(esr_sample, tmp_path):
    out = import_esr(esr_sample, tmp_path / "esr.pt")
    state = read_checkpoint(out)
    assert state["model"] == "esr_max_s2_k7_c13" and state["scale"] == 2 and state["form"] == "deploy"
    model, _ = load_checkpoint(out)
    authors = torch.load(esr_sample, weights_only=True)
    assert torch.equal(model.filter.weight, authors["filter.weight"])
    assert model.contract.color == "luma_full"


def test_import_reproduces_published_set5_psnr(esr_sample, shared_data, tmp_path):
    from edgesr.core.data import resolve_eval_sets
    from edgesr.core.evaluate import TorchUpscaler, evaluate_sets

    model, _ = load_checkpoint(import_esr(esr_sample, tmp_path / "esr.pt"))
    psnr = evaluate_sets(TorchUpscaler(model), resolve_eval_sets(str(shared_data), ["Set5"]))["Set5"]["psnr_y"]
    assert abs(psnr - PUBLISHED_SET5_X2) < 0.1, f"Set5 x2 {psnr:.3f} dB vs published {PUBLISHED_SET5_X2}"


def test_import_unregistered_configuration_uses_the_generic_factory(tmp_path):
    net = create("esr_cnn", scale=3, channels=4, depth=2, size=5)
    src = tmp_path / "eSR-CNN_s3_C4_D2_S5.model"
    torch.save(net.state_dict(), src)
    state = read_checkpoint(import_esr(src, tmp_path / "c.pt"))
    assert state["model"] == "esr_cnn" and state["kwargs"] == {"channels": 4, "depth": 2, "size": 5}
    model, _ = load_checkpoint(tmp_path / "c.pt")
    x = torch.rand(1, 1, 7, 9)
    assert torch.equal(model(x), net.eval()(x))


def test_import_errors_name_the_file(tmp_path):
    with pytest.raises(EdgesrError, match="no such file"):
        import_esr(tmp_path / "eSR-MAX_s2_K7_C13.model", tmp_path / "o.pt")
    wrong = tmp_path / "eSR-MAX_s2_K5_C13.model"  # id says K5, weights are K7
    torch.save({"filter.weight": torch.zeros(52, 1, 7, 7)}, wrong)
    with pytest.raises(EdgesrError, match=r"eSR-MAX_s2_K5_C13.model: filter.weight has shape"):
        import_esr(wrong, tmp_path / "o.pt")
    keys = tmp_path / "eSR-TM_s2_K3_C2.model"
    torch.save({"conv.weight": torch.zeros(16, 1, 3, 3)}, keys)
    with pytest.raises(EdgesrError, match="keys do not match"):
        import_esr(keys, tmp_path / "o.pt")
    name = tmp_path / "mystery.model"
    torch.save({"filter.weight": torch.zeros(52, 1, 7, 7)}, name)
    with pytest.raises(EdgesrError, match="not an eSR model id"):
        import_esr(name, tmp_path / "o.pt")
    d0 = tmp_path / "eSR-CNN_s2_C8_D0_S9.model"  # the authors' D = 0 variant: not an eSR-CNN here
    torch.save({"filter.0.weight": torch.zeros(9, 0, 3, 3)}, d0)
    with pytest.raises(EdgesrError, match="unsupported eSR configuration"):
        import_esr(d0, tmp_path / "o.pt")
    corrupt = tmp_path / "eSR-MAX_s2_K7_C13.model"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(EdgesrError, match="corrupt or unreadable"):
        import_esr(corrupt, tmp_path / "o.pt")
    assert not (tmp_path / "o.pt").exists()
