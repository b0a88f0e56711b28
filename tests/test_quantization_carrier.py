"""The quantized checkpoint carries its activation ranges into every int8 export.

``edgesr quantize`` (with a few QAT steps) then ``edgesr export CKPT_int8.pt --precisions int8``:
the int8 TFLite model's input, output and every intermediate (scale, zero point) are the nudged
parameters of the checkpoint's ranges, its metadata says so, it predicts what the checkpoint's
int8 simulation predicts, and a calibration folder given to ``export`` changes nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edgesr.quantization import calibrate, fake_quant_module, read_quantized
from edgesr.quantization.arithmetic import nudged_qparams
from edgesr.quantization.graph import trace
from edgesr.quantization.tflite_model import read_model
from test_quantization_common import one_thread, tiny_deploy  # noqa: F401 (fixture)

from edgesr.cli import main
from edgesr.core.checkpoint import DIGEST_KEY, read_checkpoint, save_checkpoint, state_digest
from edgesr.core.contract import read_artifact_metadata
from edgesr.core.data import embedded_image, to_luma
from edgesr.core.evaluate import calibration_patches
from edgesr.core.errors import EdgesrError
from edgesr.core.imageio import write_image

pytest.importorskip("tensorflow")
runtime = pytest.importorskip("edgesr.converters.runtime")
tflite = pytest.importorskip("edgesr.converters.tflite")

pytestmark = pytest.mark.usefixtures("one_thread")


def _photos(folder, crops):
    for name, (photo, ys, xs) in crops.items():
        write_image(folder / f"{name}.png", embedded_image(photo)[ys, xs])
    return folder


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """``edgesr quantize`` of a tiny SESR-M3 ReLU with 3 QAT steps; returns (path, tmp folder)."""
    d = tmp_path_factory.mktemp("carrier")
    ckpt = save_checkpoint(d / "tiny.pt", tiny_deploy("sesr_m3_relu"), form="deploy")
    calib = _photos(d / "calib", {"cat": ("chelsea", slice(40, 200), slice(100, 300)),
                                  "camera": ("camera", slice(100, 260), slice(100, 260))})
    out = d / "tiny_int8.pt"
    assert main(["quantize", str(ckpt), "--calib", str(calib), "--qat-steps", "3", "--patches", "8",
                 "--patch-size", "32", "--out", str(out), "--sets", str(calib)]) == 0
    return out, d


def _qparams(t) -> tuple[float, int]:
    return float(t.scale[0]), int(t.zero_point[0])


def _nudged(lo: float, hi: float) -> tuple[float, int]:
    q = nudged_qparams(lo, hi)
    return q.scale, q.zero_point


def _same(a: tuple[float, int], b: tuple[float, int]) -> bool:
    return a[1] == b[1] and a[0] == pytest.approx(b[0], rel=1e-6)


def test_export_of_a_quantized_checkpoint_uses_its_ranges(quantized, capsys):
    ckpt, d = quantized
    q = read_quantized(ckpt)
    assert q.minmax_ranges is not None and set(q.minmax_ranges) == set(q.activation_ranges)  # w8a16's, saved too
    # A different calibration folder: were it used, the ranges would move (checked below).
    other = _photos(d / "other", {"coffee": ("coffee", slice(0, 200), slice(0, 300))})
    assert main(["export", str(ckpt), "--formats", "tflite", "--precisions", "int8", "--calib", str(other),
                 "--out", str(d / "art")]) == 0
    assert "--calib is ignored" in capsys.readouterr().err
    path = d / "art" / "sesr_m3_relu_x2_int8.tflite"
    tensors, _, inputs, outputs = read_model(path)

    gm = trace(q.module)
    placeholder = next(n.name for n in gm.graph.nodes if n.op == "placeholder")
    last = next(n.args[0].name for n in gm.graph.nodes if n.op == "output")
    assert _same(_qparams(tensors[inputs[0]]), _nudged(*q.activation_ranges[placeholder]))
    assert _same(_qparams(tensors[outputs[0]]), _nudged(*q.activation_ranges[last]))
    # Every int8 activation tensor of the model has the parameters of one of the checkpoint's
    # ranges, and every range is some tensor's (no tensor left to the converter's statistics).
    acts = {_qparams(t) for t in tensors if t.dtype == np.int8 and t.data is None and len(t.scale) == 1}
    want = {_nudged(*r) for r in q.activation_ranges.values()}
    assert all(any(_same(a, w) for w in want) for a in acts), (acts, want)
    assert all(any(_same(a, w) for a in acts) for w in want), (acts, want)
    recalibrated = calibrate(q.module, calibration_patches([embedded_image("coffee")], q.module.contract, 32, 8))
    assert any(not _same(_nudged(*recalibrated[k]), _nudged(*q.activation_ranges[k])) for k in q.activation_ranges)

    prov = read_artifact_metadata(path)["provenance"]["quantization"]  # embedded in the .tflite
    assert prov["ranges_from"] == "checkpoint" and prov["checkpoint"] == str(ckpt) and prov["qat_steps"] == 3
    assert {k: tuple(v) for k, v in prov["activation_ranges"].items()} == q.activation_ranges

    # It is the model the checkpoint's simulation scored: LiteRT's output equals the simulation's
    # on >= 99 % of the pixels of an unseen photo, within 1 LSB everywhere but 0.1 %
    # (the integer kernels round twice where the simulation rounds once per tensor).
    x = to_luma(embedded_image("astronaut"))[None, None, 100:220, 150:310].copy()
    with torch.no_grad():
        sim = fake_quant_module(q.module, q.activation_ranges).eval()(torch.from_numpy(x)).numpy()
    lite = runtime.TFLiteUpscaler(path, q.module.contract)
    got = lite(x)
    lsb = np.rint(np.abs(sim - got) / lite.interpreter.get_output_details()[0]["quantization"][0])
    assert np.mean(lsb == 0) >= 0.99 and np.mean(lsb <= 1) >= 0.999


def test_representative_dataset_changes_nothing(tmp_path):
    """With every int8 tensor's range given, the converter's representative dataset (which its
    API requires) moves no scale, zero point or weight: photo patches and the ramp edgesr uses
    when it has none give the same tensors (only the layer names' counters differ)."""
    model = tiny_deploy("sesr_m3")
    patches = calibration_patches([embedded_image("astronaut")], model.contract, 32, 8)
    ranges = calibrate(model, patches)
    a, b = tmp_path / "photos.tflite", tmp_path / "ramp.tflite"
    a.write_bytes(tflite.convert(model, 1, "int8", patches, "int8", ranges))
    b.write_bytes(tflite.convert(model, 1, "int8", None, "int8", ranges))
    ta, tb = read_model(a)[0], read_model(b)[0]
    assert len(ta) == len(tb)
    for x, y in zip(ta, tb, strict=True):
        assert (x.dtype, x.shape) == (y.dtype, y.shape)
        np.testing.assert_array_equal(x.scale, y.scale)
        np.testing.assert_array_equal(x.zero_point, y.zero_point)
        assert (x.data is None) == (y.data is None)
        if x.data is not None:
            np.testing.assert_array_equal(x.data, y.data)


def test_ranges_that_do_not_fit_the_graph_are_refused(quantized, tmp_path, capsys):
    ckpt, _ = quantized
    state = read_checkpoint(ckpt)
    dropped = sorted(state["activation_ranges"])[1]
    del state["activation_ranges"][dropped]
    state[DIGEST_KEY] = state_digest(state)  # a consistent checkpoint whose ranges miss a tensor
    bad = tmp_path / "bad_int8.pt"
    torch.save(state, bad)
    with pytest.raises(EdgesrError, match=f"missing: {dropped}"):
        read_quantized(bad)
    assert main(["export", str(bad), "--formats", "tflite", "--precisions", "int8", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad_int8.pt" in err[0] and dropped in err[0]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_validate_measures_the_error_against_the_source_checkpoint(quantized, tmp_path, capsys):
    """``edgesr validate ART --reference deploy.pt --source CKPT_int8.pt``: the drop vs HR against
    the float model, the errors against the module the artifact came from (QAT's)."""
    ckpt, d = quantized
    art = d / "art" / "sesr_m3_relu_x2_int8.tflite"
    if not art.exists():
        assert main(["export", str(ckpt), "--formats", "tflite", "--precisions", "int8", "--out", str(d / "art")]) == 0
    out = tmp_path / "v.json"
    status = main(["validate", str(art), "--reference", str(d / "tiny.pt"), "--source", str(ckpt),
                   "--sets", str(d / "calib"), "--json", str(out)])
    r = json.loads(out.read_text())
    assert status == (0 if r["passed"] else 1)
    assert set(r["source_reference_eval"]) == set(r["reference_eval"]) == {"calib"}
    assert r["source_reference_eval"] != r["reference_eval"]  # QAT moved the weights: two models
    assert 0 < r["p999_abs_err"] <= r["max_abs_err"]
    assert "99.9th percentile" in capsys.readouterr().out
