"""Benchmark of lut_baking: quality (network vs baked vs fine-tuned LUT) and engine speed.

Writes ``docs/lut.md`` (and ``docs/lut.json`` with the raw numbers). Run from the repository root:

    python bench/lut.py                       # the budget stated in docs/lut.md
    python bench/lut.py --steps 100 --ft-steps 50 --sets Set5   # a quick look

Everything runs on one CPU thread (torch.set_num_threads(1)). Training data: T91 from
``../shared/data`` when present, else the embedded photographs. Evaluation: edgesr's one
path (:func:`edgesr.core.evaluate.evaluate_sets`: MATLAB bicubic LR, Y of BT.601, border = scale).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from edgesr.lut_baking.bake import bake  # noqa: E402
from edgesr.lut_baking.bundle import LutUpscaler, upscale_planes  # noqa: E402
from edgesr.lut_baking.finetune import FINETUNE_STEPS, FinetuneConfig, finetune  # noqa: E402
from edgesr.lut_baking.importer import read_srlut_npy  # noqa: E402

from edgesr.core.atomic import write_text_atomic  # noqa: E402
from edgesr.core.checkpoint import load_checkpoint  # noqa: E402
from edgesr.core.contract import IOContract  # noqa: E402
from edgesr.core.data import (  # noqa: E402
    SHARED_DATA,
    benchmark_set,
    embedded_image,
    embedded_images,
    load_folder,
)
from edgesr.core.evaluate import FunctionUpscaler, TorchUpscaler, evaluate_sets  # noqa: E402
from edgesr.core.imresize import imresize  # noqa: E402
from edgesr.core.train import TrainConfig, train  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bicubic(scale: int) -> FunctionUpscaler:
    fn = lambda x: imresize(x[:, 0].transpose(1, 2, 0).astype(np.float64), scale).transpose(2, 0, 1)[:, None].astype(np.float32)  # noqa: E731
    return FunctionUpscaler(fn, IOContract(scale, "rgb", 1, per_channel=True))


def quality(name: str, scale: int, images, sets, args) -> dict:
    """Train with edgesr's one trainer (MSE, the SR-LUT authors' loss), bake, fine-tune, score."""
    t0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = train(TrainConfig(model=name, scale=scale, data=args.data, out=tmp, steps=args.steps, batch=args.batch,
                                 lr_patch=args.patch, lr=args.lr, loss="mse", val_every=0, checkpoint_every=args.steps,
                                 device=args.device, progress=False))
        model, _ = load_checkpoint(ckpt)
    model.eval()
    train_s = time.process_time() - t0
    baked = bake(model, bits=4)
    t0 = time.process_time()
    tuned = finetune(baked, images, FinetuneConfig(steps=args.ft_steps, batch=args.batch, lr_patch=args.patch, lr=args.ft_lr), log=log)
    ft_s = time.process_time() - t0
    row = {"model": name, "scale": scale, "bytes": baked.nbytes, "n_luts": len(baked.arrays), "train_cpu_s": train_s, "finetune_cpu_s": ft_s,
           "net": evaluate_sets(TorchUpscaler(model), sets), "baked": evaluate_sets(LutUpscaler(baked, "c"), sets),
           "finetuned": evaluate_sets(LutUpscaler(tuned, "c"), sets), "bicubic": evaluate_sets(bicubic(scale), sets)}
    log(f"{name} x{scale}: " + ", ".join(f"{k} {row[k][next(iter(sets))]['psnr_y']:.2f}" for k in ("bicubic", "net", "baked", "finetuned")))
    return row, tuned, model


def best_time(fn, repeat: int) -> tuple[float, float]:
    """(best CPU seconds, best wall seconds) of ``repeat`` runs of fn()."""
    cpu, wall = [], []
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu), min(wall)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_bandwidth() -> float:
    """Single-thread copy bandwidth in GB/s (read + write) of a 256 MiB buffer (numpy copyto)."""
    src = np.ones(1 << 28, np.uint8)
    dst = np.empty_like(src)
    cpu, wall = best_time(lambda: np.copyto(dst, src), 5)
    return 2 * src.nbytes / wall / 1e9


def speed(trained: dict, args) -> dict:
    img = np.ascontiguousarray(embedded_image("chelsea")[:256, :256].transpose(2, 0, 1))  # (3, 256, 256) RGB
    out_mpix = 3 * 1024 * 1024 / 1e6
    rows = []
    for label, bundle, model in trained:
        for engine in ("numpy", "torch", "c"):
            reps = 5 if engine == "c" else 3
            cpu, wall = best_time(lambda: upscale_planes(bundle, img, engine), reps)
            rows.append({"what": f"{label} LUT, {engine} engine", "cpu_s": cpu, "wall_s": wall, "mpix_s": out_mpix / cpu})
        x = torch.from_numpy(img[:, None].astype(np.float32) / 255.0)
        with torch.inference_mode():
            cpu, wall = best_time(lambda: model.eval()(x), 2)
        rows.append({"what": f"{label} network, PyTorch (float32)", "cpu_s": cpu, "wall_s": wall, "mpix_s": out_mpix / cpu})
        log(rows[-2]["what"] + f": {rows[-2]['mpix_s']:.1f} Mpix/s")
    return {"rows": rows, "bandwidth_gbs": memory_bandwidth()}


def authors_lut(sets) -> dict | None:
    src = SHARED_DATA.parent / "peer_weights" / "srlut" / "Model_S_x2_4bit_int8.npy"
    if not src.is_file():
        return None
    bundle = read_srlut_npy(src, 2)
    return {"lut": evaluate_sets(LutUpscaler(bundle, "c"), sets), "bicubic": evaluate_sets(bicubic(2), sets), "bytes": bundle.nbytes}


def render(res: dict) -> str:
    a = res["args"]
    sets = res["sets"]
    lines = [
        "# LUT baking: quality and speed",
        "",
        f"Generated by `python bench/lut.py {res['argv']}` on {res['machine']}, {res['date']}; networks trained on "
        f"{res.get('train_device', 'the same CPU')}. LUT engines: one CPU thread",
        "(shared machine: speeds are best-of-N *CPU* time, which other processes disturb less than wall time).",
        "Method, formats and design choices: see the end of this page and `lut_baking/lut_engine.h`.",
        "",
        "## Quality (PSNR / SSIM on Y, BT.601, border = scale; MATLAB-bicubic LR)",
        "",
        f"Training budget (deliberately tiny for a shared 2-core CPU): network {a['steps']} Adam steps with edgesr's trainer (edgesr.core.train, the one `edgesr run` uses; lr {a['lr']}, cosine),",
        f"batch {a['batch']} RGB crops (channels folded into the batch: {3 * a['batch']} planes) of {a['patch']}x{a['patch']} LR pixels,",
        f"MSE loss, data {res['train_data']}; LUT-aware fine-tuning {a['ft_steps']} Adam steps (lr {a['ft_lr']} int8 units).",
        "The SR-LUT authors train 200k steps on DIV2K, so absolute PSNR here is far below the paper; the",
        "point of this table is the *baking loss* (network -> baked LUT -> fine-tuned LUT) at 4-bit sampling.",
        "",
        "| model | set | bicubic | network | baked LUT | fine-tuned LUT | baking loss after fine-tuning | LUT bytes | train / fine-tune CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in res["quality"]:
        for s in sets:
            f = lambda k: f"{row[k][s]['psnr_y']:.2f} / {row[k][s]['ssim_y']:.4f}"  # noqa: E731
            loss = row["net"][s]["psnr_y"] - row["finetuned"][s]["psnr_y"]
            lines.append(f"| {row['model']} x{row['scale']} | {s} | {f('bicubic')} | {f('net')} | {f('baked')} | {f('finetuned')} | "
                         f"{loss:+.3f} dB | {row['bytes']:,} ({row['n_luts']} LUT{'s' if row['n_luts'] > 1 else ''}) | {row['train_cpu_s']:.0f} / {row['finetune_cpu_s']:.0f} |")
    lines += ["", "Baking loss = network PSNR - fine-tuned LUT PSNR (target < 0.1 dB; negative: the fine-tuned LUT is better than the",
              "network). Before fine-tuning, 4-bit baking costs SR-LUT 0.01-0.04 dB (the simplex interpolation of a smooth network);",
              "SPLUT's network form already simulates its LUTs, so its baked LUTs equal it exactly. Fine-tuning then keeps training",
              "the LUT entries themselves, which with this tiny network budget is worth more than the baking loss (up to +0.9 dB).",
              "The SPLUT rows use the SPLUT network's own hidden layers (1x1, width 64, GELU); at equal training budget the",
              "SPLUT variants beat SR-LUT's network but gain little from fine-tuning.", ""]
    if res.get("authors"):
        au = res["authors"]
        lines += ["### The SR-LUT authors' LUT S x2 (4-bit), imported", "",
                  "| set | bicubic | authors' LUT (edgesr C engine) |", "|---|---|---|"]
        for s in sets:
            lines.append(f"| {s} | {au['bicubic'][s]['psnr_y']:.2f} / {au['bicubic'][s]['ssim_y']:.4f} | {au['lut'][s]['psnr_y']:.2f} / {au['lut'][s]['ssim_y']:.4f} |")
        lines += ["", f"{au['bytes']:,} bytes. The authors apply the LUT to each RGB channel and score Y; their LR is bicubic with a float",
                  "intermediate, edgesr's rounds to 8 bits between passes (the EDSR/BasicSR protocol), worth a few hundredths of a dB.", ""]
    sp = res["speed"]
    lines += ["## Speed (256x256 RGB -> x4: 3.15 output Mpix; one thread)", "",
              "| what | CPU s | wall s | output Mpix/s (CPU time) |", "|---|---|---|---|"]
    for r in sp["rows"]:
        lines.append(f"| {r['what']} | {r['cpu_s']:.4f} | {r['wall_s']:.4f} | {r['mpix_s']:.1f} |")
    c = next(r for r in sp["rows"] if r["what"].startswith("SR-LUT x4 LUT, c"))
    n = next(r for r in sp["rows"] if r["what"].startswith("SR-LUT x4 LUT, numpy"))
    traffic = (3 * 256 * 256 + 3 * 1024 * 1024) / c["cpu_s"] / 1e9
    lines += ["", f"Targets for SR-LUT x4 on one core: numpy >= 10 Mpix/s (measured {n['mpix_s']:.1f}), C >= 100 Mpix/s (measured {c['mpix_s']:.1f}).",
              "For scale (figures from issue 5, not re-measured): the authors' per-pixel Python loop runs at about 0.13 Mpix/s",
              "on this machine and a plain numpy vectorization at about 5.",
              "",
              f"Memory bandwidth (one thread, 256 MiB copy): {sp['bandwidth_gbs']:.1f} GB/s. The C engine reads the image and writes",
              f"the output at {traffic:.2f} GB/s, a small fraction of it: it is not bandwidth-bound. Per LR pixel it does 4 rotations",
              "x (5 LUT rows of s*s int8 + a 5-comparator sort + 5*s*s multiply-adds); the x4 LUT (1.27 MiB) exceeds this core's",
              "512 KiB L2, so the row reads are L2/L3 hits whose latency, with the integer arithmetic, bounds it (perf: about 90% of",
              "the time in the per-pixel kernel, the hottest instructions waiting on LUT loads). Rows are split freely across threads.",
              ""]
    lines += [DESIGN]
    return "\n".join(lines) + "\n"


DESIGN = """## Design and choices

**SR-LUT** follows the paper and the authors' code: 2x2 receptive field, rotation ensemble (rotate by 0/90/180/270,
reflect-pad one pixel at bottom/right, rotate back; output = sum of 127*clamp(net, -1, 1) / 255, 3x3 effective receptive
field), baking at 2**k-level sampling with the last sample 256 evaluated at 255 (as the authors do), int8 =
round(127 * clamp). Inference is 4-D simplex interpolation in integers: fractions f = pixel % q sorted decreasingly,
vertices added one dimension at a time, weights (q-f1, f1-f2, f2-f3, f3-f4, f4). The 24 orderings are not tabulated:
numpy ranks the fractions with ties going to the earlier input, C sorts them with a 5-comparator network (any order
of tied fractions gives the same value since the vertex between them has weight 0); tests check every ordering against
the defining property (weights >= 0, sum q, reproduce the point). Rounding: the int32 sum T over the 4 rotations
(q times the authors' float sum) gives `0 if T < 0 else min(255, (T + q/2) >> k)` (half up; the authors' float code
rounds half to even, which differs only on exact ties).

**SPLUT** (Ma et al., ECCV 2022), edgesr's variant where the paper's details were not available:
* MSB (x >> 4) and LSB (x & 15) branches of identical structure; outputs summed with the input (nearest-upsampled)
  residual, clamped, depth-to-space by 4; every LUT has 16**4 entries indexed directly (no interpolation).
* Stage 1: 2x2 spatial LUT, 1 -> 4 int8 features. Then S/M/L have 0/1/2 channel-mixing stages (4 -> 4, with residual)
  and a final stage (-> 16). Each series stage has a horizontal (pixel, right/left neighbour) and a vertical (pixel,
  lower/upper neighbour) LUT per channel pair (channels 0-1 and 2-3), each reading 2 channels at 2 pixels; the four
  lookups are averaged (`floor((sum + 2) / 4)`). Features are re-quantized to 16 levels by `(f + 128) >> 4` (a floor
  step quantizer, straight-through gradient in training). The neighbour direction alternates (-1, +1, -1) so the
  receptive field stays centred without a rotation ensemble (S: 3x3, M: 4x4, L: 5x5); SPLUT does not use one.
* The network form simulates every LUT (int8 = round(127 * clamp(., -1, 1)), STE) and every integer step, so in eval
  mode it equals its baked LUTs bit for bit (tested); hidden layers are 1x1 convs of width 64 with GELU.
* Output: `clamp(x + floor((R_msb + R_lsb + 2) / 4), 0, 255)`: each final LUT value is a quarter of a grey level.
* Sizes: S 8.5 MiB, M 10.5 MiB, L 12.5 MiB (2 branches x (256 KiB spatial + 1 MiB per mixing stage + 4 MiB final)).

**Engines**: numpy (`engine_numpy.py`, the readable reference), PyTorch (`engine_torch.py`, batched, differentiable in
the LUT entries through the interpolation), C99 (`lut_engine.c/.h`, built with `cc -O3 -std=c99 -shared -fPIC` into
`~/.cache/edgesr`, called through ctypes; the Android app compiles the same files). They agree bit for bit on real
photos of odd sizes, all scales and edge images (tests/test_lut_engines.py).

**Fine-tuning** trains the LUT entries as float parameters through the PyTorch engine; the forward uses their int8
values (straight-through rounding), so the loss is the deployed LUT's; results are rounded and clamped to [-127, 127].

**Bundle** (`.lut`): npz (no pickle) with the int8 arrays, JSON metadata (method, scale, bits, SPLUT variant, I/O
contract, provenance) and the SHA-256 of the arrays; a truncated, corrupted or edited file is refused with one line.
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--ft-steps", type=int, default=FINETUNE_STEPS)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ft-lr", type=float, default=0.1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the networks train (the LUTs always run on the CPU)")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    p.add_argument("--splut", nargs="*", default=["splut_s"])
    p.add_argument("--out", default=str(ROOT / "docs" / "lut.md"))
    p.add_argument("--render-only", action="store_true", help="re-render OUT from its .json (no measurement)")
    args = p.parse_args()
    if args.render_only:
        write_text_atomic(args.out, render(json.loads(Path(args.out).with_suffix(".json").read_text())))
        return 0
    torch.set_num_threads(1)
    have_shared = (SHARED_DATA / "Set5" / "HR").is_dir()
    sets = {s: benchmark_set(SHARED_DATA, s) for s in args.sets} if have_shared else {"embedded": embedded_images("val")}
    t91 = SHARED_DATA / "T91" / "HR"
    args.data = str(t91) if t91.is_dir() else None
    images = load_folder(t91) if t91.is_dir() else embedded_images("train")
    res = {"args": vars(args), "argv": " ".join(sys.argv[1:]), "sets": list(sets), "machine": f"{cpu_name()} ({os.cpu_count()} cores, {platform.machine()})",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "train_data": "T91 (91 images)" if t91.is_dir() else "embedded photographs",
           "train_device": torch.cuda.get_device_name(0) if args.device == "cuda" else "the same CPU"}
    res["quality"] = []
    trained = []
    for name, scale in [("srlut_s", 2), ("srlut_s", 4)] + [(n, 4) for n in args.splut]:
        row, tuned, model = quality(name, scale, images, sets, args)
        res["quality"].append(row)
        if scale == 4:  # the speed section times the fine-tuned x4 LUTs and their networks
            trained.append(("SR-LUT x4" if name == "srlut_s" else f"SPLUT-{name[-1].upper()} x4", tuned, model))
    res["speed"] = speed(trained, args)
    res["authors"] = authors_lut({k: v for k, v in sets.items() if k in ("Set5", "Set14", "embedded")})
    write_text_atomic(Path(args.out).with_suffix(".json"), json.dumps(res, indent=1))
    write_text_atomic(args.out, render(res))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
