"""``edgesr golden ARTIFACT --images DIR -o DIR``: golden vectors for on-device tests.

Writes raw input/output tensors of the artifact on each image (centre-cropped to
``--max-size``) and ``manifest.json`` (:mod:`edgesr.app.golden`). ``--verify`` re-runs the artifact
on an existing folder and exits 1 if any element is outside the manifest's tolerance. A TFLite
manifest also states the GPU / NPU tolerances derived from their emulations (``device_tolerance``).
"""

from __future__ import annotations

import json

from edgesr.app.golden import verify_golden, write_golden
from edgesr.commands._args import (
    add_out_argument,
    existing_dir,
    existing_path,
    int_at_least,
)
from edgesr.core.data import embedded_images, load_folder


def add_arguments(p) -> None:
    p.add_argument("artifact", type=existing_path, help=".tflite, .onnx, .mlpackage or .lut")
    p.add_argument("--images", type=existing_dir, help="folder of images (default: the embedded validation photographs)")
    add_out_argument(p, "output folder (or, with --verify, the folder to check)", required=True)
    p.add_argument("--max-size", type=int_at_least(4), default=128,
                   help="centre-crop each image to at most this many pixels a side (>= 4; default 128)")
    p.add_argument("--kernels", default="xnnpack", choices=("reference", "optimized", "xnnpack"),
                   help="LiteRT kernels producing TFLite outputs (default: the default interpreter, XNNPACK)")
    p.add_argument("--verify", action="store_true", help="verify --out against the artifact instead of writing")


def run(args) -> int:
    if args.verify:
        res = verify_golden(args.out, args.artifact, args.kernels)
        print(json.dumps(res, indent=2))
        return 0 if res["ok"] else 1
    images = load_folder(args.images) if args.images else embedded_images("val")
    manifest = write_golden(args.artifact, images, args.out, args.max_size, args.kernels)
    print(f"wrote {len(manifest['pairs'])} golden pair(s) to {args.out} ({manifest['tolerance']['kind']}, {manifest['runtime']})")
    for engine, t in manifest.get("device_tolerance", {}).items():
        print(f"  {engine} tolerance: max abs {t['max_abs']:.3g} on [0, 1] (measured {t['measured_max_abs']:.3g} "
              f"+ margin {t['margin']:.3g}; {t['source']})")
    return 0
