"""Deployment report of a run folder.

``render_report(run_dir)`` reads ``RUN_DIR/report.json`` and ``RUN_DIR/checkpoints/deploy.pt``
and writes ``RUN_DIR/deployment_report.{md,png,json}``:

* quality vs latency of every artifact: PSNR-Y *relative to the float model* (dB) against the
  median latency, with bicubic's drop drawn as the floor, so a 0.04 dB int8 loss looks as small
  as it is beside the 1 dB the network gains over bicubic (the y span is never under
  :data:`MIN_SPAN_DB`); the latency axis is logarithmic when latencies span more than a
  decade (:data:`LOG_LATENCY_RATIO`); every artifact is named in a legend (no labels on the
  points to overlap); the Pareto front is a dashed line;
* the signed error map int8 - float (8-bit Y levels, diverging colour map centred on 0, a
  colour bar) on a photograph from the evaluation sets the run chose (``run.json``), with a
  magnified window where the error is largest (the int8 TFLite artifact; in a lookup-table run,
  the table against the trained network);
* the emulation matrix of the int8 TFLite artifact on that photograph.

Latency and achieved MAC/s come from :func:`edgesr.app.profiling.profile_artifact` exactly as
``edgesr profile`` measures them: for a ``.tflite``, against XNNPACK's own peak in the artifact's
arithmetic measured in the same run, so ``fraction_of_peak`` cannot exceed 1. A lookup table
(``.lut``) has no multiply-accumulates: it gets no GMAC or fraction-of-peak entry.

``emulation_matrix`` (what each phone engine would output) lives in
:mod:`edgesr.app.validation`, scored through :mod:`edgesr.core.evaluate` like every other
number; it is imported here for the report.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from edgesr.app.artifacts import open_artifact
from edgesr.app.profiling import profile_artifact
from edgesr.app.validation import emulation_matrix
from edgesr.core.atomic import atomic_path, write_text_atomic
from edgesr.core.checkpoint import load_checkpoint
from edgesr.core.data import embedded_image, embedded_images, resolve_eval_sets
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import TorchUpscaler, output_y, run_upscaler
from edgesr.core.imresize import make_lr, modcrop

__all__ = ["emulation_matrix", "error_map_panels", "evaluation_images", "quality_latency_plot", "render_report"]

MIN_SPAN_DB = 0.5
"""Smallest span (dB) of the quality axis: differences of a few hundredths of a dB stay small."""
LOG_LATENCY_RATIO = 10.0
"""Latencies whose max / min exceeds this (a decade) are drawn on a log axis."""
ZOOM_PX = 48
"""Side (HR pixels) of the magnified window of the error map."""


# --------------------------------------------------------------------------- inputs


def _pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower latency and higher PSNR are better)."""
    keep = []
    for i, (t, q) in enumerate(points):
        if not any((t2 <= t and q2 >= q) and (t2 < t or q2 > q) for j, (t2, q2) in enumerate(points) if j != i):
            keep.append(i)
    return keep


def _load_run(run_dir: Path):
    rj = run_dir / "report.json"
    if not rj.is_file():
        raise EdgesrError(f"{run_dir}: no report.json (not an edgesr run folder)")
    try:
        report = json.loads(rj.read_text())
    except ValueError as exc:
        raise EdgesrError(f"{rj}: corrupt JSON ({exc})") from None
    for key in ("model", "scale", "artifacts"):
        if key not in report:
            raise EdgesrError(f"{rj}: missing key {key!r}")
    ckpt = run_dir / "checkpoints" / "deploy.pt"
    if not ckpt.exists() and (run_dir / "checkpoints" / "last.pt").exists():
        ckpt = run_dir / "checkpoints" / "last.pt"  # a lookup-table run: no collapse stage, the trained network
    module, _ = load_checkpoint(ckpt, deploy=True)
    return report, module


def evaluation_images(run_dir: str | os.PathLike, report: dict | None = None) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """``(set name, [(name, uint8 HR image)])``: the first evaluation set the run chose.

    The sets come from ``RUN_DIR/run.json`` (``data_root``, ``sets``: the same resolution as
    ``edgesr run``, :func:`edgesr.core.data.resolve_eval_sets`), in the order of
    ``report.json``'s ``eval``; a run folder without run.json uses its report's set names
    (``embedded`` or folders). Images are uint8 (H, W) or (H, W, 3), as stored.

    Raises:
        EdgesrError: the run's evaluation sets cannot be found any more (the message names
            the set and where it was looked for).
    """
    run_dir = Path(run_dir)
    settings = {}
    if (run_dir / "run.json").is_file():
        try:
            settings = json.loads((run_dir / "run.json").read_text())
        except ValueError as exc:
            raise EdgesrError(f"{run_dir / 'run.json'}: corrupt JSON ({exc})") from None
    data_root, sets = settings.get("data_root"), settings.get("sets")
    if sets is None and data_root is not None:
        sets = ["Set5", "Set14"]  # edgesr run's default with a data root
    wanted = list((report or {}).get("eval") or [])
    if not settings and wanted:
        sets = wanted
    resolved = resolve_eval_sets(data_root, sets)
    name = next((s for s in wanted if s in resolved), next(iter(resolved)))
    return name, resolved[name]


def detail_window(img: np.ndarray, h: int, w: int, multiple: int = 1) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the ``h`` x ``w`` window with the most texture (largest sum of
    absolute Y gradients), on a grid of ``multiple`` pixels; a window larger than the image
    starts at (0, 0). Deterministic: ties go to the first window in raster order."""
    y = img.astype(np.float64) if img.ndim == 2 else img[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]
    g = np.zeros_like(y)
    g[:, 1:] += np.abs(np.diff(y, axis=1))
    g[1:, :] += np.abs(np.diff(y, axis=0))
    h, w = min(h, y.shape[0]), min(w, y.shape[1])
    s = np.pad(g.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    box = s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w]  # box[y, x]: sum over the window at (y, x)
    box = box[::multiple, ::multiple]
    iy, ix = np.unravel_index(int(np.argmax(box)), box.shape)
    return int(iy) * multiple, int(ix) * multiple


# --------------------------------------------------------------------------- the plots


def quality_latency_plot(ax, rows: list[dict], float_psnr: float | None, bicubic_psnr: float | None,
                         xlabel: str, set_name: str) -> dict:
    """Draw quality vs latency on ``ax``; returns ``{"xscale", "ylim", "pareto": [row index]}``.

    ``rows``: dicts with ``format``, ``precision``, ``latency_ms`` and ``psnr_y`` (dB; rows
    missing either are left out) and optionally ``stage``. The y value is ``psnr_y -
    float_psnr`` (dB; the float model at 0, or the best artifact when ``float_psnr`` is None),
    with bicubic's drop as a dotted floor; the y span is at least :data:`MIN_SPAN_DB`. Each
    artifact has its own marker and colour and is named, with its numbers, in a legend below
    the axes (no text on the points). The x axis is log-scaled when the latencies' max / min
    exceeds :data:`LOG_LATENCY_RATIO`.
    """
    named = [r for r in rows if r.get("latency_ms") is not None and r.get("psnr_y") is not None]
    ref = float_psnr if float_psnr is not None else max((r["psnr_y"] for r in named), default=0.0)
    pts = [(r["latency_ms"], r["psnr_y"] - ref) for r in named]
    front = _pareto(pts)
    markers, colors = "osD^vP*Xh<>p", [f"C{i}" for i in range(10)]
    for i, (r, (t, d)) in enumerate(zip(named, pts)):
        stage = f" ({r['stage']})" if r.get("stage") else ""
        d = round(d, 3) + 0.0  # no "-0.000"
        ax.scatter(t, d, marker=markers[i % len(markers)], color=colors[i % len(colors)], s=60, zorder=3, alpha=0.8,
                   edgecolors="black" if i in front else "none", linewidths=1.2,
                   label=f"{r['format']} {r['precision']}{stage}: {d:+.3f} dB, {t:.3g} ms")
    if len(front) > 1:
        fp = sorted(pts[i] for i in front)
        ax.plot([p[0] for p in fp], [p[1] for p in fp], "k--", lw=1, zorder=2, label="Pareto front (black edge)")
    elif front:  # one point dominates every other: say what its black edge means
        ax.scatter([], [], marker="o", facecolors="none", edgecolors="black", label="Pareto front: black edge")
    lows = [d for _, d in pts] + [0.0]
    if float_psnr is not None:
        ax.axhline(0.0, color="tab:green", lw=1, label=f"float model ({float_psnr:.2f} dB)")
    if float_psnr is not None and bicubic_psnr is not None:
        ax.axhline(bicubic_psnr - float_psnr, color="tab:gray", ls=":", lw=1.5,
                   label=f"bicubic ({bicubic_psnr - float_psnr:+.2f} dB)")
        lows.append(bicubic_psnr - float_psnr)
    lo, hi = min(lows), max(max(lows), 0.0)
    if hi - lo < MIN_SPAN_DB:
        lo = hi - MIN_SPAN_DB
    pad = 0.08 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    lat = [t for t, _ in pts]
    log = bool(lat) and min(lat) > 0 and max(lat) / min(lat) > LOG_LATENCY_RATIO
    if log:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 2, 5, 10, 20 ms, not 10^1
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel + (" (log scale)" if log else ""))
    what = "float model" if float_psnr is not None else "best artifact"
    ax.set_ylabel(f"PSNR-Y - {what} (dB), {set_name}")
    ax.grid(True, which="both", alpha=0.3)
    if named:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, ncol=2, frameon=False)
    return {"xscale": ax.get_xscale(), "ylim": [float(v) for v in ax.get_ylim()], "pareto": front}


def _worst_window(err: np.ndarray, side: int) -> tuple[int, int, int]:
    """``(y, x, side)`` of the window with the largest sum of |err| (first in raster order)."""
    side = min(side, *err.shape)
    s = np.pad(np.abs(err).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    box = s[side:, side:] - s[:-side, side:] - s[side:, :-side] + s[:-side, :-side]
    y, x = np.unravel_index(int(np.argmax(box)), box.shape)
    return int(y), int(x), side


def error_map_panels(fig, ax_full, ax_zoom, err: np.ndarray, title: str) -> dict:
    """Signed error map ``err`` (int8 - float, 8-bit Y levels, float (H, W)) on ``ax_full``
    and its :data:`ZOOM_PX` window with the largest |error| magnified on ``ax_zoom`` (nearest
    neighbour, one block per pixel). Diverging colour map ``RdBu_r`` centred on 0 with limits
    +-max(|err|, 1) on both panels and one colour bar in 8-bit levels; whole-level errors (both
    outputs rounded to 8 bits) get one colour per level and a tick per level. Returns
    ``{"vmax", "window": [y, x, side]}``."""
    import matplotlib
    from matplotlib.colors import BoundaryNorm
    from matplotlib.patches import Rectangle

    vmax = float(max(np.abs(err).max(), 1.0))
    if np.array_equal(err, np.round(err)) and vmax <= 16:  # whole 8-bit levels: one colour per level
        n = int(vmax)
        cmap = matplotlib.colormaps["RdBu_r"].resampled(2 * n + 1)
        kw = {"cmap": cmap, "norm": BoundaryNorm(np.arange(-n - 0.5, n + 1.0), cmap.N), "interpolation": "nearest"}
        vmax, ticks = float(n), list(range(-n, n + 1))
    else:
        kw, ticks = {"cmap": "RdBu_r", "vmin": -vmax, "vmax": vmax, "interpolation": "nearest"}, None
    ax_full.imshow(err, **kw)
    y, x, side = _worst_window(err, ZOOM_PX)
    ax_full.add_patch(Rectangle((x - 0.5, y - 0.5), side, side, fill=False, ec="black", lw=1.5))
    ax_full.set_title(title, fontsize=9)
    im = ax_zoom.imshow(err[y:y + side, x:x + side], **kw)
    ax_zoom.set_title(f"magnified: {side} x {side} px at (x={x}, y={y})", fontsize=9)
    for ax in (ax_full, ax_zoom):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=[ax_full, ax_zoom], shrink=0.8, ticks=ticks, label="int8 - float (8-bit Y levels; red: int8 brighter)")
    return {"vmax": vmax, "window": [y, x, side]}


# --------------------------------------------------------------------------- the page


def _first_psnr(ev: dict, set_name: str) -> float | None:
    row = (ev or {}).get(set_name)
    return None if row is None else row.get("psnr_y")


def render_report(run_dir: str | os.PathLike, photo: str | None = None, size: str = "360p", repeats: int = 5) -> dict:
    """Write ``deployment_report.{md,png,json}`` into ``run_dir``; returns the JSON.

    ``photo``: the error map's and emulation matrix's image: ``None`` the first image of the
    run's first evaluation set (:func:`evaluation_images`), else an image of that set by name
    (``NAME`` or ``SET/NAME``), else a scikit-image photograph by name.

    The PSNR numbers are those ``report.json`` holds for the run's first evaluation set; if the
    sets cannot be read any more (moved since the run), the pictures use scikit-image's
    validation photographs, with a warning.

    Raises:
        EdgesrError: missing/corrupt report.json or checkpoint, an unknown ``photo``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    report, module = _load_run(run_dir)
    psnr_set = next(iter(report.get("eval") or {}), "embedded")  # the scores: the run's first set, as recorded
    try:
        set_name, images = evaluation_images(run_dir, report)
    except EdgesrError as exc:  # the sets moved since the run: the scores stand, the pictures use the embedded photos
        warnings.warn(f"{exc}; the error map uses scikit-image's photographs instead", stacklevel=2)
        set_name, images = "embedded", embedded_images("val")
    if photo is None:
        photo_name, hr = f"{set_name}/{images[0][0]}", images[0][1]
    else:
        match = next(((n, im) for n, im in images if photo in (n, f"{set_name}/{n}")), None)
        photo_name, hr = (f"{set_name}/{match[0]}", match[1]) if match else (photo, embedded_image(photo))
    hr = modcrop(hr, report["scale"])
    float_psnr = _first_psnr(report.get("eval"), psnr_set)
    bicubic_psnr = _first_psnr(report.get("bicubic"), psnr_set)
    rows = []
    for a in report["artifacts"]:
        path = run_dir / a["path"]
        row = {"format": a["format"], "precision": a["precision"], "stage": a.get("stage"), "path": a["path"],
               "bytes": a.get("bytes"), "psnr_y": _first_psnr((a.get("validation") or {}).get("eval"), psnr_set),
               "latency_ms": None, "gmacs_per_frame": None, "achieved_gmacs_per_s": None, "peak_gmacs_per_s": None,
               "fraction_of_peak": None, "peak_source": None, "note": None}
        if path.suffix in (".tflite", ".onnx", ".lut") and path.exists():
            res = profile_artifact(path, (size,), (1,), repeats, 1)["results"][0]  # the peak edgesr profile uses
            row["latency_ms"] = res["median_ms"]
            if res["macs"]:  # networks; a lookup table has no MACs
                row.update(gmacs_per_frame=res["macs"] / 1e9, achieved_gmacs_per_s=res["achieved_macs_per_s"] / 1e9,
                           peak_gmacs_per_s=res["peak_macs_per_s"] / 1e9, fraction_of_peak=res["fraction_of_peak"],
                           peak_source=res["peak_source"])
            elif path.suffix == ".lut":
                row["note"] = "lookup table: no MACs"
        elif not path.exists():
            row["note"] = "artifact missing"
        else:
            row["note"] = {".mlpackage": "no latency here (Core ML needs a Mac)",
                           ".pt": "the float reference (PyTorch checkpoint): not timed"}.get(path.suffix, "not timed here")
        rows.append(row)
    int8 = next((run_dir / a["path"] for a in report["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8"
                 and (run_dir / a["path"]).exists()), None)
    matrix = emulation_matrix(int8, module, [(photo_name, hr)]) if int8 is not None else {}
    if int8 is None:  # a lookup-table run: its (fine-tuned, else baked) table against the trained network
        luts = [a for a in report["artifacts"] if a["format"] == "lut" and (run_dir / a["path"]).exists()]
        luts.sort(key=lambda a: a.get("stage") != "finetuned")
        int8 = run_dir / luts[0]["path"] if luts else None

    fig = plt.figure(figsize=(16, 6.2))
    grid = fig.add_gridspec(1, 3, width_ratios=[1.45, 1, 1])
    ax_plot, ax_full, ax_zoom = (fig.add_subplot(grid[0, i]) for i in range(3))
    plot = quality_latency_plot(ax_plot, rows, float_psnr, bicubic_psnr,
                                f"median latency, {size} output, 1 thread (ms)", psnr_set)
    ax_plot.set_title(f"{report['model']} x{report['scale']}: quality vs latency", fontsize=10)
    err_stats = None
    if int8 is not None:
        lr = make_lr(hr, report["scale"])
        f = output_y(run_upscaler(TorchUpscaler(module), lr), module.contract, lr.ndim == 2)
        q = output_y(run_upscaler(open_artifact(int8), lr), module.contract, lr.ndim == 2)
        err = q - f
        panels = error_map_panels(fig, ax_full, ax_zoom, err, f"int8 - float on {photo_name} ({int8.name})")
        err_stats = {"artifact": int8.name, "image": photo_name, "set": set_name, "shape_hw": list(err.shape), "max_abs": float(np.abs(err).max()),
                     "mean": float(err.mean()), "mean_abs": float(np.abs(err).mean()),
                     "pixels_differing": int((err != 0).sum()), **panels}
    else:
        ax_full.text(0.5, 0.5, "no int8 TFLite or LUT artifact in this run", ha="center")
        ax_full.axis("off")
        ax_zoom.axis("off")
    with atomic_path(run_dir / "deployment_report.png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    named = [r for r in rows if r["latency_ms"] is not None and r["psnr_y"] is not None]
    out = {"model": report["model"], "scale": report["scale"], "size": size, "set": psnr_set,
           "float_psnr_y": float_psnr, "bicubic_psnr_y": bicubic_psnr, "artifacts": rows,
           "pareto": [named[i]["path"] for i in sorted(plot["pareto"])], "plot": plot, "error_map": err_stats,
           "emulation": matrix}
    write_text_atomic(run_dir / "deployment_report.json", json.dumps(out, indent=2) + "\n")
    write_text_atomic(run_dir / "deployment_report.md", _markdown(out))
    return out


def _fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def _markdown(r: dict) -> str:
    ref = r["float_psnr_y"]
    lines = [f"# Deployment report: {r['model']} x{r['scale']}", "",
             "![quality vs latency and the int8 error map](deployment_report.png)", "",
             (f"PSNR-Y on {r['set']} (float model {_fmt(ref)} dB, bicubic {_fmt(r['bicubic_psnr_y'])} dB). Latency: median "
              f"over timed runs after warm-up, {r['size']} output frame, 1 thread, this machine. GMAC/s against the peak "
              "`edgesr profile` measures: for TFLite, XNNPACK's own convolutions in the artifact's arithmetic, run "
              "interleaved with it (so the fraction cannot exceed 1); ONNX against a float32 NumPy matmul."), "",
             "| format | precision | bytes | PSNR-Y (dB) | vs float (dB) | latency (ms) | GMAC/frame | GMAC/s | fraction of peak | Pareto | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in r["artifacts"]:
        drop = None if a["psnr_y"] is None or ref is None else round(a["psnr_y"] - ref, 3) + 0.0  # no "-0.000"
        label = a["format"] + (f" ({a['stage']})" if a.get("stage") else "")
        lines.append(f"| {label} | {a['precision']} | {a['bytes'] or '-'} | {_fmt(a['psnr_y'])} | {_fmt(drop, '+.3f')} | "
                     f"{_fmt(a['latency_ms'])} | {_fmt(a['gmacs_per_frame'], '.3f')} | {_fmt(a['achieved_gmacs_per_s'], '.1f')} | "
                     f"{_fmt(a['fraction_of_peak'], '.2f')} | {'yes' if a['path'] in r['pareto'] else ''} | {a['note'] or ''} |")
    if r["error_map"]:
        e = r["error_map"]
        lines += ["", (f"Error map int8 - float ({e['artifact']}) on {e['image']} ({e['shape_hw'][1]}x{e['shape_hw'][0]} px): max |error| "
                       f"{e['max_abs']:.0f}, mean {e['mean']:+.4f} (signed), mean |error| {e['mean_abs']:.4f} 8-bit Y levels; "
                       f"{e['pixels_differing']} pixels differ.")]
    if r["emulation"]:
        photo = r["error_map"]["image"] if r["error_map"] else "-"
        lines += ["", f"## Emulation matrix (int8 TFLite, {photo})", "",
                  "| engine | PSNR-Y vs HR (dB) | SSIM-Y | PSNR vs float reference (dB) | max abs err vs float |", "|---|---|---|---|---|"]
        for k, v in r["emulation"].items():
            if "skipped" in v:
                lines.append(f"| {k} | skipped: {v['skipped']} | | | |")
            else:
                lines.append(f"| {k} | {v['psnr_y']:.3f} | {v['ssim_y']:.4f} | {_fmt(v['psnr_vs_reference_db'], '.2f')} | "
                             f"{_fmt(v['max_abs_err'], '.3g')} |")
    return "\n".join(lines) + "\n"
