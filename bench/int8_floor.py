"""Where an int8 model's error comes from: each part of the int8 arithmetic on its own.

    python bench/int8_floor.py RUN_DIR [--data-root ../shared/data] [--sets Set5] [--doc docs/int8_floor.md]

``RUN_DIR`` is an ``edgesr run`` output folder: ``checkpoints/deploy.pt`` (the float model the
run's report compares against) and ``checkpoints/int8.pt`` (the quantized checkpoint its int8
and W8A8 exports are made from). The int8 simulation
(:func:`edgesr.quantization.fake_quant_module`, which predicts LiteRT's int8 output to an
LSB per tensor) is scored through the one evaluation path with parts of its arithmetic switched off:

* ``int8``: everything, the exported model;
* ``weights only``: per-channel int8 weights, every activation float;
* ``input only``: the int8 input tensor (the contract's [0, 1] at scale 1/255), weights float;
* ``input and weights``: the int8 input and int8 weights, every other activation float;
* ``all but the input``: int8 weights and every activation except the input;
* ``residual input float``: everything, except that the residual ``x`` added to the output
  (SESR's ``last + x``) is the float input (the convs still read the int8 one), for models
  with such a residual;
* one row per activation tensor: that tensor alone int8, weights float.

Drops are dB of PSNR (Y, BT.601, border crop = scale) below the float deploy model on each set.
Writes ``DOC`` (markdown) and ``DOC`` with ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgesr.quantization.fake_quant as fq  # noqa: E402
from edgesr.core.checkpoint import load_checkpoint  # noqa: E402
from edgesr.core.data import resolve_eval_sets  # noqa: E402
from edgesr.core.evaluate import TorchUpscaler, evaluate_sets  # noqa: E402
from edgesr.quantization.api import read_quantized  # noqa: E402


def _float_tensor(x, observe=True):
    return x


def simulate(module, ranges, *, int8_tensors, int8_weights: bool, float_residual: bool = False):
    """The int8 simulation with only ``int8_tensors`` (names, or ``"all"``) quantized."""
    sim = fq.fake_quant_module(module, ranges).eval()
    for name, q in sim.quantizers.items():
        if int8_tensors != "all" and name not in int8_tensors:
            q.forward = _float_tensor
    if not int8_weights:
        for mod in sim.modules():
            if isinstance(mod, fq.QuantConv2d):
                mod.forward = mod.conv.forward
            elif isinstance(mod, fq.QuantPReLU):
                mod.forward = mod.prelu.forward
    if float_residual:
        graph = sim.graph
        x = next(n for n in graph.nodes if n.op == "placeholder")
        fq_x = next(n for n in graph.nodes if n.op == "call_module" and n.target == f"fq_{x.name}")
        convs = {n for n in graph.nodes if n.op == "call_module" and isinstance(sim.get_submodule(n.target), fq.QuantConv2d)}
        for user in list(fq_x.users):
            if user not in convs:
                user.replace_input_with(fq_x, x)
        sim.recompile()
    return sim


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--sets", default="Set5")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "int8_floor.md")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    deploy, _ = load_checkpoint(args.run_dir / "checkpoints" / "deploy.pt", deploy=True)
    q = read_quantized(args.run_dir / "checkpoints" / "int8.pt")
    sets = resolve_eval_sets(args.data_root, args.sets.split(","))
    ref = {k: v["psnr_y"] for k, v in evaluate_sets(TorchUpscaler(deploy.eval()), sets).items()}

    def drops(**kw) -> dict:
        got = evaluate_sets(TorchUpscaler(simulate(q.module, q.activation_ranges, **kw)), sets)
        return {k: round(ref[k] - v["psnr_y"], 4) for k, v in got.items()}

    names = list(fq.fake_quant_module(q.module, q.activation_ranges).quantizers)
    inputs = [n for n in names if n == "x"] or names[:1]
    rows = {
        "int8": drops(int8_tensors="all", int8_weights=True),
        "weights only": drops(int8_tensors=(), int8_weights=True),
        "input only": drops(int8_tensors=inputs, int8_weights=False),
        "input and weights": drops(int8_tensors=inputs, int8_weights=True),
        "all but the input": drops(int8_tensors=[n for n in names if n not in inputs], int8_weights=True),
    }
    has_residual = any(u.op != "call_module" for u in next(
        n for n in fq.fake_quant_module(q.module, q.activation_ranges).graph.nodes if n.target == f"fq_{inputs[0]}").users)
    if has_residual:
        rows["residual input float"] = drops(int8_tensors="all", int8_weights=True, float_residual=True)
    per_tensor = {n: drops(int8_tensors=[n], int8_weights=False) for n in names if n not in inputs}
    record = {"run_dir": str(args.run_dir), "model": q.module.registry_name if hasattr(q.module, "registry_name") else "",
              "float_psnr": ref, "recipe": (q.settings.get("recipe") or {}).get("techniques"), "rows": rows,
              "per_tensor": per_tensor, "command": "python bench/int8_floor.py " + " ".join(argv or sys.argv[1:])}
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.with_suffix(".json").write_text(json.dumps(record, indent=1))
    set_names = list(ref)
    lines = [
        "# Where the int8 error comes from",
        "",
        f"Generated by `{record['command']}` (`bench/int8_floor.py`; do not edit by hand). The run folder came from "
        "the README's headline job, `edgesr run --model sesr_m5 --scale 2 --data ../shared/data/T91/HR "
        "--data-root ../shared/data --sets Set5 -o RUN_DIR`.",
        "",
        f"Float deploy model: {', '.join(f'{k} {v:.3f} dB' for k, v in ref.items())}; int8 recipe kept: "
        f"{', '.join(record['recipe'] or ['-'])}. Each row is the int8 simulation (within one LSB per "
        "tensor of LiteRT when everything is int8) with only part of the int8 arithmetic switched on; drops are dB below the float model.",
        "",
        "| int8 parts | " + " | ".join(set_names) + " |",
        "|---|" + "---|" * len(set_names),
        *[f"| {k} | " + " | ".join(f"{v[s]:.3f}" for s in set_names) + " |" for k, v in rows.items()],
        "",
        "One activation tensor int8 at a time (weights float):",
        "",
        "| tensor | " + " | ".join(set_names) + " |",
        "|---|" + "---|" * len(set_names),
        *[f"| `{k}` | " + " | ".join(f"{v[s]:.3f}" for s in set_names) + " |" for k, v in per_tensor.items()],
        "",
        "Reading: the model reads BT.601 Y computed in float64 from the RGB photo (the evaluation protocol, "
        "`edgesr.core.evaluate`), and an int8 input holds it on a 1/255 grid, so `input only` is a floor no "
        "choice of weights or ranges moves. `residual input float` shows how much of it enters through the "
        "residual `last + x` alone, which adds the rounded input straight to the output.",
        "",
        *[f"On {k}: the int8 input alone costs {rows['input only'][k]:.3f} dB, the int8 input and the int8 "
          f"weights together (every other tensor float) {rows['input and weights'][k]:.3f} dB, and each activation "
          f"tensor alone {min(v[k] for v in per_tensor.values()):.3f}-{max(v[k] for v in per_tensor.values()):.3f} dB."
          for k in set_names],
        "",
    ]
    args.doc.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
