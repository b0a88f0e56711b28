"""Checkpoints: SHA-256 over the state, refused when altered; crafted or broken files give one line."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from edgesr.core.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, state_digest
from edgesr.core.errors import EdgesrError
from edgesr.core.models import create


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", create("sesr_m3", scale=2, expansion=16), step=7)


def _resave(state: dict, path: Path, rehash: bool = True) -> Path:
    if rehash:
        state["sha256"] = state_digest(state)
    torch.save(state, path)
    return path


def test_every_checkpoint_carries_a_digest_of_its_state(ckpt):
    state = torch.load(ckpt, weights_only=True)
    assert len(state["sha256"]) == 64 and state["sha256"] == state_digest(state)
    model, loaded = load_checkpoint(ckpt)
    assert loaded["step"] == 7 and model.scale == 2


def test_altered_tensor_bytes_are_refused(ckpt, tmp_path):
    """One float changed inside the zip (torch does not check the CRCs): refused, naming the file."""
    data = bytearray(ckpt.read_bytes())
    state = torch.load(ckpt, weights_only=True)
    weight = state["state_dict"]["first.expand.weight"]
    needle = weight.reshape(-1)[:4].numpy().tobytes()
    at = bytes(data).index(needle)
    data[at] ^= 0x40
    bad = tmp_path / "altered.pt"
    bad.write_bytes(bytes(data))
    assert not torch.equal(torch.load(bad, weights_only=True)["state_dict"]["first.expand.weight"], weight)
    with pytest.raises(EdgesrError, match=r"altered\.pt: checkpoint checksum mismatch"):
        load_checkpoint(bad)


def test_altered_metadata_is_refused(ckpt, tmp_path):
    state = torch.load(ckpt, weights_only=True)
    state["step"] = 8
    with pytest.raises(EdgesrError, match="checksum mismatch"):
        read_checkpoint(_resave(state, tmp_path / "meta.pt", rehash=False))


def test_old_checkpoint_without_digest_loads_with_a_warning(ckpt, tmp_path):
    state = torch.load(ckpt, weights_only=True)
    del state["sha256"]
    old = _resave(state, tmp_path / "old.pt", rehash=False)
    with pytest.warns(UserWarning, match="no SHA-256"):
        model, _ = load_checkpoint(old)
    ref, _ = load_checkpoint(ckpt)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))


@pytest.mark.parametrize("field, value, needle", [
    ("kwargs", {"expansion": -5}, "cannot build"),
    ("kwargs", {"expansion": 10**12}, "do not fit"),      # absurd width: checked on the meta device, no allocation
    ("kwargs", {"expansion": [1, {"a": 2}]}, "not plain values"),
    ("kwargs", {"no_such_option": 1}, "cannot build"),
    ("scale", 2.5, "scale 2.5"),
    ("scale", -2, "scale -2"),
    ("scale", 10**9, "scale"),
    ("scale", True, "scale True"),
    ("model", "sesr_m99", "unknown model"),
    ("model", 3, "not a string"),
    ("form", "fused", "form 'fused'"),
    ("state_dict", [1, 2], "state_dict"),
])
def test_crafted_metadata_gives_one_line(ckpt, tmp_path, field, value, needle):
    state = torch.load(ckpt, weights_only=True)
    state[field] = value
    path = _resave(state, tmp_path / "crafted.pt")  # a valid checksum: the metadata itself is checked
    with pytest.raises(EdgesrError, match=needle) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content, needle", [
    (b"", "empty checkpoint"),
    (b"PK\x03\x04 not really a zip", "corrupt or unreadable"),
    (b"\x80\x02}q\x00.", "corrupt or unreadable"),  # a bare pickle, refused by weights_only
])
def test_broken_files_give_one_line(tmp_path, content, needle):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(EdgesrError, match=needle):
        read_checkpoint(path)


def test_every_truncation_gives_one_line(ckpt, tmp_path):
    data = ckpt.read_bytes()
    path = tmp_path / "cut.pt"
    for cut in (1, 10, 100, len(data) // 3, len(data) // 2, len(data) - 10, len(data) - 1):
        path.write_bytes(data[:cut])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(EdgesrError, match="cut.pt"):
                load_checkpoint(path)
