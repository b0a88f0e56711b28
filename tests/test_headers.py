"""Sizes and shapes from file headers are checked before anything is allocated; nonsensical LUT contracts are refused."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from edgesr.lut_baking.bundle import LutBundle, arrays_digest, load_bundle, save_bundle
from edgesr.lut_baking.importer import read_srlut_npy

from edgesr.core.contract import IOContract
from edgesr.core.errors import EdgesrError


def _npy_with_header(shape, dtype="|i1", payload: bytes = b"\0" * 64) -> bytes:
    """A .npy whose header claims ``shape`` but which carries only ``payload``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def test_npy_header_claiming_2_to_the_40_elements_is_refused_before_allocation(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(_npy_with_header((2**38, 1, 2, 2)))  # 2**40 int8 entries = 1 TiB
    start = time.perf_counter()
    with pytest.raises(EdgesrError, match=r"huge\.npy: \.npy header claims shape \(274877906944, 1, 2, 2\)") as info:
        read_srlut_npy(path, 2)
    assert time.perf_counter() - start < 1.0 and "\n" not in str(info.value)


@pytest.mark.parametrize("content, needle", [
    (b"", "not a .npy array"),
    (b"\x93NUMPY\x09\x00garbage", "not a .npy array"),
    (b"not numpy at all", "not a .npy array"),
])
def test_malformed_npy_gives_one_line(tmp_path, content, needle):
    path = tmp_path / "bad.npy"
    path.write_bytes(content)
    with pytest.raises(EdgesrError, match=needle):
        read_srlut_npy(path, 2)


def test_object_npy_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EdgesrError, match="Python objects"):
        read_srlut_npy(path, 2)


def test_wrong_dtype_is_named_from_the_header(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.zeros((17**4, 1, 2, 2), np.float32))
    with pytest.raises(EdgesrError, match="int8"):
        read_srlut_npy(path, 2)


@pytest.fixture()
def bundle_file(tmp_path):
    rng = np.random.default_rng(0)
    lut = rng.integers(-127, 128, size=(17**4, 4), dtype=np.int8)
    return save_bundle(LutBundle("srlut", 2, 4, [lut], IOContract(2, "rgb", 1, True), 0, "srlut_s"), tmp_path / "ok.lut")


def _rewrite(path, edit) -> None:
    """Rewrite the bundle's metadata with ``edit(meta)``; arrays (and so the checksum) unchanged."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"][()]))
        arrays = {n: z[n] for n in z.files if n != "meta"}
    edit(meta)
    assert meta["sha256"] == arrays_digest([arrays[n] for n in sorted(arrays)])
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("field, value, needle", [
    ("scale", 3, "contract scale 3 is not the bundle's scale 2"),
    ("color", "cmyk", "colou?r 'cmyk'"),
    ("channels", 0, "contract channels 0"),
    ("channels", 3, "channels 3|per_channel True"),
    ("per_channel", "yes", "per_channel 'yes'"),
    ("layout", "NHWC", "layout 'NHWC'"),
    ("value_range", [1.0, 0.0], "value.range"),
    ("value_range", [0.0], "value.range"),
    ("value_range", [0.0, "inf"], "value.range"),
])
def test_valid_checksum_nonsensical_contract_gives_one_line(bundle_file, field, value, needle):
    _rewrite(bundle_file, lambda m: m["contract"].__setitem__(field, value))
    with pytest.raises(EdgesrError, match=needle) as info:
        load_bundle(bundle_file)
    assert str(bundle_file) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m["contract"].__setitem__("bogus", 1), "bad LUT bundle metadata|unknown I/O contract field"),
    (lambda m: m.__setitem__("contract", [1, 2]), "bad LUT bundle metadata|contract must be a JSON object"),
    (lambda m: m.__setitem__("scale", 2.5), "scale must be an integer"),
    (lambda m: m.__setitem__("bits", "4"), "bits must be an integer"),
    (lambda m: m.__setitem__("scale", 10**12), "scale"),
    (lambda m: m.__setitem__("method", ["srlut"]), "unknown LUT method"),
])
def test_crafted_bundle_metadata_gives_one_line(bundle_file, edit, needle):
    _rewrite(bundle_file, edit)
    with pytest.raises(EdgesrError, match=needle):
        load_bundle(bundle_file)


def test_bundle_member_header_claiming_huge_array_is_refused(bundle_file):
    data = bytearray(bundle_file.read_bytes())
    at = bytes(data).index(b"'shape': (83521, 4)")
    data[at: at + len(b"'shape': (83521, 4)")] = b"'shape': (83521, 9)"  # same length, bigger claim
    bundle_file.write_bytes(bytes(data))
    with pytest.raises(EdgesrError, match=r"ok\.lut"):
        load_bundle(bundle_file)
