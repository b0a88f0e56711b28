"""The public API as a mobile engineer's export script uses it: one import, real photos."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

import edgesr
from edgesr.core.data import embedded_image


def test_import_is_silent_and_lazy():
    code = "import sys, edgesr; print(sorted(m for m in sys.modules if m.startswith(('torch', 'tensorflow'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() == "[]"  # nothing heavy until an API function is used
    assert set(edgesr.__all__) == {"create", "train", "collapse", "quantize", "export", "validate", "open_artifact"}


def test_api_names_do_not_print_third_party_warnings():
    code = "import edgesr; edgesr.quantize; edgesr.export; edgesr.open_artifact"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "Failed to load" not in done.stderr, done.stderr


def test_train_collapse_quantize_export_validate_open(tmp_path):
    ckpt = edgesr.train("sesr_m3", scale=2, out=tmp_path / "run", steps=30, batch=4, val_every=0, progress=False,
                        device="cpu")
    deploy = edgesr.collapse(ckpt)
    int8 = edgesr.quantize(deploy, calibration=[embedded_image("astronaut"), embedded_image("coffee")], count=16)
    assert int8.activation_ranges and int8.settings["recipe"] is None
    arts = edgesr.export(int8, tmp_path / "arts", formats=("tflite",), precisions=("int8",))
    assert [(a["format"], a["precision"]) for a in arts] == [("tflite", "int8")]
    report = edgesr.validate(arts[0]["path"], deploy)
    assert report["precision"] == "int8" and report["max_abs_err"] is not None

    up = edgesr.open_artifact(arts[0]["path"])
    x = torch.rand(1, 1, 24, 20).numpy()
    y = up(x)
    assert y.shape == (1, 1, 48, 40) and y.dtype == np.float32 and up.contract.scale == 2
    # the model a plain float export would ship agrees with the quantized one to a few int8 steps
    with torch.no_grad():
        ref = deploy(torch.from_numpy(x)).numpy()
    assert float(np.abs(y - ref).max()) < 0.1


def test_unknown_training_setting_is_one_line(tmp_path):
    from edgesr.core.errors import EdgesrError

    try:
        edgesr.train("sesr_m3", out=tmp_path, steps=1, learning_rate=1.0)
    except EdgesrError as exc:
        assert "learning_rate" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("an unknown setting was accepted")
