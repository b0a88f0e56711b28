"""Does a fixed input shape change what LiteRT's XNNPACK delegate takes? Prints one line per export.

    python bench/fixed_shapes_xnnpack.py [--models sesr_m5_relu,sesr_m5,esr_max] [--size 360x640]

For each model (seeded random weights, collapsed, x2): TFLite fp32 and int8 exports with dynamic
H x W and with the fixed ``--size`` (:func:`edgesr.converters.export.export`, ``input_sizes``;
int8 ranges min/max-calibrated on the embedded photos), each loaded on LiteRT's default
interpreter at that size and its XNNPACK partitions read back from the runtime
(:func:`edgesr.converters.partitions.xnnpack_partitions`). Weights do not change which ops the
delegate takes, only the int8 scales could (none of these graphs is near XNNPACK's scale-ratio
limits), so random weights answer the question.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from edgesr.converters.export import export
from edgesr.converters.partitions import xnnpack_partitions
from edgesr.core.models import create


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="sesr_m5_relu,sesr_m5,esr_max")
    ap.add_argument("--size", default="360x640", help="LR input size HxW")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = create(name, scale=2)
            model = (model.collapse() if hasattr(model, "collapse") else model).eval()
            for tag, sizes in (("dynamic", None), (f"fixed {h}x{w}", [(h, w)])):
                for art in export(model, f"{tmp}/{tag[:5]}", formats=("tflite",), precisions=("fp32", "int8"),
                                  stem=name, input_sizes=sizes):
                    rep = xnnpack_partitions(art["path"], input_shape=[1, h, w, model.contract.channels])
                    print(f"{name:14s} {tag:15s} {art['precision']:5s} partitions {rep['partitions']}  "
                          f"outside {rep['ops_outside'] or '-'}", flush=True)


if __name__ == "__main__":
    main()
