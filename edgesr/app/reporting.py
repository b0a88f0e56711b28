"""Deployment report of a run folder.

``render_report(run_dir)`` reads ``RUN_DIR/report.json`` and ``RUN_DIR/checkpoints/deploy.pt``
and writes ``RUN_DIR/deployment_report.{md,png,json}``: quality vs latency (Pareto front) of
every artifact, the error map |int8 - float| on a real photograph, and the emulation matrix
of the int8 TFLite artifact on that photograph.

``emulation_matrix`` (what each phone engine would output: ``cpu_reference``, ``xnnpack``,
``gpu_fp16``, ``npu_int8``) lives in :mod:`edgesr.app.validation`, scored through
:mod:`edgesr.core.evaluate` like every other number; it is imported here for the report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgesr.app.artifacts import open_artifact
from edgesr.app.profiling import measure_peak_macs, profile_artifact
from edgesr.app.validation import emulation_matrix
from edgesr.core.atomic import atomic_path, write_text_atomic
from edgesr.core.checkpoint import load_checkpoint
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import TorchUpscaler, output_y, run_upscaler
from edgesr.core.imresize import make_lr, modcrop

__all__ = ["emulation_matrix", "render_report"]


# --------------------------------------------------------------------------- the report page


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

    module, _ = load_checkpoint(ckpt, deploy=True)
    return report, module


def render_report(run_dir: str | os.PathLike, photo: str = "chelsea", size: str = "360p", repeats: int = 5) -> dict:
    """Write ``deployment_report.{md,png,json}`` into ``run_dir``; returns the JSON.

    Raises:
        EdgesrError: missing/corrupt report.json or checkpoint.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    run_dir = Path(run_dir)
    report, module = _load_run(run_dir)
    peak = measure_peak_macs()
    rows = []
    for a in report["artifacts"]:
        path = run_dir / a["path"]
        ev = (a.get("validation") or {}).get("eval") or {}
        first = next(iter(ev.values()), {}) if ev else {}
        row = {"format": a["format"], "precision": a["precision"], "path": a["path"], "bytes": a.get("bytes"),
               "psnr_y": first.get("psnr_y"), "latency_ms": None, "note": None}
        if path.suffix in (".tflite", ".onnx", ".lut") and path.exists():
            prof = profile_artifact(path, (size,), (1,), repeats, 1, peak_macs=peak)
            row["latency_ms"] = prof["results"][0]["median_ms"]
        else:
            row["note"] = "no latency here (Core ML needs a Mac)" if path.suffix == ".mlpackage" else "artifact missing"
        rows.append(row)
    int8 = next((run_dir / a["path"] for a in report["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8"
                 and (run_dir / a["path"]).exists()), None)
    hr = modcrop(embedded_image(photo), report["scale"])
    images = [(photo, hr)]
    matrix = emulation_matrix(int8, module, images) if int8 is not None else {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    pts = [(r["latency_ms"], r["psnr_y"]) for r in rows if r["latency_ms"] is not None and r["psnr_y"] is not None]
    named = [r for r in rows if r["latency_ms"] is not None and r["psnr_y"] is not None]
    front = set(_pareto(pts))
    for i, (r, (t, q)) in enumerate(zip(named, pts)):
        axes[0].scatter(t, q, c="tab:red" if i in front else "tab:gray", s=40)
        axes[0].annotate(f"{r['format']} {r['precision']}", (t, q), fontsize=8, xytext=(4, 4), textcoords="offset points")
    if front:
        fp = sorted(pts[i] for i in front)
        axes[0].plot([p[0] for p in fp], [p[1] for p in fp], "r--", lw=1, label="Pareto front")
        axes[0].legend()
    axes[0].set_xlabel(f"median latency, {size} output, 1 thread (ms)")
    axes[0].set_ylabel("PSNR-Y (dB)")
    axes[0].set_title(f"{report['model']} x{report['scale']}: quality vs latency")
    err_stats = None
    if int8 is not None:
        lr = make_lr(hr, report["scale"])
        f = output_y(run_upscaler(TorchUpscaler(module), lr), module.contract, lr.ndim == 2)
        q = output_y(run_upscaler(open_artifact(int8), lr), module.contract, lr.ndim == 2)
        err = np.abs(q - f)
        err_stats = {"photo": photo, "max": float(err.max()), "mean": float(err.mean()), "pixels_differing": int((err > 0).sum())}
        im = axes[1].imshow(err, cmap="magma", vmin=0, vmax=max(err.max(), 1))
        fig.colorbar(im, ax=axes[1], label="|int8 - float| (8-bit Y levels)")
        axes[1].set_title(f"error map on '{photo}' ({int8.name})")
    else:
        axes[1].text(0.5, 0.5, "no int8 TFLite artifact in this run", ha="center")
    axes[1].axis("off")
    fig.tight_layout()
    with atomic_path(run_dir / "deployment_report.png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    out = {"model": report["model"], "scale": report["scale"], "size": size, "peak_macs_per_s": peak,
           "artifacts": rows, "pareto": [named[i]["path"] for i in sorted(front)], "error_map": err_stats, "emulation": matrix}
    write_text_atomic(run_dir / "deployment_report.json", json.dumps(out, indent=2) + "\n")
    write_text_atomic(run_dir / "deployment_report.md", _markdown(out))
    return out


def _fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def _markdown(r: dict) -> str:
    lines = [f"# Deployment report: {r['model']} x{r['scale']}", "", "![quality vs latency and error map](deployment_report.png)", "",
             (f"Latency: median over timed runs after warm-up, {r['size']} output frame, 1 thread, this machine "
              f"(peak {r['peak_macs_per_s'] / 1e9:.1f} GMAC/s by a float32 matmul)."), "",
             "| format | precision | bytes | PSNR-Y (dB) | latency (ms) | Pareto | note |", "|---|---|---|---|---|---|---|"]
    for a in r["artifacts"]:
        lines.append(f"| {a['format']} | {a['precision']} | {a['bytes'] or '-'} | {_fmt(a['psnr_y'])} | {_fmt(a['latency_ms'])} | "
                     f"{'yes' if a['path'] in r['pareto'] else ''} | {a['note'] or ''} |")
    if r["error_map"]:
        e = r["error_map"]
        lines += ["", (f"Error map |int8 - float| on '{e['photo']}': max {e['max']:.0f}, mean {e['mean']:.3f} 8-bit levels, "
                       f"{e['pixels_differing']} pixels differ.")]
    if r["emulation"]:
        lines += ["", f"## Emulation matrix (int8 TFLite, '{r['error_map']['photo'] if r['error_map'] else '-'}')", "",
                  "| engine | PSNR-Y vs HR (dB) | SSIM-Y | PSNR vs float reference (dB) | max abs err vs float |", "|---|---|---|---|---|"]
        for k, v in r["emulation"].items():
            if "skipped" in v:
                lines.append(f"| {k} | skipped: {v['skipped']} | | | |")
            else:
                lines.append(f"| {k} | {v['psnr_y']:.3f} | {v['ssim_y']:.4f} | {_fmt(v['psnr_vs_reference_db'], '.2f')} | "
                             f"{_fmt(v['max_abs_err'], '.3g')} |")
    return "\n".join(lines) + "\n"
