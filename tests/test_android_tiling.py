"""The Android app's tiler (``TilePlan.java``, plain Java) on the host JVM, against edgesr's.

The app upscales a photo tile by tile as ``edgesr upscale`` does (``edgesr.core.tiling``): the
same tiles, the same windows (tile + a halo of the model's receptive field, one shape for every
window), the same stitching. Checked here:

* the plan (windows' shape, every tile and its window's corner) equals
  :func:`edgesr.core.tiling.tile_plan` for many photo sizes, tile sizes and receptive fields,
  including every receptive field the zoo declares;
* stitching: the windows of a real photo upscaled by a real network in Python (recorded
  outputs), stitched by the Java tiler, equal the whole photo upscaled in one piece;
* the app's whole LUT path tile by tile (JNI engine, colour pipeline, ``TilePlan.upscale``)
  equals the same path on the whole photo, and Python's ``upscale_photo``.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from test_android_jni import Host, _diff

from edgesr.core.contract import IOContract
from edgesr.core.data import embedded_image
from edgesr.core.evaluate import TorchUpscaler, upscale_photo
from edgesr.core.models import create, list_models
from edgesr.core.tiling import MIN_TILE, halo_of, tile_plan
from edgesr.lut_baking.bundle import LutBundle, LutUpscaler


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Host:
    return Host(tmp_path_factory.mktemp("android_tiling"))


def _java_plans(host: Host, tmp, cases):
    (tmp / "plans.txt").write_text("".join(f"{h} {w} {t} {rf}\n" for h, w, t, rf in cases))
    host.java("plans", tmp / "plans.txt", tmp / "out.txt")
    lines = (tmp / "out.txt").read_text().splitlines()
    plans, i = [], 0
    while i < len(lines):
        if lines[i].startswith("error "):
            plans.append(lines[i])
            i += 1
            continue
        win_h, win_w, n = map(int, lines[i].split())
        plans.append(((win_h, win_w), [tuple(map(int, ln.split())) for ln in lines[i + 1 : i + 1 + n]]))
        i += 1 + n
    return plans


def _zoo_receptive_fields() -> list[int]:
    fields = set()
    for entry in list_models():
        for scale in entry.scales:
            with torch.device("meta"):
                fields.add(int(create(entry.name, scale=scale).receptive_field))
    return sorted(fields)


def test_tile_plan_equals_pythons(host, tmp_path):
    rng = np.random.default_rng(0)
    fields = _zoo_receptive_fields() + [1, 2, 3, 4, 5, 6, 41]
    cases = [(300, 451, 256, 13), (3000, 4000, 256, 15), (1, 1, 16, 3), (7, 5000, 16, 13), (5000, 9, 64, 27),
             (144, 144, 128, 17), (145, 143, 16, 100), (512, 512, 256, 5)]
    for _ in range(120):
        cases.append((int(rng.integers(1, 1200)), int(rng.integers(1, 1200)), int(rng.integers(MIN_TILE, 400)),
                      int(rng.choice(fields))))
    for (h, w, tile, rf), got in zip(cases, _java_plans(host, tmp_path, cases)):
        halo = halo_of(types.SimpleNamespace(receptive_field=rf))
        (win_h, win_w), tiles = tile_plan(h, w, tile, halo)
        assert got == ((win_h, win_w), [tuple(t) for t in tiles]), (h, w, tile, rf)
    print(f"{len(cases)} plans identical; receptive fields of the zoo: {_zoo_receptive_fields()}")


def test_tile_plan_refuses_bad_values(host, tmp_path):
    got = _java_plans(host, tmp_path, [(100, 100, MIN_TILE - 1, 13), (100, 100, 64, 0), (0, 100, 64, 13)])
    assert got == ["error tile size must be >= 16, got 15", "error receptive field must be >= 1, got 0",
                   "error photo size must be >= 1 x 1, got 0x100"]


@pytest.mark.parametrize("scale,tile", [(2, 64), (3, 40)])
def test_stitching_recorded_network_windows_reproduces_the_whole_photo(host, tmp_path, scale, tile):
    """Python upscales each window of the plan through SESR-M3 (the recorded outputs); the
    Java tiler cuts and places them; the result equals the photo upscaled in one piece."""
    torch.manual_seed(scale)
    up = TorchUpscaler(create("sesr_m3", scale=scale, expansion=8).collapse())
    img = np.ascontiguousarray(embedded_image("chelsea")[:190, :260])
    h, w = img.shape[:2]
    rf = up.receptive_field
    (win_h, win_w), plan = tile_plan(h, w, tile, halo_of(up))
    assert len(plan) > 4 and (win_h, win_w) != (h, w)  # really tiled
    pieces = [upscale_photo(up, img[wy0 : wy0 + win_h, wx0 : wx0 + win_w]) for _, _, _, _, wy0, wx0 in plan]
    np.concatenate([p.reshape(-1) for p in pieces]).tofile(tmp_path / "pieces.bin")
    host.java("stitch", h, w, tile, rf, scale, tmp_path / "pieces.bin", tmp_path / "out.bin")
    got = np.fromfile(tmp_path / "out.bin", dtype=np.uint8).reshape(h * scale, w * scale, 3)
    whole = upscale_photo(up, img)
    assert np.array_equal(got, whole), _diff(got, whole)


@pytest.mark.parametrize("color,scale", [("rgb", 2), ("rgb", 4), ("y", 3)])
def test_app_lut_path_tile_by_tile_equals_the_whole_photo(host, tmp_path, color, scale):
    """The app's LUT path (levels, JNI engine, colour pipeline) through ``TilePlan.upscale`` with
    16-pixel tiles equals the same Java path on the whole photo, byte for byte, and (per-channel
    RGB, integer end to end) Python's ``upscale_photo`` on the whole photo."""
    contract = IOContract(scale=scale, color=color, per_channel=color == "rgb")
    lut = np.random.default_rng(7 + scale).integers(-127, 128, (17**4, scale * scale), dtype=np.int8)
    upscaler = LutUpscaler(LutBundle("srlut", scale, 4, [lut], contract))
    img = np.ascontiguousarray(embedded_image("chelsea")[20:190, 101:300])  # 170 x 199: windows < photo
    lut.tofile(tmp_path / "lut.bin")
    img.tofile(tmp_path / "rgb.bin")
    args = (tmp_path / "lut.bin", 4, scale, color, tmp_path / "rgb.bin", *img.shape[:2])
    host.java("tiledlut", *args, 16, upscaler.receptive_field, tmp_path / "tiled.bin")
    host.java("lutphoto", *args, tmp_path / "whole.bin")
    shape = (img.shape[0] * scale, img.shape[1] * scale, 3)
    tiled = np.fromfile(tmp_path / "tiled.bin", dtype=np.uint8).reshape(shape)
    whole = np.fromfile(tmp_path / "whole.bin", dtype=np.uint8).reshape(shape)
    assert np.array_equal(tiled, whole), _diff(tiled, whole)
    if color == "rgb":
        ref = upscale_photo(upscaler, img)
        assert np.array_equal(tiled, ref), _diff(tiled, ref)
