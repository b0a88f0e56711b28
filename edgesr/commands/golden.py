"""``edgesr golden ARTIFACT --images DIR --out DIR``: golden vectors for on-device tests.

Writes raw input/output tensors of the artifact on each image (centre-cropped to
``--max-size``) and ``manifest.json`` (:mod:`edgesr.app.golden`). ``--verify`` re-runs the artifact
on an existing folder and exits 1 if any element is outside the manifest's tolerance.
"""

from __future__ import annotations

import json

from edgesr.app.golden import verify_golden, write_golden
from edgesr.core.data import embedded_images, load_folder
from edgesr.core.errors import EdgesrError


def add_arguments(p) -> None:
    p.add_argument("artifact", help=".tflite, .onnx, .mlpackage or .lut")
    p.add_argument("--images", help="folder of images (default: the embedded validation photographs)")
    p.add_argument("--out", required=True, help="output folder (or, with --verify, the folder to check)")
    p.add_argument("--max-size", type=int, default=128, help="centre-crop each image to at most this many pixels a side")
    p.add_argument("--kernels", default="xnnpack", choices=("reference", "optimized", "xnnpack"),
                   help="LiteRT kernels producing TFLite outputs (default: the default interpreter, XNNPACK)")
    p.add_argument("--verify", action="store_true", help="verify --out against the artifact instead of writing")


def run(args) -> int:
    if args.verify:
        res = verify_golden(args.out, args.artifact, args.kernels)
        print(json.dumps(res, indent=2))
        return 0 if res["ok"] else 1
    if args.max_size < 4:
        raise EdgesrError(f"--max-size {args.max_size}: must be at least 4")
    images = load_folder(args.images) if args.images else embedded_images("val")
    manifest = write_golden(args.artifact, images, args.out, args.max_size, args.kernels)
    print(f"wrote {len(manifest['pairs'])} golden pair(s) to {args.out} ({manifest['tolerance']['kind']}, {manifest['runtime']})")
    return 0
