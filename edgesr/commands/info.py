"""``edgesr info MODEL --scale S [--json]``: parameters and MACs per 720p frame (none for a
lookup-table model, which runs as table lookups once baked; its network's MACs are reported
as ``network_macs_per_frame_720p``)."""

from __future__ import annotations

import json

from edgesr.commands._args import scale
from edgesr.core.complexity import model_info
from edgesr.core.models import create, resolve


def add_arguments(p) -> None:
    p.add_argument("model", help="registry name (see `edgesr list`)")
    p.add_argument("--scale", type=scale, default=2, help="upscaling factor (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    info = model_info(create(args.model, scale=args.scale))
    if resolve(args.model).family == "lut":  # deployed as baked tables: lookups, no multiply-accumulates
        info["network_macs_per_frame_720p"] = info.pop("macs_per_frame_720p")
        info["macs_per_frame_720p"] = None
        info.pop("params_deploy")
        info["deploy"] = "lookup table (edgesr bake)"
    if args.json:
        print(json.dumps(info))
    elif info["macs_per_frame_720p"] is None:
        print(f"{info['name']} x{info['scale']}: {info['params']:,} network parameters, deployed as a lookup table "
              f"(edgesr bake): no multiply-accumulates at inference; the network's "
              f"{info['network_macs_per_frame_720p'] / 1e9:.3f} GMACs per 1280x720 frame are spent once, while baking")
    else:
        print(f"{info['name']} x{info['scale']}: {info['params']:,} parameters as trained, "
              f"{info['params_deploy']:,} deployed, {info['macs_per_frame_720p'] / 1e9:.3f} GMACs per 1280x720 output frame")
    return 0
