"""The .lut bundle: round trip, checksum, corrupted/truncated files, artifact dispatch, Upscaler."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import crop
from edgesr.lut_baking.bundle import LutBundle, load_bundle, save_bundle

from edgesr.app.artifacts import open_artifact
from edgesr.core.contract import IOContract
from edgesr.core.errors import EdgesrError


@pytest.fixture()
def bundle() -> LutBundle:
    rng = np.random.default_rng(0)
    lut = rng.integers(-128, 128, size=(17**4, 4), dtype=np.int8)
    return LutBundle("srlut", 2, 4, [lut], IOContract(2, "rgb", 1, True), 0, "srlut_s", {"note": "test"})


def test_round_trip(tmp_path, bundle):
    path = save_bundle(bundle, tmp_path / "a.lut")
    back = load_bundle(path)
    assert (back.method, back.scale, back.bits, back.variant, back.model) == ("srlut", 2, 4, 0, "srlut_s")
    assert back.contract == bundle.contract
    np.testing.assert_array_equal(back.arrays[0], bundle.arrays[0])
    assert back.nbytes == 17**4 * 4
    with np.load(path, allow_pickle=False) as z:  # a plain npz, no pickle needed
        assert set(z.files) == {"meta", "lut_000"}


def test_truncated_bundle_is_a_clear_error(tmp_path, bundle):
    path = save_bundle(bundle, tmp_path / "a.lut")
    data = path.read_bytes()
    for cut in (len(data) // 2, 100, 0):
        bad = tmp_path / f"cut{cut}.lut"
        bad.write_bytes(data[:cut])
        with pytest.raises(EdgesrError, match=f"cut{cut}.lut: corrupt or truncated") as info:
            load_bundle(bad)
        assert "\n" not in str(info.value)


def test_flipped_byte_fails_the_checksum(tmp_path, bundle):
    path = save_bundle(bundle, tmp_path / "a.lut")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the LUT array (zip members are stored, not compressed)
    path.write_bytes(bytes(data))
    with pytest.raises(EdgesrError, match="a.lut: (LUT checksum mismatch|corrupt or truncated)"):
        load_bundle(path)


def test_wrong_shapes_and_missing_file(tmp_path, bundle):
    bundle.arrays = [bundle.arrays[0][:, :1]]
    with pytest.raises(EdgesrError, match="expects LUT shapes"):
        save_bundle(bundle, tmp_path / "b.lut")
    with pytest.raises(EdgesrError, match="no such LUT bundle"):
        load_bundle(tmp_path / "missing.lut")
    not_npz = tmp_path / "text.lut"
    not_npz.write_text("hello")
    with pytest.raises(EdgesrError, match="text.lut"):
        load_bundle(not_npz)


def test_artifact_dispatch_and_upscaler_contract(tmp_path, bundle, photo):
    path = save_bundle(bundle, tmp_path / "a.lut")
    lr = np.stack([crop(photo[..., c], 9, 14, 30, 40) for c in range(3)])[:, None].astype(np.float32) / 255.0
    outs = {}
    for engine in ("numpy", "torch", "c"):
        up = open_artifact(path, engine=engine)
        assert up.contract == IOContract(2, "rgb", 1, True)
        outs[engine] = up(lr)
        assert outs[engine].shape == (3, 1, 18, 28) and outs[engine].dtype == np.float32
    np.testing.assert_array_equal(outs["numpy"], outs["torch"])
    np.testing.assert_array_equal(outs["numpy"], outs["c"])
    with pytest.raises(EdgesrError, match="unknown LUT engine"):
        open_artifact(path, engine="opencl")


def test_checksum_catches_an_edited_array(tmp_path, bundle):
    path = save_bundle(bundle, tmp_path / "a.lut")
    with np.load(path, allow_pickle=False) as z:
        meta, lut = z["meta"], z["lut_000"].copy()
    lut[123, 1] ^= 0x10  # a valid zip whose LUT no longer matches its recorded SHA-256
    np.savez(tmp_path / "edited.npz", meta=meta, lut_000=lut)
    (tmp_path / "edited.npz").rename(tmp_path / "edited.lut")
    with pytest.raises(EdgesrError, match="edited.lut: LUT checksum mismatch"):
        load_bundle(tmp_path / "edited.lut")
