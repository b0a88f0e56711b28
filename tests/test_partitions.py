"""XNNPACK partitions: LiteRT's ground truth, and `edgesr lint --target xnnpack` predicting it exactly.

Every TFLite-exportable zoo graph (each family's smallest configuration, seeded random weights;
the bicubic baseline and the LUT nets do not export to TFLite) in fp32, fp16 and int8, plus
single-op and hand-built graphs that exercise each refusal rule.
"""

from __future__ import annotations

import functools

import pytest
import torch
from edgesr.converters.export import calibration_patches, deploy_module, export_tflite
from edgesr.converters.lint import lint, predict_xnnpack
from edgesr.converters.partitions import partition, xnnpack_partitions
from test_integer_ref_models import int8_model, single_op_int8

from edgesr.core.errors import EdgesrError
from edgesr.core.models import create

ZOO_GRAPHS = ("esr_cnn", "esr_max", "esr_tm", "esr_tr", "pkn", "pkn_fixed", "sesr_m3", "sesr_m3_relu", "splitsr_s")
PRECISIONS = ("fp32", "fp16", "int8")
KEYS = ("partitions", "delegated_ops", "ops_outside", "nodes_outside", "subsets")


@pytest.fixture(scope="module")
def zoo_export(tmp_path_factory):
    """``zoo_export(name, precision) -> path``: one export per (model, precision), shared by the
    module's cases and made only when a selected case asks for it."""
    root = tmp_path_factory.mktemp("partitions")

    @functools.cache
    def make(name: str, precision: str):
        torch.manual_seed(0)
        module = deploy_module(create(name, scale=2))
        path = root / f"{name}_{precision}.tflite"
        calib = calibration_patches(None, module.contract, patch=32, count=4) if precision == "int8" else None
        export_tflite(module, path, precision, calib)
        return path

    return make


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", ZOO_GRAPHS)
def test_lint_predicts_litert_partitions_on_zoo_exports(zoo_export, name, precision):
    path = zoo_export(name, precision)
    truth, predicted = xnnpack_partitions(path), predict_xnnpack(path)
    assert {k: predicted[k] for k in KEYS} == {k: truth[k] for k in KEYS}, predicted["reasons"]
    if precision != "int8":  # float graphs are whole on XNNPACK
        assert truth["partitions"] == 1 and truth["ops_outside"] == []


@pytest.mark.parametrize("kind", ["tanh", "sigmoid", "softmax", "sum"])
def test_lint_predicts_single_op_int8_graphs(kind):
    path = single_op_int8(kind, -2.0, 3.0, channels=4 if kind in ("softmax", "sum") else 1)
    truth, predicted = xnnpack_partitions(path), predict_xnnpack(path)
    assert {k: predicted[k] for k in KEYS} == {k: truth[k] for k in KEYS}
    assert truth["ops_outside"] == (["SOFTMAX"] if kind == "softmax" else [])


@pytest.mark.parametrize("kind", ["sesr_like", "rank6_shuffle", "float_island"])
def test_lint_predicts_hand_built_graphs(kind):
    path = int8_model(kind)
    truth, predicted = xnnpack_partitions(path), predict_xnnpack(path)
    assert {k: predicted[k] for k in KEYS} == {k: truth[k] for k in KEYS}, predicted["reasons"]
    if kind == "float_island":  # XNNPACK computes the float SIN island itself: still one partition
        assert "SIN" in truth["delegated_ops"] and truth["partitions"] == 1


def test_int8_prelu_is_reported_with_the_relu_recommendation(zoo_export):
    findings = lint(zoo_export("sesr_m3", "int8"), "xnnpack")
    prelu = [f for f in findings if f.check == "op-outside-delegate" and f.op == "PRELU"]
    assert len(prelu) == 3 and all("ReLU variant" in f.message and "float32 only" in f.message for f in prelu)
    parts = [f for f in findings if f.check == "partitions"]
    assert len(parts) == 1 and parts[0].severity == "warning" and "4 partition(s)" in parts[0].message


def test_partition_is_litert_greedy_grouping():
    # a -> b(unsupported) -> d ; a -> c -> d : the greedy sweep puts a and c in one partition
    ins = [[0], [1], [1], [2, 3]]
    outs = [[1], [2], [3], [4]]
    assert partition(ins, outs, [True, False, True, True]) == [[0, 2], [3]]
    assert partition(ins, outs, [True, True, True, True]) == [[0, 1, 2, 3]]
    assert partition(ins, outs, [False, False, False, False]) == []


def test_missing_file_is_an_edgesr_error(tmp_path):
    with pytest.raises(EdgesrError, match="no such"):
        xnnpack_partitions(tmp_path / "none.tflite")


def test_uint8_io_edges_stay_on_builtin_kernels(tmp_path):
    """With uint8 input/output the edge QUANTIZE ops (uint8 <-> int8) are not taken; the int8 body is."""
    torch.manual_seed(0)
    module = deploy_module(create("esr_max", scale=2))
    path = tmp_path / "esr_max_uint8_io.tflite"
    export_tflite(module, path, "int8", calibration_patches(None, module.contract, patch=32, count=4), "uint8")
    truth, predicted = xnnpack_partitions(path), predict_xnnpack(path)
    assert {k: predicted[k] for k in KEYS} == {k: truth[k] for k in KEYS}
    assert truth["ops_outside"] == ["QUANTIZE", "QUANTIZE"] and truth["partitions"] == 1
