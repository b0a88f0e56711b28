"""``edgesr list``: print the model registry."""

from __future__ import annotations

import json

from edgesr.core.models import list_models


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    entries = list_models()
    if args.json:
        print(json.dumps([{"name": e.name, "family": e.family, "scales": list(e.scales), "aliases": list(e.aliases)} for e in entries], indent=2))
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        scales = ",".join(f"x{s}" for s in e.scales)
        print(f"{e.name:<{width}}  {e.family:<8} {scales:<9} {e.doc}")
    return 0
