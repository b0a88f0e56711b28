"""``edgesr import-weights {esr,srlut} FILE -o OUT``: the authors' published weights.

* ``esr FILE.model``: an eSR state_dict (pnavarre/eSR) -> edgesr checkpoint (``.pt``);
* ``srlut FILE.npy``: an SR-LUT int8 table (yhjo09/SR-LUT) -> ``.lut`` bundle; the scale is
  read from the table's shape (``--scale`` is optional and must agree).

The written path is one edgesr opens: ``.pt`` or ``.lut`` is appended to OUT when missing,
and the path is printed.
"""

from __future__ import annotations

from pathlib import Path

from edgesr.commands._args import add_out_argument, existing_file, scale
from edgesr.commands.source import check_scale
from edgesr.core.importers import _esr_registry_entry as esr_registry_entry
from edgesr.core.importers import import_esr
from edgesr.lut_baking.importer import import_srlut, srlut_scale

#: the suffix edgesr recognizes for what each kind is imported into
SUFFIX = {"esr": ".pt", "srlut": ".lut"}


def add_arguments(p) -> None:
    p.add_argument("kind", choices=("esr", "srlut"), help="whose format the file is in")
    p.add_argument("file", type=existing_file, help="the authors' file")
    add_out_argument(p, "checkpoint (esr, .pt) or LUT bundle (srlut, .lut) to write; the suffix is added when missing",
                     required=True)
    p.add_argument("--scale", type=scale, help="upscaling factor; optional, must agree with the file (eSR ids and "
                                                "SR-LUT table shapes carry it)")


def output_path(out: str, kind: str) -> Path:
    """``out`` with the suffix edgesr opens for ``kind`` appended when it lacks it (``mylut`` -> ``mylut.lut``)."""
    path = Path(out)
    return path if path.suffix.lower() == SUFFIX[kind] else path.with_name(path.name + SUFFIX[kind])


def run(args) -> int:
    out = output_path(args.out, args.kind)
    if args.kind == "esr":
        if args.scale is not None:
            try:
                _, found, _ = esr_registry_entry(Path(args.file).stem)
            except ValueError:
                found = None  # not an eSR id: import_esr says so
            if found is not None:
                check_scale(args.scale, found, args.file)
        path = import_esr(args.file, out)
    else:
        found = srlut_scale(args.file)
        check_scale(args.scale, found, args.file)
        path = import_srlut(args.file, found, out)
    print(f"{args.file} -> {path}")
    return 0
