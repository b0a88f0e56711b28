"""Writes the benchmark_model logs in this folder (``python tests/data/make_benchmark_model_logs.py``).

No phone is attached to the machine that wrote edgesr, so these logs are *synthesized*, not
recorded: per-run, per-node timings (microseconds, seeded noise around the means below) are
turned into text by a transcription of TFLite's formatting code, so every column width, rounding
and ordering is what ``benchmark_model --enable_op_profiling=true`` prints:

* ``tensorflow/lite/profiling/profile_summarizer.cc`` (``ProcessProfiles``): a builtin op is
  named ``[output tensor names]:node index`` with its op name as type; an XNNPACK operator
  (``DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT``) is named ``Delegate/OPERATOR:index`` with the
  operator's name as type, the index counting from 0 in each delegate partition, so equal names
  in several partitions merge into one row with ``[times called]`` > 1; the per-run total is the
  sum of the events.
* ``tensorflow/lite/profiling/profile_summary_formatter.cc`` + ``xla/tsl/util/stats_calculator.cc``
  (``StatsCalculator``): Run Order and Top by Computation Time (10 rows) tables, the summary by
  node type (per-run microseconds truncated to integers, float32 percentages), and the short
  summary (``Timings (microseconds): count= first= curr= min= max= avg= std=``). Two layouts:
  ``"tsl"`` (``tensorflow/tsl`` and ``xla/tsl``, as in recent LiteRT logs: node type width 40, no
  ``[start]`` column) and
  ``"legacy"`` (``tensorflow/core/util/stats_calculator.cc`` before it moved to tsl, e.g.
  TensorFlow 2.3: width 24 and a ``[start]`` column of width 17, log lines without ``INFO:``).
* ``tensorflow/lite/tools/benchmark/profiling_listener.cc``: the ``Profiling Info for Benchmark
  Initialization:`` and ``Operator-wise Profiling Info for Regular Benchmark Runs:`` headers,
  logged through ``TFLITE_LOG(INFO)`` (``INFO: `` prefix on the header line only).

The test ``tests/test_profile.py::test_recorded_logs_are_what_this_script_writes`` checks that
the committed files are this script's output.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


class Stat:
    """tsl::Stat<int64_t>: first, newest, min, max, sum, squared sum, count."""

    def __init__(self):
        self.values: list[int] = []

    def update(self, v: int) -> None:
        self.values.append(int(v))

    @property
    def count(self):
        return len(self.values)

    def sum(self):
        return sum(self.values)

    def avg(self):
        return self.sum() / self.count

    def std(self):  # std_deviation(): sqrt(squared_sum / count - avg^2), truncated to int64
        if len(set(self.values)) == 1:
            return 0
        return int(math.sqrt(sum(v * v for v in self.values) / self.count - self.avg() ** 2))

    def stream(self) -> str:  # OutputToStream
        if not self.values:
            return "count=0"
        if len(set(self.values)) == 1:
            return f"count={self.count} curr={self.values[-1]}" + ("(all same)" if self.count > 1 else "")
        return (f"count={self.count} first={self.values[0]} curr={self.values[-1]} min={min(self.values)} "
                f"max={max(self.values)} avg={_g6(self.avg())} std={self.std()}")


def _g6(v: float) -> str:
    """C++ ostream default formatting of a double (6 significant digits, %g)."""
    return f"{v:g}"


def _field(width: int, value) -> str:  # InitField: "\t", right-aligned, fixed, precision 3
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return "\t" + text.rjust(width)


class Calculator:
    """tsl::StatsCalculator with the profile summarizer's options (no memory table, no summary)."""

    def __init__(self, layout: str):
        self.layout = layout
        self.type_width = 40 if layout == "tsl" else 24
        self.details: dict[str, dict] = {}
        self.run_total = Stat()

    def add(self, name, node_type, run_order, start_us, elapsed_us, mem=0):
        d = self.details.setdefault(name, {"type": node_type, "name": name, "run_order": run_order,
                                           "start": Stat(), "time": Stat(), "mem": Stat(), "calls": 0})
        d["start"].update(start_us)
        d["time"].update(elapsed_us)
        d["mem"].update(mem)
        d["calls"] += 1

    def header(self, title):
        out = f"============================== {title} ==============================\n"
        out += _field(self.type_width, "[node type]")
        if self.layout == "legacy":
            out += _field(17, "[start]")
        out += _field(9, "[first]") + _field(9, "[avg ms]") + _field(8, "[%]") + _field(8, "[cdf%]")
        return out + _field(10, "[mem KB]") + _field(9, "[times called]") + "\t[Name]"

    def column(self, d, cumulative):
        total = self.run_total.sum()
        out = _field(self.type_width, d["type"])
        if self.layout == "legacy":
            out += _field(17, d["start"].avg() / 1000.0)
        out += _field(9, d["time"].values[0] / 1000.0) + _field(9, d["time"].avg() / 1000.0)
        out += _field(7, d["time"].sum() * 100.0 / total) + "%" + _field(7, cumulative * 100.0 / total) + "%"
        out += _field(10, d["mem"].values[-1] / 1000.0) + _field(9, d["calls"] // self.run_total.count)
        return out + "\t" + d["name"]

    def by_metric(self, title, key, limit):
        n = len(self.details)
        keys = {"order": lambda d: f"{n - d['run_order']:>20}", "time": lambda d: f"{d['time'].avg():>20.10f}"}[key]
        ordered = sorted(self.details.values(), key=keys, reverse=True)  # std::priority_queue: largest first
        out, cum = self.header(title) + "\n", 0
        for i, d in enumerate(ordered):
            if limit and i >= limit:
                break
            cum += d["time"].sum()
            out += self.column(d, cum) + "\n"
        return out + "\n"

    def by_type(self):
        runs = self.run_total.count
        count, time, mem, calls, acc = {}, {}, {}, {}, 0
        for d in self.details.values():
            t = d["time"].sum() // runs
            acc += t
            count[d["type"]] = count.get(d["type"], 0) + 1
            time[d["type"]] = time.get(d["type"], 0) + t
            mem[d["type"]] = mem.get(d["type"], 0) + d["mem"].values[-1]
            calls[d["type"]] = calls.get(d["type"], 0) + d["calls"] // runs
        out = f"Number of nodes executed: {len(self.details)}\n"
        out += "============================== Summary by node type ==============================\n"
        out += (_field(self.type_width, "[Node type]") + _field(9, "[count]") + _field(10, "[avg ms]") + _field(11, "[avg %]")
                + _field(11, "[cdf %]") + _field(10, "[mem KB]") + _field(10, "[times called]") + "\n")
        cdf = np.float32(0)
        for t in sorted(time, key=lambda k: (time[k], k), reverse=True):  # priority_queue of (time, (type, mem))
            pct = np.float32(np.float32(time[t]) / np.float32(acc)) * np.float32(100)
            cdf = np.float32(cdf + pct)
            out += (_field(self.type_width, t) + _field(9, count[t]) + _field(10, float(np.float32(time[t]) / np.float32(1000)))
                    + _field(10, float(pct)) + "%" + _field(10, float(cdf)) + "%" + _field(10, float(np.float32(mem[t]) / 1000))
                    + _field(9, calls[t]) + "\n")
        return out + "\n"

    def report(self):
        out = self.by_metric("Run Order", "order", 0) + self.by_metric("Top by Computation Time", "time", 10) + self.by_type()
        out += f"Timings (microseconds): {self.run_total.stream()}\nMemory (bytes): count=0\n{len(self.details)} nodes observed\n"
        return out + "\n"


def profile(layout, events_per_run) -> str:
    """``events_per_run``: per run, ``[(name, type, elapsed_us, mem_bytes)]`` in event order."""
    calc = Calculator(layout)
    for events in events_per_run:
        start = 0
        for order, (name, node_type, us, mem) in enumerate(events):
            calc.add(name, node_type, order, start, us, mem)
            start += us
        calc.run_total.update(sum(e[2] for e in events))
    return calc.report()


def _jitter(rng, mean_us, spread=0.03):
    return max(1, int(round(mean_us * (1 + spread * rng.standard_normal()))))


def _log(layout, head: list[str], warmup: Stat, regular: Stat, init_us, memory, init_events, run_events) -> str:
    info = "INFO: " if layout == "tsl" else ""  # the legacy tool logged these lines without a prefix
    lines = [info + h for h in head]
    lines += [f"{info}Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.",
              f"{info}{warmup.stream()}", "",
              f"{info}Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.",
              f"{info}{regular.stream()}", "",
              (f"{info}Inference timings in us: Init: {init_us}, First inference: {warmup.values[0]}, "
               f"Warmup (avg): {_g6(warmup.avg())}, Inference (avg): {_g6(regular.avg())}"),
              (f"{info}Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to "
               "the actual memory footprint of the model at runtime. Take the information at your discretion."),
              *([f"{info}Memory footprint delta from the start of the tool (MB): init={_g6(memory[0])} overall={_g6(memory[1])}",
                 f"{info}Overall peak memory footprint (MB) via periodic monitoring: {_g6(memory[2])}"] if layout == "tsl" else
                [f"Peak memory footprint (MB): init={_g6(memory[0])} overall={_g6(memory[1])}"])]
    text = "\n".join(lines) + "\n"
    text += f"{info}Profiling Info for Benchmark Initialization:\n" + profile(layout, [init_events]) + "\n\n"
    text += f"{info}Operator-wise Profiling Info for Regular Benchmark Runs:\n" + profile(layout, run_events) + "\n\n"
    return text


def sesr_m5_int8_xnnpack() -> str:
    """SESR-M5 x2 int8 (edgesr's export) on XNNPACK, 4 threads, 180 x 320 input (640 x 360 out):
    6 delegate partitions, the 5 PRELUs on builtin kernels (edgesr profile's partition report)."""
    rng = np.random.default_rng(13)
    conv3 = ("Convolution (NHWC, QC8) IGEMM", 1450)
    prelu = [f"SESRDeploy_1/p_re_lu_{k}/add;SESRDeploy_1/p_re_lu_{k}/Relu;SESRDeploy_1/p_re_lu_{k}/Neg_1;"
             f"SESRDeploy_1/p_re_lu_{k}/Relu_1;SESRDeploy_1/p_re_lu_{k}/mul" for k in ("1", "1_2", "2_1", "3_1", "4_1")]
    plan = [[("Convolution (NHWC, QC8) IGEMM", 420), conv3], [conv3], [conv3], [conv3], [conv3],
            [("Add (ND, QS8)", 210), ("Convolution (NHWC, QC8) IGEMM", 1050), ("Add (ND, QS8)", 60),
             ("Depth To Space (NHWC, X8)", 90)]]
    builtin = [(f"[{prelu[i]}]:{2 * i + 2}", "PRELU", 950) for i in range(5)]

    def one_run():
        events = []
        for p, ops in enumerate(plan):
            for idx, (op, us) in enumerate(ops):
                events.append((f"Delegate/{op}:{idx}", op, _jitter(rng, us), 0))
            if p < 5:
                name, t, us = builtin[p]
                events.append((name, t, _jitter(rng, us), 0))
        return events

    warm, reg = Stat(), Stat()
    for _ in range(7):
        warm.update(sum(e[2] for e in one_run()) + 180)
    warm.values[0] += 2900  # the first inference (allocation, packing) is slower
    runs = [one_run() for _ in range(50)]
    for r in runs:
        reg.update(sum(e[2] for e in r) + 160)  # the benchmark's timer also sees the interpreter's own overhead
    head = ["STARTING!", "Log parameter values verbosely: [0]", "Min num runs: [50]", "Min warmup runs: [5]", "Num threads: [4]",
            "Graph: [/data/local/tmp/edgesr/sesr_m5_x2_int8.tflite]", "Input layers: [serving_default_input:0]",
            "Input shapes: [1,180,320,1]", "Enable op profiling: [1]", "#threads used for CPU inference: [4]", "Use gpu: [0]",
            "Use NNAPI: [0]", "Use xnnpack: [1]", "Loaded model /data/local/tmp/edgesr/sesr_m5_x2_int8.tflite",
            "Created TensorFlow Lite XNNPACK delegate for CPU.", "XNNPACK delegate created.",
            "Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 6 delegate kernels.",
            "The input model file size (MB): 0.032312", "Initialized session in 9.871ms."]
    init = [("ModifyGraphWithDelegate/0", "ModifyGraphWithDelegate", 6312, 2404000), ("AllocateTensors/0", "AllocateTensors", 3421, 3116000)]
    return _log("tsl", head, warm, reg, 9871, (5.42188, 13.8594, 19.1172), init, runs)


def sesr_m3_int8_cpu() -> str:
    """SESR-M3 x2 int8 on the builtin kernels (``--use_xnnpack=false``), 4 threads, 180 x 320
    input; the legacy layout (``[start]`` column)."""
    rng = np.random.default_rng(3)
    names = ["sesr/first/Conv2D", "sesr/blocks.0/Conv2D", "sesr/acts.0/prelu", "sesr/blocks.1/Conv2D", "sesr/acts.1/prelu",
             "sesr/blocks.2/Conv2D", "sesr/acts.2/prelu", "sesr/add_skip", "sesr/last/Conv2D", "sesr/add_input",
             "sesr/depth_to_space"]
    types = ["CONV_2D", "CONV_2D", "PRELU", "CONV_2D", "PRELU", "CONV_2D", "PRELU", "ADD", "CONV_2D", "ADD", "DEPTH_TO_SPACE"]
    means = [2874, 1611, 388, 1602, 386, 1608, 387, 205, 2944, 498, 317]

    def one_run():
        return [(f"[{n}]:{i}", t, _jitter(rng, us, 0.02), 0) for i, (n, t, us) in enumerate(zip(names, types, means))]

    warm, reg = Stat(), Stat()
    for _ in range(36):
        warm.update(sum(e[2] for e in one_run()) + 60)
    warm.values[0] += 2100
    runs = [one_run() for _ in range(74)]
    for r in runs:
        reg.update(sum(e[2] for e in r) + 55)
    head = ["STARTING!", "Log parameter values verbosely: [0]", "Min num runs: [50]", "Num threads: [4]", "Min warmup runs: [5]",
            "Graph: [/data/local/tmp/edgesr/sesr_m3_x2_int8.tflite]", "Input layers: [serving_default_x:0]",
            "Input shapes: [1,180,320,1]", "Enable op profiling: [1]", "#threads used for CPU inference: [4]", "Use gpu: [0]",
            "Use NNAPI: [0]", "Use xnnpack: [0]", "Loaded model /data/local/tmp/edgesr/sesr_m3_x2_int8.tflite",
            "INFO: Initialized TensorFlow Lite runtime.", "The input model file size (MB): 0.027", "Initialized session in 3.051ms."]
    init = [("ModifyGraphWithDelegate/0", "ModifyGraphWithDelegate", 1873, 1024000), ("AllocateTensors/0", "AllocateTensors", 1178, 4412000)]
    return _log("legacy", head, warm, reg, 3051, (0, 13.6875, None), init, runs)


LOGS = {"benchmark_model_sesr_m5_x2_int8_xnnpack.txt": sesr_m5_int8_xnnpack,
        "benchmark_model_sesr_m3_x2_int8_cpu.txt": sesr_m3_int8_cpu}

if __name__ == "__main__":
    for name, make in LOGS.items():
        (HERE / name).write_text(make())
        print(f"wrote {HERE / name}")
