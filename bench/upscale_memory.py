"""Memory and time of ``edgesr upscale`` on a big photo, tiled (now) against in one piece (before).

    python bench/upscale_memory.py [--width 4000 --height 3000] [--scale 2] [--model sesr_m5]
                                   [--tile 256] [--skip-before] [--out docs/upscale.md]

The photo is a real one (scikit-image 'astronaut', 'coffee', 'chelsea' and 'rocket' tiled
side by side, then resized with Lanczos to WIDTH x HEIGHT) saved as PNG. Each measured run is
a fresh Python process (so one run's memory cannot hide in another's) that reads the photo,
upscales it with an SESR checkpoint (deterministic random weights: memory and time do not
depend on the values) and writes the PNG, then reports its own peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and wall time:

* ``after``: ``edgesr upscale`` as it is now (tiles with the receptive-field halo, float32
  chroma);
* ``before``: the code path edgesr had before tiling: :func:`legacy_upscale_photo` below,
  the whole photo at once with float64 MATLAB ``imresize`` of Y, Cb and Cr.

It also times the bicubic chroma alone (Cb, Cr of the same photo) both ways, in this
process, and checks that the two outputs agree within one level. Results go to a Markdown
table in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesr.core.color import rgb_to_cbcr, rgb_to_ycbcr, ycbcr_to_rgb  # noqa: E402
from edgesr.core.evaluate import output_y, run_upscaler  # noqa: E402
from edgesr.core.imresize import imresize, upscale_bicubic  # noqa: E402
from edgesr.core.tiling import DEFAULT_TILE, tile_grid  # noqa: E402


def legacy_upscale_photo(upscaler, img: np.ndarray) -> np.ndarray:
    """edgesr's upscale_photo before tiling (RGB photos): whole image, float64 chroma via imresize of Y, Cb, Cr."""
    s = upscaler.contract.scale
    out = run_upscaler(upscaler, img)
    ycc = imresize(rgb_to_ycbcr(img), s)
    ycc[..., 0] = output_y(out, upscaler.contract, gray=False)
    return np.clip(np.round(ycbcr_to_rgb(ycc)), 0, 255).astype(np.uint8)


def make_photo(path: Path, width: int, height: int) -> None:
    from PIL import Image

    from edgesr.core.data import embedded_image

    parts = [embedded_image(n) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    h = min(p.shape[0] for p in parts)
    strip = np.concatenate([p[:h] for p in parts], axis=1)
    Image.fromarray(strip).resize((width, height), Image.LANCZOS).save(path)


CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
mode, photo, ckpt, out, tile = sys.argv[1:6]
sys.path.insert(0, sys.argv[6])
if mode == "after":
    from edgesr.cli import main
    code = main(["upscale", photo, "--checkpoint", ckpt, "-o", out, "--tile", tile])
    assert code == 0
else:
    from bench.upscale_memory import legacy_upscale_photo
    from edgesr.core.evaluate import TorchUpscaler
    from edgesr.core.checkpoint import load_checkpoint
    from edgesr.core.imageio import read_image, write_image
    img = read_image(photo)
    model, _ = load_checkpoint(ckpt, deploy=True)
    write_image(out, legacy_upscale_photo(TorchUpscaler(model), img))
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(mode: str, photo: Path, ckpt: Path, out: Path, tile: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(photo), str(ckpt), str(out), str(tile), str(ROOT)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["killed"])[-1], "returncode": proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def chroma_times(photo: Path, scale: int, tile: int) -> dict:
    from edgesr.core.imageio import read_image

    img = read_image(photo)
    t0 = time.perf_counter()
    before = imresize(rgb_to_ycbcr(img), scale)[..., 1:]
    t_before = time.perf_counter() - t0
    t0 = time.perf_counter()
    after = np.empty(before.shape, np.float32)
    h, w = img.shape[:2]
    for y0, y1, x0, x1 in tile_grid(h, w, tile):  # the tiles as upscale_tiled runs them, halo 2
        wy0, wy1, wx0, wx1 = max(y0 - 2, 0), min(y1 + 2, h), max(x0 - 2, 0), min(x1 + 2, w)
        piece = upscale_bicubic(rgb_to_cbcr(img[wy0:wy1, wx0:wx1]), scale)
        oy, ox = scale * (y0 - wy0), scale * (x0 - wx0)
        after[scale * y0: scale * y1, scale * x0: scale * x1] = piece[oy: oy + scale * (y1 - y0), ox: ox + scale * (x1 - x0)]
    t_after = time.perf_counter() - t0
    return {"before_s": t_before, "after_s": t_after, "max_abs_diff": float(np.abs(after - before).max())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--model", default="sesr_m5")
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE)
    ap.add_argument("--skip-before", action="store_true", help="measure only the tiled path")
    ap.add_argument("--out", default=str(ROOT / "docs" / "upscale.md"))
    args = ap.parse_args()

    import torch

    from edgesr.core.checkpoint import save_checkpoint
    from edgesr.core.models import create

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo, ckpt = tmp / "photo.png", tmp / "model.pt"
        make_photo(photo, args.width, args.height)
        torch.manual_seed(0)
        model = create(args.model, scale=args.scale)
        save_checkpoint(ckpt, model.collapse() if hasattr(model, "collapse") else model, form="deploy")
        rows = {"after": measure("after", photo, ckpt, tmp / "after.png", args.tile)}
        if not args.skip_before:
            rows["before"] = measure("before", photo, ckpt, tmp / "before.png", args.tile)
            if "error" not in rows["before"]:
                from edgesr.core.imageio import read_image

                diff = np.abs(read_image(tmp / "after.png").astype(int) - read_image(tmp / "before.png").astype(int))
                rows["output"] = {"max_abs_diff": int(diff.max()), "differing_values": int((diff > 0).sum()), "values": int(diff.size)}
        chroma = chroma_times(photo, args.scale, args.tile)

    load = os.getloadavg()[0]
    lines = [
        "| path | peak RSS (MB) | time (s) |", "|---|---:|---:|",
    ]
    for key in ("before", "after"):
        r = rows.get(key)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {key} | failed: {r['error']} | |")
        else:
            lines.append(f"| {key} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} |")
    result = {"photo": f"{args.width}x{args.height}", "scale": args.scale, "model": args.model, "tile": args.tile,
              "runs": rows, "chroma": chroma, "load_average_1min": load, "cpus": os.cpu_count(),
              "machine": platform.machine()}
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(render(result, lines))
    print(f"wrote {args.out}")
    return 0


def render(result: dict, table: list[str]) -> str:
    c = result["chroma"]
    return f"""# Upscaling big photos: memory and time

Measured by `python bench/upscale_memory.py --width {result['photo'].split('x')[0]} --height {result['photo'].split('x')[1]} --scale {result['scale']} --model {result['model']} --tile {result['tile']}`:
a {result['photo']} real photo at x{result['scale']} through {result['model']} (its checkpoint with fixed random weights),
read, upscaled and written as PNG by a fresh Python process each; peak RSS from
`resource.getrusage(RUSAGE_SELF).ru_maxrss` in that process.

{chr(10).join(table)}

* **before**: the whole photo at once, float64 MATLAB `imresize` of Y, Cb and Cr (the code before tiling).
* **after**: `edgesr upscale` now: tiles of {result['tile']}x{result['tile']} LR pixels with a halo of the
  model's receptive field, bicubic chroma (Cb, Cr only) per phase in float32.

Bicubic chroma alone (Cb, Cr of the same photo, in one process): before {c['before_s']:.2f} s,
after {c['after_s']:.2f} s, **{c['before_s'] / c['after_s']:.0f}x faster**; largest difference
{c['max_abs_diff']:.1e} (on the 0-255 scale, float32 rounding).
{_output_line(result)}
Machine: {result['cpus']} CPU cores, {result['machine']}, **shared with other jobs** during the measurement
(1-minute load average {result['load_average_1min']:.1f}): the times are slow and noisy, compare them only
as the ratio measured in this one run; the memory figures do not depend on the load.

The tiled output equals the untiled one pixel for pixel (`tests/test_tiling.py`, every model
family, LUTs and bicubic, several tile sizes); the memory is the uint8 result plus one tile's
working set, so it grows with the output, not with float copies of it.
"""


def _output_line(result: dict) -> str:
    o = result["runs"].get("output")
    if not o:
        return ""
    return (f"\nThe before and after PNGs differ by at most {o['max_abs_diff']} level in {o['differing_values']} of "
            f"{o['values']} values (float32 instead of float64 chroma, rounded half to even).\n")


if __name__ == "__main__":
    sys.exit(main())
