"""`edgesr lint`: flags unfriendly graphs (rank-6 pixel shuffle, float island), passes a clean one."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from edgesr.converters.lint import has_errors, lint
from test_integer_ref_models import int8_model

from edgesr.cli import main
from edgesr.core.errors import EdgesrError


def test_clean_int8_graph_passes_gpu_and_xnnpack():
    path = int8_model("sesr_like")
    for target in ("gpu", "xnnpack"):
        findings = lint(path, target)
        assert not has_errors(findings), [f.message for f in findings]
    assert {f.check for f in lint(path, "gpu")} == {"dynamic-shape"}


def test_rank6_pixel_shuffle_is_an_error_for_gpu_and_nnapi(capsys):
    path = int8_model("rank6_shuffle")
    for target in ("gpu", "nnapi"):
        rank = [f for f in lint(path, target) if f.check == "rank"]
        assert rank and all(f.severity == "error" for f in rank)
        assert {f.op for f in rank} == {"RESHAPE", "TRANSPOSE"}
    capsys.readouterr()  # drop the converter's log
    assert main(["lint", str(path), "--target", "gpu", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and any("rank-6" in f["message"] for f in report["findings"])


def test_float_island_is_found():
    path = int8_model("float_island")
    nnapi = lint(path, "nnapi")
    islands = [f for f in nnapi if f.check == "float-island"]
    assert {f.op for f in islands} == {"DEQUANTIZE", "SIN", "QUANTIZE"}
    assert all(f.severity == "error" for f in islands)
    assert any(f.check == "nnapi-deprecated" for f in nnapi)
    assert any(f.check == "nnapi-feature-level" for f in nnapi)  # per-channel int8 weights
    assert main(["lint", str(path), "--target", "nnapi"]) == 1
    assert main(["lint", str(int8_model("sesr_like")), "--target", "xnnpack"]) == 0


def test_bad_arguments(tmp_path):
    with pytest.raises(EdgesrError, match="no such artifact"):
        lint(tmp_path / "x.tflite", "gpu")
    with pytest.raises(EdgesrError, match="unknown lint target"):
        lint(int8_model("sesr_like"), "dsp")
    with pytest.raises(EdgesrError, match="needs a .mlpackage"):
        lint(int8_model("sesr_like"), "coreml-ane")
    assert main(["lint", str(tmp_path / "x.tflite"), "--target", "gpu"]) == 2


@pytest.mark.parametrize("name,input_size", [("sesr_m3", None), ("esr_tm_s2_k7_c16", (48, 64)), ("pkn", (48, 64))])
def test_edgesr_own_int8_exports_pass_the_gpu_target(name, input_size, tmp_path):
    """At the shape the GPU delegate wants (a fixed one, for the models whose int8 graph has a
    BATCH_MATMUL: edgesr.core.ops.channel_dot lowers to rank 4 there), nothing stays off the GPU."""
    from test_integer_ref_models import zoo_int8

    from edgesr.converters.export import calibration_patches, export_tflite

    path, module = zoo_int8(name)
    if input_size is not None:
        path = tmp_path / f"{name}_{input_size[0]}x{input_size[1]}.tflite"
        export_tflite(module, path, "int8", calibration_patches(None, module.contract, patch=32, count=8),
                      input_size=input_size)
    findings = lint(path, "gpu")
    assert not has_errors(findings), [f.message for f in findings]
    assert not [f for f in findings if f.check in ("rank", "float-island", "op-coverage")]


def test_dynamic_int8_dot_product_is_named_for_the_gpu_target():
    """With dynamic H x W the int8 dot product is rank 5 (EXPAND_DIMS, BATCH_MATMUL, SQUEEZE):
    lint names those ops for the GPU delegate instead of passing the model."""
    from test_integer_ref_models import zoo_int8

    path, _ = zoo_int8("esr_tm_s2_k7_c16")
    flagged = {f.op for f in lint(path, "gpu") if f.check in ("rank", "op-coverage")}
    assert {"EXPAND_DIMS", "SQUEEZE"} <= flagged, flagged


RECORDED = Path(__file__).parent / "data" / "lint_recorded.json"


@functools.cache
def recorded_cases() -> dict:
    """``{case: (artifact path, target)}``: edgesr's own exports (seeded weights) and the
    hand-built graphs, for the targets whose delegate cannot run here."""
    from edgesr.converters.export import deploy_module, export_coreml
    from test_integer_ref_models import _CACHE, zoo_int8

    from edgesr.core.models import create

    cases = {}
    for name in ("sesr_m3", "esr_tm_s2_k7_c16"):
        for target in ("gpu", "nnapi"):
            cases[f"{name}_int8/{target}"] = (zoo_int8(name)[0], target)
    for kind in ("rank6_shuffle", "float_island"):
        for target in ("gpu", "nnapi"):
            cases[f"{kind}/{target}"] = (int8_model(kind), target)
    torch.manual_seed(0)
    module = deploy_module(create("sesr_m3_relu", scale=2))
    for precision in ("fp32", "fp16"):
        path = _CACHE / f"lint_sesr_m3_relu_{precision}.mlpackage"
        if not path.exists():
            export_coreml(module, path, precision)
        cases[f"sesr_m3_relu_{precision}/coreml-ane"] = (path, "coreml-ane")
    return cases


@pytest.mark.parametrize("case", sorted(json.loads(RECORDED.read_text())))
def test_findings_match_the_recorded_output(case):
    """GPU, NNAPI and the ANE cannot run here: each target's findings are pinned to a recorded
    output (severity, check, op), so a rule change shows up as a reviewed data change."""
    path, target = recorded_cases()[case]
    got = [[f.severity, f.check, f.op] for f in lint(path, target)]
    assert got == json.loads(RECORDED.read_text())[case]
