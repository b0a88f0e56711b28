"""``edgesr info MODEL --scale S [--json]``: parameters and MACs per 720p frame."""

from __future__ import annotations

import json

from edgesr.commands._args import scale
from edgesr.core.complexity import model_info
from edgesr.core.models import create


def add_arguments(p) -> None:
    p.add_argument("model", help="registry name (see `edgesr list`)")
    p.add_argument("--scale", type=scale, default=2, help="upscaling factor (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    info = model_info(create(args.model, scale=args.scale))
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{info['name']} x{info['scale']}: {info['params']:,} parameters as trained, "
              f"{info['params_deploy']:,} deployed, {info['macs_per_frame_720p'] / 1e9:.3f} GMACs per 1280x720 output frame")
    return 0
