"""Image reading and writing on real photos: 16-bit PNGs, EXIF orientation, damaged JPEGs, alpha to JPEG, full disk."""

from __future__ import annotations

import errno
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from edgesr.core.errors import EdgesrError
from edgesr.core.imageio import read_image, write_image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png16(path: Path, samples: np.ndarray) -> None:
    """A 16-bit PNG (Pillow cannot write colour ones) with rows filtered None, Sub and Up in turn."""
    h, w = samples.shape[:2]
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").reshape(h, -1).view(np.uint8).reshape(h, w * channels * 2).astype(np.int16)
    bpp = channels * 2
    raw = b""
    for y in range(h):
        kind = y % 3
        if kind == 1:  # Sub
            left = np.concatenate([np.zeros(bpp, np.int16), rows[y, :-bpp]])
            line = (rows[y] - left) % 256
        elif kind == 2:  # Up
            line = (rows[y] - rows[y - 1]) % 256
        else:
            line = rows[y]
        raw += bytes([kind]) + line.astype(np.uint8).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def _sixteen_bit(photo: np.ndarray) -> np.ndarray:
    """The photo at 16 bits with a real low byte (a deterministic dither), as a raw developer would write it."""
    rng = np.random.default_rng(0)
    return (photo.astype(np.uint32) * 257 + rng.integers(-128, 128, photo.shape)).clip(0, 65535).astype(np.uint16)


def _round257(v: np.ndarray) -> np.ndarray:
    return np.floor(v / 257.0 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("layout", ["rgb", "rgba", "gray", "gray_alpha"])
def test_sixteen_bit_pngs_map_by_round_v_over_257(tmp_path, photo, layout):
    crop = photo[:61, :83]
    alpha = np.linspace(0, 255, crop.shape[1], dtype=np.uint8)[None].repeat(crop.shape[0], 0)
    base = {"rgb": crop, "rgba": np.dstack([crop, alpha]), "gray": crop[..., 1],
            "gray_alpha": np.dstack([crop[..., 1], alpha])}[layout]
    v = _sixteen_bit(base)
    write_png16(tmp_path / "p16.png", v)
    got = read_image(tmp_path / "p16.png", keep_alpha=True)
    np.testing.assert_array_equal(got, _round257(v))
    assert np.any(got != (v >> 8))  # the high byte alone (Pillow's reduction) is a different image


def test_exif_orientation_is_honoured_for_all_eight(tmp_path, photo):
    crop = photo[:40, :70]
    for orientation in range(1, 9):
        im = Image.fromarray(crop)
        exif = im.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.png"
        im.save(path, exif=exif)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        got = read_image(path)
        np.testing.assert_array_equal(got, expected)
        assert got.shape[:2] == ((70, 40) if orientation >= 5 else (40, 70))
    # orientation 6 (the usual portrait phone photo): rotated 90 degrees clockwise
    np.testing.assert_array_equal(read_image(tmp_path / "o6.png"), np.rot90(crop, -1))


def _jpeg(photo: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def test_damaged_entropy_coded_data_is_an_error(tmp_path, photo):
    good = _jpeg(photo)
    sos = good.index(b"\xff\xda")
    cases = {
        "stray_marker": good[: sos + 3000] + b"\xff\x12" + good[sos + 3002:],
        "spurious_restart": good[: sos + 3000] + b"\xff\xd3" + good[sos + 3002:],
    }
    restart = _jpeg(photo, restart_marker_blocks=4)
    at = restart.index(b"\xff\xd2", restart.index(b"\xff\xda"))
    cases["restart_out_of_order"] = restart[:at] + b"\xff\xd5" + restart[at + 2:]
    (tmp_path / "good.jpg").write_bytes(restart)
    assert read_image(tmp_path / "good.jpg").shape == photo.shape  # restart markers in order: fine
    for name, data in cases.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(data)
        with pytest.raises(EdgesrError, match=rf"{name}\.jpg: (corrupt JPEG data|not a readable image)"):
            read_image(path)
    for name in ("spurious_restart", "restart_out_of_order"):
        Image.open(tmp_path / f"{name}.jpg").load()  # Pillow alone decodes these to garbage without complaint


def _entropy_coded_span(jpeg: bytes) -> tuple[int, int]:
    """[start, end) of a baseline JPEG's entropy-coded data: after the SOS segment, before EOI."""
    sos = jpeg.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(jpeg[sos + 2 : sos + 4], "big"), jpeg.rindex(b"\xff\xd9")


def _bit_flips(jpeg: bytes, n: int, seed: int = 0):
    """``n`` copies of ``jpeg``, each with one bit flipped inside the entropy-coded data, keeping
    the marker structure: never a 0xFF byte, the byte after one (a stuffed 0x00 or a marker), or
    a flip that makes a new 0xFF."""
    rng = np.random.default_rng(seed)
    start, end = _entropy_coded_span(jpeg)
    while n:
        at, bit = int(rng.integers(start, end)), int(rng.integers(0, 8))
        flipped = jpeg[at] ^ (1 << bit)
        if jpeg[at] == 0xFF or jpeg[at - 1] == 0xFF or flipped == 0xFF:
            continue
        n -= 1
        yield at, jpeg[:at] + bytes([flipped]) + jpeg[at + 1 :]


def test_bit_flips_in_the_entropy_coded_data(tmp_path, photo, capsys):
    """200 seeded single-bit flips in a real photo's Huffman-coded data. JPEG has no checksum:
    a flip that leaves valid Huffman codes ending where the scan ends is undetectable by any
    decoder, so not every flip can be caught; each one libjpeg-turbo complains about must be
    refused with one line naming the file, and each one accepted must be exactly what Pillow
    decodes (edgesr adds no damage of its own). Pillow alone refuses none of them."""
    good = _jpeg(photo)
    caught, pillow_caught, n = 0, 0, 200
    for i, (at, data) in enumerate(_bit_flips(good, n)):
        path = tmp_path / f"flip{i}.jpg"
        path.write_bytes(data)
        try:
            Image.open(path).load()
        except OSError:
            pillow_caught += 1
        try:
            got = read_image(path)
        except EdgesrError as exc:
            caught += 1
            assert str(exc).startswith(f"{path}: corrupt JPEG data (libjpeg-turbo: ") and "\n" not in str(exc)
            continue
        np.testing.assert_array_equal(got, np.asarray(Image.open(path).convert("RGB")))
    with capsys.disabled():
        print(f"\nJPEG bit flips refused: {caught} of {n} (Pillow alone: {pillow_caught})")
    assert pillow_caught == 0  # why the check exists
    assert caught > 0


def test_damaged_jpeg_through_the_cli_is_one_line_exit_2(tmp_path, photo, capsys):
    from edgesr.cli import main

    good = _jpeg(photo[:96, :128])
    caught = []
    for at, data in _bit_flips(good, 40, seed=1):
        path = tmp_path / f"flip_at_{at}.jpg"
        path.write_bytes(data)
        try:
            read_image(path)
        except EdgesrError:
            caught.append(path)
    assert caught, "no flip of 40 was refused"
    path, out = caught[0], tmp_path / "out.png"
    code = main(["upscale", str(path), "--model", "bicubic", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"edgesr: error: {path}: corrupt JPEG data"), (code, err)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["baseline", "progressive", "restart", "gray", "cmyk", "exif_rotated"])
def test_clean_jpegs_load_as_pillow_decodes_them(tmp_path, photo, kind):
    """The libjpeg-turbo check refuses no valid JPEG, and the pixels are still Pillow's
    (EXIF orientation applied, CMYK converted to RGB), as before the check existed."""
    im = Image.fromarray(photo[:, :, 0] if kind == "gray" else photo)
    path, kw = tmp_path / f"{kind}.jpg", {"quality": 90}
    if kind == "cmyk":
        im = im.convert("CMYK")
    elif kind == "progressive":
        kw["progressive"] = True
    elif kind == "restart":
        kw["restart_marker_blocks"] = 3
    elif kind == "exif_rotated":
        exif = im.getexif()
        exif[0x0112] = 6
        kw["exif"] = exif
    im.save(path, "JPEG", **kw)
    with Image.open(path) as ref:
        expected = np.asarray(ImageOps.exif_transpose(ref).convert("L" if kind == "gray" else "RGB"))
    np.testing.assert_array_equal(read_image(path), expected)


def test_rgba_and_la_to_jpeg_drop_alpha_with_a_warning(tmp_path, photo):
    crop = photo[:31, :45]
    alpha = np.full(crop.shape[:2], 100, np.uint8)
    for img, channels in [(np.dstack([crop, alpha]), 3), (np.dstack([crop[..., 0], alpha]), None)]:
        out = tmp_path / "o.jpg"
        with pytest.warns(UserWarning, match="alpha is dropped"):
            write_image(out, img)
        back = read_image(out, keep_alpha=True)
        assert back.shape == crop.shape[:2] + ((channels,) if channels else ())


def test_full_disk_gives_one_line_and_leaves_nothing(tmp_path, photo, monkeypatch):
    def no_space(self, fp, *a, **k):
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", no_space)
    with pytest.raises(EdgesrError, match=r"out\.png: cannot write \(No space left on device\)"):
        write_image(tmp_path / "out.png", photo)
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_suffix_names_the_file(tmp_path, photo):
    with pytest.raises(EdgesrError, match=r"out\.xyz: unknown image format"):
        write_image(tmp_path / "out.xyz", photo)
