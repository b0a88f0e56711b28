"""Which nodes of a ``.tflite`` graph a delegate takes: measured on LiteRT, and predicted.

A delegate such as XNNPACK does not take a graph whole or not at all: LiteRT asks it which
nodes it supports, groups those into *partitions* (each replaced by one DELEGATE kernel) and
leaves the rest on LiteRT's builtin kernels. Every partition boundary costs a hand-over of a
whole activation tensor; an op left outside runs on a slower kernel.

* :func:`xnnpack_partitions` is the ground truth: it builds LiteRT's default ``Interpreter``
  (which applies the XNNPACK delegate at ``allocate_tensors``), reads the node list
  (``_get_ops_details()``: the model's nodes first, then one ``DELEGATE`` node per partition)
  and attributes every model node to the partition whose DELEGATE node computes its output
  (walking back from the DELEGATE node's outputs to its inputs).
* :func:`partition` is LiteRT's own grouping (``PartitionGraphIntoIndependentNodeSubsets``,
  tensorflow/lite/graph_info.cc, greedy mode, the default of
  ``ReplaceNodeSubsetsWithDelegateKernels``) re-implemented for a static prediction: given which
  nodes a delegate supports, it returns the partitions LiteRT will form.
  :func:`edgesr.converters.lint.predict_xnnpack` feeds it the delegate's per-node rules.

Both return the same report: ``{"partitions": int, "delegated_ops": [op names, graph order],
"ops_outside": [op names], "nodes_outside": [node indices], "subsets": [[node indices], ...]}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence

from edgesr.core.errors import EdgesrError


def partition(node_inputs: Sequence[Sequence[int]], node_outputs: Sequence[Sequence[int]],
              supported: Sequence[bool]) -> list[list[int]]:
    """LiteRT's greedy partitioning of the execution plan into delegated node subsets.

    Args:
        node_inputs, node_outputs: tensor indices of each node, in execution order (-1 =
            optional input, ignored).
        supported: per node, whether the delegate takes it.

    Returns:
        The delegated subsets (each a list of node indices in the order LiteRT adds them).

    Algorithm (graph_info.cc): epochs alternate between node types; in each epoch, sweep the
    nodes in order and add every not-yet-assigned node whose inputs are all computed by an
    earlier epoch (or are graph inputs / constants) and whose type is the epoch's (the first
    ready node sets it), until a sweep adds nothing.
    """
    n = len(node_inputs)
    produced = {t for outs in node_outputs for t in outs}
    ready_tensors: set[int] = set()
    epoch_of = [-1] * n
    subsets: list[tuple[bool, list[int]]] = []
    while True:
        kind, nodes = None, []
        while True:
            added = False
            for i in range(n):
                if epoch_of[i] >= 0:
                    continue
                if any(t >= 0 and t in produced and t not in ready_tensors for t in node_inputs[i]):
                    continue
                if kind is None:
                    kind = bool(supported[i])
                if bool(supported[i]) != kind:
                    continue
                epoch_of[i] = len(subsets)
                nodes.append(i)
                ready_tensors.update(node_outputs[i])
                added = True
            if not added:
                break
        if not nodes:
            break
        subsets.append((kind, nodes))
    return [nodes for kind, nodes in subsets if kind]


def report(op_names: Sequence[str], subsets: list[list[int]]) -> dict:
    """The common report from op names and delegated subsets (see the module doc)."""
    inside = sorted(i for s in subsets for i in s)
    outside = [i for i in range(len(op_names)) if i not in set(inside)]
    return {"partitions": len(subsets), "delegated_ops": [op_names[i] for i in inside],
            "ops_outside": [op_names[i] for i in outside], "nodes_outside": outside,
            "subsets": [sorted(s) for s in subsets]}


def xnnpack_partitions(path: str | os.PathLike, input_shape: Sequence[int] | None = None,
                       num_threads: int = 1) -> dict:
    """What LiteRT's default XNNPACK delegate takes of the model at ``path`` (ground truth).

    Args:
        path: a ``.tflite`` file.
        input_shape: NHWC shape the input is resized to before the delegate is applied
            (default: (1, 8, 8, C) for a dynamic H x W input, else the model's own shape).
        num_threads: the interpreter's thread count (does not change the partitioning).

    Returns:
        the report of the module doc, measured on LiteRT.

    Raises:
        EdgesrError: missing file or a model LiteRT cannot load.
    """
    from ai_edge_litert.interpreter import Interpreter

    path = Path(path)
    if not path.is_file():
        raise EdgesrError(f"{path}: no such .tflite file")
    try:
        it = Interpreter(model_path=str(path), num_threads=num_threads)
        inp = it.get_input_details()[0]
        shape = list(inp["shape"])
        if input_shape is None and any(d == -1 for d in inp["shape_signature"][1:3]):
            shape = [1, 8, 8, shape[-1]]
        it.resize_tensor_input(inp["index"], list(input_shape or shape))
        it.allocate_tensors()
        details = it._get_ops_details()
    except (ValueError, RuntimeError) as exc:
        raise EdgesrError(f"{path}: LiteRT cannot load it ({str(exc).splitlines()[0][:160]})") from None
    model_nodes = [d for d in details if d["op_name"] != "DELEGATE"]
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    producer = {int(t): d["index"] for d in model_nodes for t in d["outputs"]}
    subsets = []
    for d in delegates:
        stop = {int(t) for t in d["inputs"]}
        stack, nodes = [int(t) for t in d["outputs"]], set()
        while stack:
            t = stack.pop()
            if t in stop or t not in producer or producer[t] in nodes:
                continue
            nodes.add(producer[t])
            stack.extend(int(u) for u in details[producer[t]]["inputs"] if u >= 0)
        subsets.append(sorted(nodes))
    return report([d["op_name"] for d in model_nodes], subsets)


def xnnpack_line(rep: dict) -> str:
    """One line for a report: ``XNNPACK: 1 partition, whole graph`` or the ops left outside."""
    n = rep["partitions"]
    head = f"XNNPACK: {n} partition{'s' if n != 1 else ''}"
    if not rep["ops_outside"]:
        return head + ", whole graph delegated"
    counts = {}
    for name in rep["ops_outside"]:
        counts[name] = counts.get(name, 0) + 1
    return head + ", on builtin kernels: " + ", ".join(f"{k} x{v}" if v > 1 else k for k, v in counts.items())
