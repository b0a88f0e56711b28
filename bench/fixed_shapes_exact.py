"""Fixed-shape exports against dynamic ones, per zoo family: max |difference| of the outputs.

    python bench/fixed_shapes_exact.py [--models esr_max,splitsr_s,pkn,pkn_fixed,esr_cnn,sesr_m5]

For each model (seeded random weights, collapsed, x2): TFLite fp32 and int8 and ONNX fp32,
exported dynamic and with one fixed LR size of ``2 * halo + 40`` x ``2 * halo + 60`` pixels
(halo = ``receptive_field // 2``), opened with :func:`edgesr.app.artifacts.open_artifact` and
run on two crops of scikit-image's 'astronaut' as the model sees them: ``big`` (larger than the
size both ways: tiles) and ``small`` (5 rows short: the any-size runner). Prints the largest
absolute difference between the fixed and the dynamic artifact's float outputs.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import skimage.data
import torch

from edgesr.app.artifacts import open_artifact
from edgesr.converters.export import export
from edgesr.core.evaluate import model_input
from edgesr.core.models import create


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="esr_max,splitsr_s,pkn,pkn_fixed,esr_cnn,sesr_m5")
    args = ap.parse_args()
    img = skimage.data.astronaut()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = create(name, scale=2)
            model = (model.collapse() if hasattr(model, "collapse") else model).eval()
            halo = model.receptive_field // 2
            h, w = 2 * halo + 40, 2 * halo + 60
            paths = {}
            for tag, sizes in (("dynamic", None), ("fixed", [(h, w)])):
                for a in export(model, f"{tmp}/{tag}", formats=("tflite", "onnx"), precisions=("fp32", "int8"),
                                stem=name, input_sizes=sizes):
                    paths[(tag, a["format"], a["precision"])] = a["path"]
            crops = {"big": img[: h + 70, : w + 90], "small": img[: h - 5, : w + 90]}
            for fmt, prec in (("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32")):
                fixed, dynamic = open_artifact(paths[("fixed", fmt, prec)]), open_artifact(paths[("dynamic", fmt, prec)])
                diffs = []
                for tag, crop in crops.items():
                    x = model_input(np.ascontiguousarray(crop), model.contract)
                    diffs.append(f"{tag} {float(np.abs(fixed(x) - dynamic(x)).max()):.3g}")
                print(f"{name:10s} size {h}x{w}  {fmt:6s} {prec:5s} max|fixed - dynamic|: {', '.join(diffs)}", flush=True)


if __name__ == "__main__":
    main()
