"""``edgesr import-weights {esr,srlut} FILE --out OUT``: the authors' published weights.

* ``esr FILE.model``: an eSR state_dict (pnavarre/eSR) -> edgesr checkpoint;
* ``srlut FILE.npy --scale R``: an SR-LUT int8 table (yhjo09/SR-LUT) -> ``.lut`` bundle.
"""

from __future__ import annotations

from edgesr.core.errors import EdgesrError
from edgesr.core.importers import import_esr
from edgesr.lut_baking.importer import import_srlut


def add_arguments(p) -> None:
    p.add_argument("kind", choices=("esr", "srlut"), help="whose format the file is in")
    p.add_argument("file", help="the authors' file")
    p.add_argument("--out", required=True, help="checkpoint (esr) or LUT bundle (srlut) to write")
    p.add_argument("--scale", type=int, help="upscaling factor (srlut only; eSR ids carry it)")


def run(args) -> int:
    if args.kind == "esr":
        path = import_esr(args.file, args.out)
    else:
        if args.scale is None:
            raise EdgesrError("srlut import needs --scale (the table's upscaling factor)")

        path = import_srlut(args.file, args.scale, args.out)
    print(f"{args.file} -> {path}")
    return 0
