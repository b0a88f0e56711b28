"""``edgesr lint ARTIFACT --target gpu|nnapi|xnnpack|coreml-ane|executorch-xnnpack``: will it run there?

Prints one line per finding (or JSON with ``--json``); exits 1 when a finding is an error
(the graph, or part of it, would not run on the target), 0 otherwise.
"""

from __future__ import annotations

import json

from edgesr.commands._args import existing_path
from edgesr.converters.lint import TARGETS, has_errors, lint


def add_arguments(p) -> None:
    p.add_argument("artifact", type=existing_path, help=".tflite, .mlpackage or .pte")
    p.add_argument("--target", required=True, choices=TARGETS)
    p.add_argument("--json", action="store_true", help="print the findings as JSON")


def run(args) -> int:
    findings = lint(args.artifact, args.target)
    if args.json:
        print(json.dumps({"artifact": str(args.artifact), "target": args.target, "ok": not has_errors(findings),
                          "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        for f in findings:
            print(f"{f.severity:7s} {f.check:20s} {f.message}" + (f" (source: {f.source})" if f.source else ""))
        verdict = "FAIL" if has_errors(findings) else "ok"
        print(f"{verdict}: {args.artifact} for {args.target} ({sum(f.severity == 'error' for f in findings)} error(s), "
              f"{sum(f.severity == 'warning' for f in findings)} warning(s))")
    return 1 if has_errors(findings) else 0
