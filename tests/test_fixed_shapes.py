"""Fixed and enumerated input shapes (`edgesr export --input-size HxW`).

The exports: TFLite with a fixed [1, H, W, C] signature, ONNX with static dims, Core ML with a
fixed shape or EnumeratedShapes; the contract records the sizes and the receptive field;
`open_artifact` runs them on photos of any size in tiles of their own size, and the result is
the dynamic artifact's on the whole photo (checked against the runtimes on real photos).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgesr.converters.coreml import check_structure
from edgesr.converters.lint import FIXED_SHAPE_ADVICE, lint
from edgesr.converters.partitions import xnnpack_partitions
from edgesr.converters.runtime import LiteRTModel, coreml_runtime_status
from test_converters_common import tiny_sesr

import edgesr
from edgesr.app.artifacts import open_artifact
from edgesr.cli import main
from edgesr.core import imageio
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.contract import IOContract, read_contract
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import model_input, upscale_photo
from edgesr.core.tiling import FixedShapeUpscaler, axis_windows

SIZE = (40, 56)
"""The fixed LR size of the tests' exports: small, so a real photo needs many tiles in both axes."""
ENUMERATED = [(40, 56), (72, 48)]


@pytest.fixture(scope="module")
def model():
    return tiny_sesr("sesr_m3_relu")  # receptive field 15: halo 7


@pytest.fixture(scope="module")
def arts(model, tmp_path_factory):
    """``{(kind, precision): path}`` of the dynamic and the fixed exports of one model."""
    d = tmp_path_factory.mktemp("shapes")
    out = {}
    for kind, sizes in (("dynamic", None), ("fixed", [SIZE])):
        arts = edgesr.export(model, d / kind, formats=("tflite",), precisions=("fp32", "fp16", "int8"), input_sizes=sizes)
        arts += edgesr.export(model, d / kind, formats=("onnx", "coreml"), precisions=("fp32",), input_sizes=sizes)
        for a in arts:
            out[(kind, a["format"], a["precision"])] = a["path"]
    (enum,) = edgesr.export(model, d / "enumerated", formats=("coreml",), precisions=("fp32",), input_sizes=ENUMERATED)
    out[("enumerated", "coreml", "fp32")] = enum["path"]
    return out


# --------------------------------------------------------------------------- the files


def test_contract_records_the_sizes_and_the_receptive_field(arts, model):
    for (kind, fmt, prec), path in arts.items():
        c = read_contract(path)
        want = {"dynamic": None, "fixed": (SIZE,), "enumerated": tuple(ENUMERATED)}[kind]
        assert c.input_sizes == want, path
        assert c.receptive_field == (None if want is None else model.receptive_field), path
        if kind == "dynamic":  # a dynamic artifact's contract reads as before
            assert "input_sizes" not in c.to_dict() and "receptive_field" not in c.to_dict()


def test_tflite_signature_is_fixed_and_refuses_other_sizes(arts):
    h, w = SIZE
    for prec in ("fp32", "fp16", "int8"):
        m = LiteRTModel(arts[("fixed", "tflite", prec)])
        inp, out = m.input_details(), m.output_details()
        assert list(inp["shape"]) == list(inp["shape_signature"]) == [1, h, w, 1]
        assert list(out["shape_signature"]) == [1, 2 * h, 2 * w, 1]
        with pytest.raises(EdgesrError, match=rf"takes input shape \[1, {h}, {w}, 1\]"):
            m.run(np.zeros((1, h + 1, w, 1), inp["dtype"]))
        dyn = LiteRTModel(arts[("dynamic", "tflite", prec)]).input_details()
        assert list(dyn["shape_signature"]) == [1, -1, -1, 1]


def test_onnx_dims_are_static(arts):
    import onnx

    m = onnx.load(arts[("fixed", "onnx", "fp32")])
    dims = [[d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
            for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info)]
    assert dims[0] == [1, 1, *SIZE] and dims[1] == [1, 1, 2 * SIZE[0], 2 * SIZE[1]]
    assert all(isinstance(v, int) and v > 0 for d in dims for v in d), dims


def test_coreml_shapes_fixed_and_enumerated(arts):
    fixed = check_structure(arts[("fixed", "coreml", "fp32")], "fp32", 1, [SIZE])
    assert fixed["passed"], fixed["problems"]
    assert fixed["inputs"]["input"]["shape"] == [1, 1, *SIZE] and not fixed["inputs"]["input"]["ranges"]
    enum = check_structure(arts[("enumerated", "coreml", "fp32")], "fp32", 1, ENUMERATED)
    assert enum["passed"], enum["problems"]
    assert sorted(enum["inputs"]["input"]["enumerated"]) == sorted([1, 1, h, w] for h, w in ENUMERATED)
    # each is refused as what it is not
    assert not check_structure(arts[("fixed", "coreml", "fp32")], "fp32", 1)["passed"]
    assert not check_structure(arts[("dynamic", "coreml", "fp32")], "fp32", 1, [SIZE])["passed"]


# --------------------------------------------------------------------------- tiled = whole


@pytest.mark.parametrize("fmt,prec", [("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("onnx", "fp32")])
def test_fixed_artifact_on_a_real_photo_equals_the_dynamic_one(arts, fmt, prec, gray_photo, photo):
    """Tiles of the fixed size with the receptive-field halo give the dynamic artifact's output
    on the whole photo: every value identical (int8: the same integer arithmetic on the same
    quantized inputs; float (fp16 weights are dequantized to float32 at load): the same
    per-output sums, measured bit-identical on LiteRT's XNNPACK and ONNX Runtime's CPU kernels)."""
    fixed, dynamic = open_artifact(arts[("fixed", fmt, prec)]), open_artifact(arts[("dynamic", fmt, prec)])
    assert isinstance(fixed, FixedShapeUpscaler) and not isinstance(dynamic, FixedShapeUpscaler)
    x = model_input(gray_photo[37:300, 11:400], fixed.contract)  # 263 x 389: ragged last tiles both ways
    a, b = fixed(x), dynamic(x)
    assert a.shape == b.shape == (1, 1, 2 * 263, 2 * 389)
    assert np.array_equal(a, b), f"max |diff| {np.abs(a - b).max():.3g}, {int((a != b).sum())} values differ"
    # the whole photo path (chroma, rounding) on an RGB photo
    assert np.array_equal(upscale_photo(fixed, photo), upscale_photo(dynamic, photo))


def test_enumerated_coreml_on_the_mil_interpreter_equals_the_dynamic_package(arts, photo):
    if coreml_runtime_status() is not None:
        pytest.skip(coreml_runtime_status())
    dynamic = open_artifact(arts[("dynamic", "coreml", "fp32")], precision="fp32")
    x = model_input(photo[20:150, 30:200], dynamic.contract)  # 130 x 170
    ref = dynamic(x)
    for kind in ("fixed", "enumerated"):
        up = open_artifact(arts[(kind, "coreml", "fp32")], precision="fp32")
        assert isinstance(up, FixedShapeUpscaler)
        assert np.array_equal(up(x), ref), kind
    enum = open_artifact(arts[("enumerated", "coreml", "fp32")], precision="fp32")
    # the size that needs no padding (exact) is chosen: 72 rows do not fit 50, 56 columns do not fit 50
    assert enum.choose_size(50, 300) == (40, 56) and enum.choose_size(300, 50) == (72, 48)


@pytest.mark.parametrize("fmt,prec", [("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("coreml", "fp32")])
def test_a_photo_smaller_than_the_fixed_size_runs_at_its_own_size(arts, fmt, prec, gray_photo):
    """No window fits inside it: the same file runs at the photo's size (LiteRT non-strict
    resize, ONNX Runtime with symbolic H and W, the MIL interpreter): the dynamic values."""
    if fmt == "coreml" and coreml_runtime_status() is not None:
        pytest.skip(coreml_runtime_status())
    opts = {"precision": "fp32"} if fmt == "coreml" else {}
    fixed = open_artifact(arts[("fixed", fmt, prec)], **opts)
    dynamic = open_artifact(arts[("dynamic", fmt, prec)], **opts)
    x = model_input(gray_photo[200 : 200 + SIZE[0] - 9, 100 : 100 + SIZE[1] + 50], fixed.contract)  # short in H
    assert fixed.small is not None
    assert np.array_equal(fixed(x), dynamic(x))


def test_without_an_any_size_runner_a_small_photo_is_padded_at_the_edge(arts, gray_photo):
    """The phone's way (and Core ML's on macOS): pad by repeating the last row. Only the outputs
    within the halo of the padded edge can differ from the dynamic model's; the rest is identical."""
    opened = open_artifact(arts[("fixed", "tflite", "fp32")])
    padded = FixedShapeUpscaler(opened.inner, [SIZE], opened.receptive_field)  # no `small`: pads
    dynamic = open_artifact(arts[("dynamic", "tflite", "fp32")])
    h, w = SIZE[0] - 9, SIZE[1] + 50
    x = model_input(gray_photo[200 : 200 + h, 100 : 100 + w], padded.contract)
    a, b = padded(x), dynamic(x)
    assert a.shape == b.shape == (1, 1, 2 * h, 2 * w)
    keep = 2 * (h - padded.receptive_field // 2)
    assert np.array_equal(a[:, :, :keep], b[:, :, :keep])
    assert not np.array_equal(a[:, :, keep:], b[:, :, keep:])  # the repeated rows are not the model's zero padding


def test_axis_windows_cover_the_axis_and_keep_only_full_context():
    for length, size, halo in [(263, 40, 7), (40, 40, 7), (41, 40, 7), (500, 15, 7), (9, 40, 7)]:
        wins = axis_windows(length, size, halo)
        assert wins[0][1] == 0 and wins[-1][2] == length
        for (start, k0, k1), nxt in zip(wins, wins[1:] + [None]):
            assert start + size <= max(length, size) and k0 < k1
            assert k0 - start >= halo or start == 0
            assert start + size - k1 >= halo or start + size >= length
            if nxt is not None:
                assert nxt[1] == k1
    with pytest.raises(EdgesrError, match="nothing between two halos"):
        axis_windows(100, 14, 7)


def test_validate_scores_the_fixed_artifact_like_the_dynamic_one(arts, model):
    dyn = edgesr.validate(arts[("dynamic", "tflite", "int8")], model)
    fix = edgesr.validate(arts[("fixed", "tflite", "int8")], model)
    assert fix["passed"] and fix["eval"] == dyn["eval"] and fix["max_abs_err"] == dyn["max_abs_err"]


# --------------------------------------------------------------------------- delegates


def test_fixed_tflite_still_runs_whole_on_xnnpack(arts):
    for prec in ("fp32", "int8"):
        fixed = xnnpack_partitions(arts[("fixed", "tflite", prec)])
        dyn = xnnpack_partitions(arts[("dynamic", "tflite", prec)], input_shape=[1, *SIZE, 1])
        assert fixed["partitions"] == 1 and fixed["ops_outside"] == [], fixed
        assert fixed["delegated_ops"] == dyn["delegated_ops"]


@pytest.mark.parametrize("target", ["gpu", "nnapi"])
def test_lint_recommends_a_fixed_size_only_for_dynamic_tflite(arts, target, capsys):
    found = [f for f in lint(arts[("dynamic", "tflite", "int8")], target) if f.check == "dynamic-shape"]
    assert len(found) == 1 and "--input-size" in found[0].message
    assert found[0].source == FIXED_SHAPE_ADVICE[target][1]
    assert not [f for f in lint(arts[("fixed", "tflite", "int8")], target) if f.check == "dynamic-shape"]
    main(["lint", arts[("dynamic", "tflite", "int8")], "--target", target, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert any("--input-size" in f["message"] and f["source"] for f in report["findings"])


def test_lint_recommends_fixed_or_enumerated_shapes_for_the_neural_engine(arts):
    found = [f for f in lint(arts[("dynamic", "coreml", "fp32")], "coreml-ane") if f.check == "dynamic-shape"]
    assert len(found) == 1 and "--input-size 360x640,720x1280" in found[0].message and "forums" in found[0].source
    for kind in ("fixed", "enumerated"):
        assert not [f for f in lint(arts[(kind, "coreml", "fp32")], "coreml-ane") if f.check == "dynamic-shape"], kind


# --------------------------------------------------------------------------- bad input


def test_contract_checks_input_sizes():
    c = IOContract(scale=2, input_sizes=((40, 56),), receptive_field=15)
    assert IOContract.from_dict(json.loads(json.dumps(c.to_dict())), "m.tflite") == c
    for bad in ([], [[40]], [[0, 5]], [[4.0, 5]], [[True, 5]], "40x56", [[40, 56], [40, 56]]):
        with pytest.raises(EdgesrError, match=r"^m\.tflite: .*input_sizes"):
            IOContract.from_dict({"scale": 2, "input_sizes": bad, "receptive_field": 15}, "m.tflite")
    with pytest.raises(EdgesrError, match="needs the receptive_field"):
        IOContract.from_dict({"scale": 2, "input_sizes": [[40, 56]]}, "m.tflite")
    with pytest.raises(EdgesrError, match="receptive_field"):
        IOContract.from_dict({"scale": 2, "receptive_field": 0}, "m.tflite")


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    return str(save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", model))


@pytest.mark.parametrize("argv,words", [
    (["--input-size", "0x56"], ["--input-size", "'0x56'"]),
    (["--input-size", "40"], ["--input-size", "'40'"]),
    (["--input-size", "40x56x2"], ["'40x56x2'"]),
    (["--input-size", "40x56,40x56"], ["given twice"]),
    (["--input-size", "4000x4000"], ["EDGESR_MAX_PIXELS"]),
    (["--input-size", "40x56,72x48", "--formats", "tflite"], ["enumerated shapes are Core ML only", "tflite"]),
    (["--input-size", "14x56", "--formats", "onnx"], ["14x56", "more than 14 pixels"]),
    (["--input-size", "40x56", "--formats", "executorch"], ["executorch", "dynamic"]),
])
def test_cli_refuses_bad_sizes_in_one_line_writing_nothing(ckpt, tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.setattr(imageio, "MAX_PIXELS", 1_000_000)
    out = tmp_path / "out"
    assert main(["export", ckpt, "-o", str(out), "--precisions", "fp32", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgesr: error:") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err
    assert not out.exists()


def test_cli_export_with_a_fixed_size(ckpt, tmp_path, capsys):
    assert main(["export", ckpt, "-o", str(tmp_path), "--formats", "onnx", "--precisions", "fp32",
                 "--input-size", "40x56", "--json"]) == 0
    (art,) = json.loads(capsys.readouterr().out)
    assert read_contract(art["path"]).input_sizes == ((40, 56),)
