"""The one LiteRT runner (edgesr.converters.runtime.TFLiteUpscaler) with each kernel family on an int8
SESR export: `edgesr validate --reference-kernels / --kernels`, TFLite's input rounding, and
bit-exactness with the NumPy integer reference through the same Upscaler path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import crop
from edgesr.app.artifacts import open_artifact
from edgesr.converters.runtime import KERNELS, TFLiteUpscaler
from edgesr.quantization.arithmetic import quantize
from edgesr.quantization.integer_ref import IntegerReference, read_model
from test_integer_ref_models import zoo_int8

from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import model_input
from edgesr.core.imageio import write_image


@pytest.fixture(scope="module")
def sesr():
    path, module = zoo_int8("sesr_m3")
    return path, module


@pytest.fixture(scope="module")
def cli_args(sesr, tmp_path_factory):
    path, module = sesr
    d = tmp_path_factory.mktemp("validate_kernels")
    ckpt = save_checkpoint(d / "deploy.pt", module, form="deploy")
    write_image(d / "imgs" / "chelsea.png", crop(embedded_image("chelsea"), 120, 150, 50, 150))
    return d, ["validate", str(path), "--reference", str(ckpt), "--sets", str(d / "imgs"), "--int8-tolerance-db", "100"]


def test_int8_depth_to_space_is_version_2(sesr):
    """The case BUILTIN_REF refused before the version rewrite (model_bytes_for_resolver)."""
    ops = read_model(sesr[0])[1]
    assert [op.version for op in ops if op.name == "DEPTH_TO_SPACE"] == [2]


@pytest.mark.parametrize("flags", [["--reference-kernels"], ["--kernels", "reference"]])
def test_cli_validate_with_reference_kernels(cli_args, flags):
    d, args = cli_args
    out = d / f"v{len(flags)}.json"
    assert main(args + flags + ["--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["passed"] and not r["skipped"]
    assert 20 < next(iter(r["eval"].values()))["psnr_y"] < 60


def test_cli_validate_contradictory_kernels_exit_2(cli_args, capsys):
    _, args = cli_args
    assert main(args + ["--reference-kernels", "--kernels", "xnnpack"]) == 2
    assert "contradicts" in capsys.readouterr().err


@pytest.mark.parametrize("kernels", list(KERNELS))
def test_runner_equals_integer_reference(sesr, kernels):
    """Same quantization, same dequantization: LiteRT and the integer reference differ only in who
    computes, and for this graph they compute the same bits in every kernel family."""
    path, module = sesr
    x = model_input(crop(embedded_image("coffee"), 41, 53, 100, 200), module.contract)
    lite = open_artifact(path, kernels=kernels, num_threads=1)
    assert isinstance(lite, TFLiteUpscaler)
    np.testing.assert_array_equal(lite(x), IntegerReference(path, kernels, contract=module.contract)(x))


def test_input_quantization_rounds_ties_away_from_zero(sesr):
    """TFLite's QUANTIZE: q = clamp(round_half_away(x / scale) + zero_point), not NumPy's ties-to-even."""
    path, module = sesr
    up = TFLiteUpscaler(path, module.contract)
    d = up.interpreter.get_input_details()[0]
    scale, zero_point = d["quantization"]
    k = np.arange(0, 255, dtype=np.float32)
    x = ((k + np.float32(0.5)) * np.float32(scale)).astype(np.float32).reshape(1, 1, 15, 17)
    ties = (x / np.float32(scale)) % 1 == 0.5
    assert (ties & (np.floor(x / np.float32(scale)) % 2 == 0)).any()  # ties where half-to-even rounds down
    up(x)
    seen = up.interpreter.get_tensor(d["index"])
    want = quantize(x.transpose(0, 2, 3, 1), scale, zero_point, -128, 127)
    np.testing.assert_array_equal(seen, want)
    assert (seen != np.clip(np.round(x.transpose(0, 2, 3, 1) / np.float32(scale)) + zero_point, -128, 127)).any()


def test_unknown_kernels(sesr):
    with pytest.raises(EdgesrError, match="unknown LiteRT kernels"):
        TFLiteUpscaler(sesr[0], sesr[1].contract, kernels="gpu")
