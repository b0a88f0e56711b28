"""``edgesr profile ARTIFACT``: latency on this machine, or on a phone over adb.

Host: ``--sizes 360p,540p,720p --threads 1,2 --repeats N`` (LiteRT for .tflite, ONNX Runtime
for .onnx, the C engine for .lut). Phone: ``--adb [--serial ID] --delegate cpu|xnnpack|gpu|nnapi
--benchmark-binary PATH`` runs TFLite's benchmark_model (with per-op profiling) for every
requested size and thread count (setup pushed once; one log per case, ``OUT_SIZE_tT.log``) and
parses each log (one case: its fields; several: ``{"runs": [...]}``); ``--op-profile`` adds
benchmark_model's per-op profiling and ``op_profile`` (which op types dominate: count, ms per
inference, % of total, delegate or builtin kernels); ``--dry-run`` prints the adb commands;
``--parse LOG`` parses a saved log. JSON goes to stdout or ``-o/--out``.
"""

from __future__ import annotations

import json
import shlex

from edgesr.app import profiling
from edgesr.commands._args import (
    add_out_argument,
    checked_by,
    csv_ints,
    csv_of,
    existing_file,
    existing_path,
    nonnegative_int,
    output_file,
    positive_int,
)
from edgesr.converters.partitions import xnnpack_line
from edgesr.core.atomic import write_text_atomic
from edgesr.core.errors import EdgesrError
from edgesr.quantization.integer_ref import read_model


def add_arguments(p) -> None:
    p.add_argument("artifact", nargs="?", type=existing_path, help=".tflite, .onnx or .lut")
    p.add_argument("--sizes", type=csv_of(checked_by(profiling.parse_size, "frame_size")), default="360p",
                   help="output frame sizes: 360p,540p,720p,1080p or HxW (comma-separated)")
    p.add_argument("--threads", type=csv_ints(1), default="1", help="thread counts >= 1, comma-separated")
    p.add_argument("--repeats", type=positive_int, default=10, help="timed runs per size (after --warmup runs)")
    p.add_argument("--warmup", type=nonnegative_int, default=2)
    add_out_argument(p, "write the JSON here (.json, atomically) instead of stdout", type=output_file(".json"))
    p.add_argument("--adb", action="store_true", help="run TFLite's benchmark_model on a phone")
    p.add_argument("--serial", help="adb device serial")
    p.add_argument("--delegate", default="xnnpack", choices=("cpu", "xnnpack", "gpu", "nnapi"))
    p.add_argument("--benchmark-binary", help="path to benchmark_model built for the phone (android_aarch64)")
    p.add_argument("--op-profile", action="store_true",
                   help="with --adb: per-op profiling (--enable_op_profiling=true); the JSON gets op_profile, "
                        "the op types that dominate an inference (count, ms, %% of total), printed with -o")
    p.add_argument("--dry-run", action="store_true", help="with --adb: print the adb commands only")
    p.add_argument("--parse", metavar="LOG", type=existing_file, help="parse a saved benchmark_model log instead of running")


def _emit(result: dict, out) -> None:
    text = json.dumps(result, indent=2)
    if out:
        write_text_atomic(out, text + "\n")
    else:
        print(text)


def run(args) -> int:
    from pathlib import Path


    if args.parse:
        log = Path(args.parse)
        _emit({"source": str(log), **profiling.parse_benchmark_output(log.read_text(errors="replace"))}, args.out)
        return 0
    if not args.artifact:
        raise EdgesrError("give an ARTIFACT (or --parse LOG)")
    if args.op_profile and not args.adb:
        raise EdgesrError("--op-profile profiles ops with benchmark_model on a phone: add --adb (or --parse a saved log)")
    threads, sizes = args.threads, args.sizes
    if args.adb:
        return _adb(args, sizes, threads)
    result = profiling.profile_artifact(args.artifact, sizes, threads, args.repeats, args.warmup,
                                        progress=lambda r: print(f"{r['size']:>6} x{r['threads']} threads: "
                                                                 f"{r['median_ms']:.2f} ms median", flush=True)
                                        if args.out else None)
    if args.out and result.get("xnnpack"):
        print(xnnpack_line(result["xnnpack"]))
    _emit(result, args.out)
    return 0


def _adb(args, sizes, threads) -> int:
    import subprocess
    from pathlib import Path


    if not args.artifact.endswith(".tflite"):
        raise EdgesrError(f"{args.artifact}: --adb runs TFLite's benchmark_model, give a .tflite")
    if not args.benchmark_binary:
        raise EdgesrError("--adb needs --benchmark-binary PATH (benchmark_model for the phone)")

    tensors, _, inputs, _ = read_model(args.artifact)
    tin = tensors[inputs[0]]
    scale = profiling._runner_scale(Path(args.artifact), tin) if len(sizes) else 1
    base = Path(args.out).with_suffix("") if args.out else Path("benchmark_output")
    cases, plans = [], []
    for size in sizes:  # every requested size and thread count; the setup steps once
        oh, ow = profiling.parse_size(size)
        shape = (1, oh // scale, ow // scale, tin.shape[-1])
        for t in threads:
            local = base.with_name(f"{base.name}_{size}_t{t}.log")
            cmds = profiling.adb_commands(args.artifact, args.benchmark_binary, args.delegate, args.serial, t,
                                          args.warmup, args.repeats, shape, tin.name, local, args.op_profile)
            plans.append(cmds if not plans else cmds[-2:])
            cases.append((size, t, shape, local))
    if args.dry_run:
        for c in (c for cmds in plans for c in cmds):
            print(shlex.join(c))
        return 0
    runs = []
    for cmds, (size, t, shape, local) in zip(plans, cases):
        for c in cmds:
            try:
                subprocess.run(c, check=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise EdgesrError(f"adb step failed: {shlex.join(c)} ({exc})") from None
        result = profiling.parse_benchmark_output(local.read_text(errors="replace"))
        if args.op_profile and result["op_profile"] is None:
            raise EdgesrError(f"{local}: benchmark_model printed no per-op tables (a build without op profiling?)")
        runs.append({"size": size, "threads": t, "input_shape": list(shape), "log": str(local), **result})
        if args.out and args.op_profile:
            print(f"{size}, {t} thread(s), {args.delegate}: {result['inference_avg_ms']:.2f} ms per inference (avg)")
            print("\n".join(profiling.op_profile_lines(result["op_profile"])), flush=True)
    if len(runs) == 1:
        _emit({"artifact": args.artifact, "delegate": args.delegate, **runs[0]}, args.out)
    else:
        _emit({"artifact": args.artifact, "delegate": args.delegate, "runs": runs}, args.out)
    return 0
