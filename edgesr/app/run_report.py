"""The run report of ``edgesr run``: ``report.md`` (results table, and the emulation matrix
of every artifact that recorded one) and ``report.png`` (crops of a photograph from the run's
evaluation sets: bicubic, float, int8, HR), written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesr.app.artifacts import open_artifact
from edgesr.app.reporting import detail_window, evaluation_images
from edgesr.core.atomic import atomic_path, write_text_atomic
from edgesr.core.data import embedded_image
from edgesr.core.evaluate import TorchUpscaler, upscale_photo
from edgesr.core.imresize import make_lr, modcrop
from edgesr.core.models import create


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def results_table(report: dict) -> str:
    """Markdown table: one row per artifact with its validation numbers per set."""
    sets = list(report["eval"])
    head = "| format | precision | bytes | max abs err vs float | PSNR vs float (dB) | " + " | ".join(f"{s} PSNR / SSIM" for s in sets) + " | status |"
    rows = [head, "|" + "---|" * (6 + len(sets))]
    rows.append("| bicubic | - | - | - | - | " + " | ".join(f"{report['bicubic'][s]['psnr_y']:.2f} / {report['bicubic'][s]['ssim_y']:.4f}" for s in sets) + " | baseline |")
    for a in report["artifacts"]:
        v = a["validation"]
        ev = v.get("eval") or {}
        cells = [f"{ev[s]['psnr_y']:.2f} / {ev[s]['ssim_y']:.4f}" if s in ev else "n/a" for s in sets]
        failed = ", ".join(v.get("failed_checks") or [])
        status = (f"skipped: {v['skipped']}" if v.get("skipped") else
                  "ok" if v.get("passed") else f"**FAILED**{f' ({failed})' if failed else ''}")
        label = a["format"] + (f" ({a['stage']})" if a.get("stage") else "")
        rows.append(f"| {label} | {a['precision']} | {a['bytes']:,} | {_fmt(v.get('max_abs_err'), '.2e')} | "
                    f"{_fmt(v.get('psnr_vs_reference_db'), '.2f')} | " + " | ".join(cells) + f" | {status} |")
    return "\n".join(rows)


def emulation_table(report: dict) -> str:
    """Markdown table of the emulation matrices recorded in the artifacts' validations (empty
    string when none is): one row per artifact and engine (:func:`edgesr.app.validation.emulation_matrix`)."""
    rows, crop = [], None
    for a in report["artifacts"]:
        v = a.get("validation") or {}
        crop = crop or (v.get("emulation_images") or {}).get("crop_px")
        for engine, r in (v.get("emulation") or {}).items():
            head = f"| {a['format']} | {a['precision']} | {engine} | "
            if "skipped" in r:
                rows.append(head + f"skipped: {r['skipped']} | | | | |")
            else:
                rows.append(head + f"{r['psnr_y']:.2f} | {r['ssim_y']:.4f} | {_fmt(r['psnr_vs_reference_db'], '.2f')} | "
                            f"{_fmt(r['max_abs_err'], '.2e')} | {_fmt(r.get('max_abs_err_vs_xnnpack'), '.2e')} |")
    if not rows:
        return ""
    where = f"{crop} px centre crops of the evaluation photographs" if crop else "the evaluation photographs"
    return (f"Emulation matrix ({where}): each artifact as each phone engine would run it, scored through the same "
            "path (PSNR / SSIM on Y vs HR, PSNR and max abs error vs the float reference's output, max abs error "
            "vs the artifact's XNNPACK output: what the on-device golden tolerances are derived from).\n\n"
            "| format | precision | engine | PSNR-Y (dB) | SSIM-Y | PSNR vs float (dB) | max abs err vs float | "
            "max abs err vs XNNPACK |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))


def _is_lookup_table(artifacts: list[dict]) -> bool:
    """The run deploys lookup tables (every artifact a ``.lut``): no multiply-accumulates."""
    return bool(artifacts) and all(a["format"] == "lut" for a in artifacts)


def complexity_line(report: dict, artifacts: list[dict]) -> str:
    """The sentence on size and cost: parameters, and GMACs per 720p frame for networks only
    (a lookup table reads and interpolates table entries; it has no MACs to count)."""
    head = f"{report['params']:,} parameters as trained, {report['params_deploy']:,} deployed"
    if _is_lookup_table(artifacts):
        return head + "; deployed as lookup tables (table reads and interpolation, no multiply-accumulates)."
    return head + f", {report['macs_per_frame_720p'] / 1e9:.3f} GMACs per 1280x720 output frame."


def crops_figure(path: Path, reference_module, artifacts: list[dict], scale: int,
                 images: list[tuple[str, np.ndarray]] | None = None, set_name: str = "embedded") -> str:
    """Side-by-side crops: bicubic, float, int8 (if any), HR; returns the image's name.

    The crop is the most textured 192 x 256 HR window (:func:`edgesr.app.reporting.detail_window`,
    modcropped to ``scale``) of the first of ``images`` (``[(name, uint8 HR)]``: the run's
    evaluation set ``set_name``); without images, scikit-image's 'chelsea'.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, img = images[0] if images else ("chelsea", embedded_image("chelsea"))
    h, w = 192 - 192 % scale, 256 - 256 % scale
    y, x = detail_window(img, h, w, multiple=scale)
    hr = modcrop(img[y:y + h, x:x + w], scale)
    lr = make_lr(hr, scale)
    panels = [("bicubic", upscale_photo(TorchUpscaler(create("bicubic", scale=scale)), lr)),
              ("float (PyTorch)", upscale_photo(TorchUpscaler(reference_module), lr))]
    int8 = next((a for a in artifacts if a["precision"] == "int8" and a["format"] in ("tflite", "lut")), None)
    if int8 is not None:
        panels.append((f"int8 ({int8['format']})", upscale_photo(open_artifact(int8["path"]), lr)))
    panels.append(("HR", hr))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.3))
    cmap = "gray" if hr.ndim == 2 else None
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(im, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    label = f"{set_name}/{name}"
    fig.suptitle(f"{label}, {w}x{h} px crop at (x={x}, y={y}), x{scale}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return label


def write_report(out_dir: Path, report: dict, reference_module, artifacts: list[dict],
                 eval_sets: dict | None = None) -> None:
    """Write ``report.md`` and ``report.png`` in ``out_dir``; the crops come from the first of
    ``eval_sets`` (``{set: [(name, uint8 HR)]}``, the run's evaluation sets; None: read from
    ``out_dir/run.json`` by :func:`edgesr.app.reporting.evaluation_images`)."""
    if eval_sets:
        set_name, images = next(iter(eval_sets.items()))
    else:
        set_name, images = evaluation_images(out_dir, report)
    label = crops_figure(out_dir / "report.png", reference_module, artifacts, report["scale"], images, set_name)
    text = (f"# edgesr run: {report['model']} x{report['scale']}\n\n"
            f"{complexity_line(report, artifacts)}\n\n"
            "PSNR (dB) / SSIM on BT.601 Y, border = scale; every artifact run by its own runtime through "
            "edgesr's one evaluation path and compared with the float PyTorch reference.\n\n"
            f"{results_table(report)}\n\n![crops of {label}: bicubic, float, int8, HR](report.png)\n")
    if report.get("warnings"):
        text += "\n## Warnings\n\n" + "".join(f"- **{w}**\n" for w in report["warnings"])
    emulation = emulation_table(report)
    if emulation:
        text += f"\n{emulation}\n"
    write_text_atomic(out_dir / "report.md", text)
