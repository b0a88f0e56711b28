"""eSR-TM/TR/CNN int8: one head conv with MUL + SUM against the deploy form (one conv per channel
group, and the per-pixel dot product as BATCH_MATMUL), in latency and in accuracy.

    python bench/esr_head.py [--models esr_tm_s2_k7_c16,esr_tr_s2_k7_c13,esr_cnn_s2_c8_d3_s9] [--repeats 15]
                             [--trained runs/quant] [--data-root ../shared/data]

For each model (seeded weights; latency does not depend on them): the int8 TFLite export of the
training form (its head conv makes value, key and query channels in one tensor; the head is
MUL then SUM) and of the deploy form (:class:`edgesr.core.models.esr.ESRDeploy`), both at min/max
ranges on the embedded photos, run by LiteRT's default interpreter (XNNPACK) on a 640x360 int8
input, 1 thread, interleaved, median of ``--repeats``.

Accuracy (with ``--trained``, the folder where ``python bench/quant.py`` keeps its T91-trained
models): for each of those models, three int8 graphs of the same weights, each through the
post-training recipe (``recipe="ptq"``: CLE, range search, AdaRound, bias correction, each kept
where it helps on held-out T91 crops, the calibration and validation crops of bench/quant.py),
scored as the Set5 x2 drop of the int8 simulation (within one LSB per tensor of LiteRT) below the float model:
the one head conv with MUL + SUM, the split head with MUL + SUM, and the deploy form.
Writes docs/esr_head.md (and .json); the CPU and load are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesr.converters.export import export_tflite  # noqa: E402
from edgesr.converters.partitions import xnnpack_partitions  # noqa: E402
from edgesr.core.checkpoint import read_checkpoint  # noqa: E402
from edgesr.core.data import benchmark_set, eval_pairs, load_folder  # noqa: E402
from edgesr.core.evaluate import TorchUpscaler, calibration_patches, evaluate  # noqa: E402
from edgesr.core.models import create  # noqa: E402
from edgesr.core.models.esr import ESRDeploy  # noqa: E402
from edgesr.quantization import fake_quant_module, quantize_module  # noqa: E402
from edgesr.quantization.qat import hr_patches  # noqa: E402
from edgesr.quantization.recipe import run_recipe, split_photos  # noqa: E402
from lut import cpu_name  # noqa: E402  (bench/lut.py: the CPU model from /proc/cpuinfo)


class SplitMulSum(ESRDeploy):
    """The deploy form's split convs with the head's MUL then SUM (the int8 products rounded one by one)."""

    def forward(self, x):
        h = x if self.trunk is None else self.trunk(x)
        value = torch.pixel_shuffle(self.value(h), self.scale)
        key = torch.pixel_shuffle(self.key(h), self.scale)
        logits = (torch.pixel_shuffle(self.query(h), self.scale) * key if self.query is not None
                  else key * key if self.kind == "CNN" else key)
        return torch.clamp(torch.sum(value * torch.softmax(logits, dim=1), dim=1, keepdim=True), 0.0, 1.0)


def accuracy(trained: Path, data_root: Path, name: str) -> dict | None:
    """Set5 x2 int8 drops (dB) of the three forms of bench/quant.py's trained ``name``, or None."""
    done = trained / f"{name}_x2" / "steps.json"
    if not done.exists():
        return None
    net = create(name, scale=2)
    net.load_state_dict(read_checkpoint(json.loads(done.read_text())["ckpt"])["state_dict"])  # the training form
    net.eval()
    deploy = net.collapse().eval()
    split = SplitMulSum(deploy.kind, deploy.scale, deploy.channels,
                        {k: getattr(deploy, k) for k in ("value", "query", "key") if getattr(deploy, k) is not None},
                        deploy.trunk, deploy.receptive_field).eval()
    set5 = eval_pairs(benchmark_set(data_root, "Set5"), 2)
    fit, held_out = split_photos(load_folder(data_root / "T91" / "HR"))
    calib = calibration_patches(fit, net.contract, 48, 64, seed=0)  # bench/quant.py's crops
    hr = hr_patches(fit, net.contract, 96, 256, seed=1)
    val = hr_patches(held_out, net.contract, 96, 48, seed=2)
    out = {"float_psnr": evaluate(TorchUpscaler(net), set5)["psnr_y"]}
    for form, module in (("one head conv, MUL + SUM", net), ("split convs, MUL + SUM", split),
                         ("deploy form: split convs, BATCH_MATMUL", deploy)):
        res = run_recipe(module, calib, hr, val, recipe="ptq")
        sim = fake_quant_module(res.module, res.ranges).eval()
        out[form] = out["float_psnr"] - evaluate(TorchUpscaler(sim), set5)["psnr_y"]
        print(name, form, round(out[form], 3), res.techniques(), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="esr_tm_s2_k7_c16,esr_tr_s2_k7_c13,esr_cnn_s2_c8_d3_s9")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "esr_head.md")
    p.add_argument("--trained", type=Path, default=None, help="bench/quant.py's output folder (accuracy rows)")
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(0).integers(-128, 128, (1, 360, 640, 1)).astype(np.int8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            net = create(name, scale=2).eval()
            forms = {"one head conv, MUL + SUM": net, "deploy form, BATCH_MATMUL": net.collapse().eval()}
            interpreters, parts = {}, {}
            for k, (form, module) in enumerate(forms.items()):
                path = Path(tmp) / f"{name}_{k}.tflite"
                export_tflite(quantize_module(module, None, count=16), path, "int8")
                it = Interpreter(model_path=str(path), num_threads=1)
                d = it.get_input_details()[0]
                it.resize_tensor_input(d["index"], x.shape)
                it.allocate_tensors()
                it.set_tensor(d["index"], x)
                it.invoke()
                interpreters[form] = it
                parts[form] = xnnpack_partitions(path, list(x.shape))
            times = {form: [] for form in forms}
            for _ in range(args.repeats):
                for form, it in interpreters.items():
                    t0 = time.perf_counter()
                    it.invoke()
                    times[form].append(time.perf_counter() - t0)
            for form in forms:
                rows.append({"model": name, "form": form, "median_ms": 1000 * float(np.median(times[form])),
                             "partitions": parts[form]["partitions"], "ops_outside": parts[form]["ops_outside"]})
                print(rows[-1], flush=True)
    accuracy_rows = {}
    if args.trained is not None:
        for name in ("eSR-TM_s2_K7_C16", "eSR-TR_s2_K7_C13", "eSR-CNN_s2_C8_D3_S9"):
            acc = accuracy(args.trained, args.data_root, name)
            if acc is not None:
                accuracy_rows[name] = acc
    record = {"cpu": cpu_name(), "load_average": os.getloadavg(), "repeats": args.repeats, "rows": rows,
              "accuracy": accuracy_rows,
              "command": ("python bench/esr_head.py " + " ".join(sys.argv[1:] if argv is None else argv)).strip()}
    args.doc.with_suffix(".json").write_text(json.dumps(record, indent=1))
    lines = ["# eSR int8 heads: latency of the deploy form", "",
             f"Generated by `{record['command']}` (`bench/esr_head.py`; do not edit by hand). CPU: {record['cpu']}; "
             f"load average during the run {', '.join(f'{v:.1f}' for v in record['load_average'])} (a shared 2-core "
             "machine: compare rows of one model, measured interleaved, not absolute times). LiteRT default "
             "interpreter (XNNPACK), int8 640x360 -> x2, 1 thread.", "",
             "| model | int8 graph | median ms | XNNPACK partitions | ops on builtin kernels |", "|---|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['form']} | {r['median_ms']:.1f} | {r['partitions']} | "
                     f"{', '.join(sorted(set(r['ops_outside']))) or 'none'} |")
    lines += ["", "The deploy form gives value, key and query their own int8 scales and accumulates the per-pixel "
              "dot product in int32 (`edgesr.core.ops.channel_dot`). LiteRT 2.3's XNNPACK takes no BATCH_MATMUL, "
              "EXPAND_DIMS or SQUEEZE of this form, so the head after the depth-to-space runs on builtin kernels.", ""]
    if accuracy_rows:
        forms = [k for k in next(iter(accuracy_rows.values())) if k != "float_psnr"]
        lines += ["## Accuracy", "",
                  f"Set5 x2 int8 drop (dB) after the post-training recipe, models trained by `python bench/quant.py` "
                  f"(`--trained {args.trained}`; their train steps are in docs/quant.md):", "",
                  "| model | float Set5 | " + " | ".join(forms) + " |", "|---|---:|" + "---:|" * len(forms)]
        for name, acc in accuracy_rows.items():
            lines.append(f"| {name} | {acc['float_psnr']:.2f} | " + " | ".join(f"{acc[f]:.3f}" for f in forms) + " |")
        lines.append("")
    args.doc.write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
