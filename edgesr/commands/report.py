"""``edgesr report RUN_DIR``: the deployment page of a run folder.

Writes ``RUN_DIR/deployment_report.md`` + ``.png`` + ``.json`` (:mod:`edgesr.app.reporting`):
quality vs latency (Pareto front) of every artifact in ``report.json``, the signed error map
int8 - float on a photograph of the run's evaluation sets, and the delegate emulation matrix.
"""

from __future__ import annotations

from edgesr.app.profiling import parse_size
from edgesr.app.reporting import render_report
from edgesr.commands._args import checked_by, existing_dir, positive_int


def add_arguments(p) -> None:
    p.add_argument("run_dir", type=existing_dir, help="a run folder (report.json + checkpoints/deploy.pt)")
    p.add_argument("--photo", default=None,
                   help="image for the error map and emulation matrix: a name in the run's first evaluation set "
                        "(default: its first image), else a scikit-image photograph by name")
    p.add_argument("--size", type=checked_by(parse_size, "frame_size"), default="360p", help="output frame size for latency (360p, 540p, 720p or HxW)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs per artifact (default 5)")


def run(args) -> int:
    out = render_report(args.run_dir, args.photo, args.size, args.repeats)
    print(f"wrote {args.run_dir}/deployment_report.md (+ .png, .json): {len(out['artifacts'])} artifact(s), "
          f"Pareto: {', '.join(out['pareto']) or '-'}")
    return 0
