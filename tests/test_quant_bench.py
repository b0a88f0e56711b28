"""bench/quant.py: every entry is registered, and docs/quant.md renders each row's stages and verdicts."""

from __future__ import annotations

import json

import pytest

from conftest import load_bench

from edgesr.core.models import create

@pytest.fixture(scope="module")
def bench():
    return load_bench("quant")


def test_every_trained_entry_is_registered_at_x2(bench):
    for label, key in bench.ZOO:
        name, _, minutes = key.partition("@")  # NAME@MIN: the same model trained for MIN minutes
        assert not minutes or float(minutes) > 0, label
        if not name.startswith("authors:"):
            assert create(name, scale=2).scale == 2, label


def _stage(technique, kept, score, seconds=1.0, details=None):
    return {"technique": technique, "kept": kept, "val_psnr_db": 30.0, "val_drop_db": 0.1, "seconds": seconds,
            "details": details or {}, "score": score}


def test_doc_shows_kept_and_rejected_stages_targets_and_qat_cost(bench, tmp_path):
    stages = [_stage("minmax", True, 0.12), _stage("cle", False, 0.13, details={"pairs": [["a", "b", "relu"]], "skipped": {"c": "x"}}),
              _stage("range_search", True, 0.08), _stage("adaround", True, 0.04, 12.5), _stage("bias_correction", False, 0.05),
              _stage("lsq_qat", True, 0.03, details={"steps": 100, "best_step": 60, "val_psnr_db": []})]
    row = {"label": "SESR-M5", "model": "sesr_m5", "train_steps": 500, "command": "python bench/quant.py --qat-steps 100",
           "minutes": 1.2, "float_psnr": 35.0, "bicubic_psnr": 33.5, "stages": stages, "techniques": ["minmax", "range_search", "adaround", "lsq_qat"],
           "recipe_drop": 0.03, "sensitivity": {"x": 0.02, "first": 0.01, "weights only": 0.005},
           "qat_cost": {"float_train_form_s": 0.1, "float_deploy_s": 0.05, "qat_ema_s": 0.2, "qat_lsq_s": 0.15}}
    doc = tmp_path / "quant.md"
    bench.write_doc({"sesr_m5": row}, doc)
    text = doc.read_text()
    assert "| SESR-M5 (`sesr_m5`) | 500 | 35.00 | +1.50 | 0.120 | (0.130) | 0.080 | 0.040 | (0.050) | 0.030 | range_search, adaround, lsq_qat |" in text
    assert "MATLAB bicubic's (33.50 dB)" in text
    assert "SESR-M5 **0.030**" in text and "SESR-M5 meets" in text and "0.07 dB" in text
    assert "| SESR-M5 | 0.1000 | 0.0500 | 0.2000 | 0.1500 | 1.50x | 3.00x |" in text
    assert "| SESR-M5 | 1.0 | 1.0 | 1.0 | 12.5 | 1.0 | 1.0 |" in text
    assert "weights only 0.005; worst tensors `x` 0.020, `first` 0.010" in text
    assert "1 pair(s) (a->b via relu)" in text
    assert "`python bench/quant.py --qat-steps 100`" in text and "100 LSQ QAT steps" in text
    assert "weights lr 0.0001," in text  # a row without qat_lr ran at the old default, 1e-4
    bench.write_doc({"sesr_m5": {**row, "qat_lr": 1e-3}}, doc)
    assert "weights lr 0.001," in doc.read_text()


def test_doc_has_the_core_ml_and_w8a16_columns(bench, tmp_path):
    """The Core ML W8A8 / w8a16 table: measured drops, a model without a conversion, and an older result."""
    stages = [_stage("minmax", True, 0.12)]
    base = {"train_steps": 500, "command": "python bench/quant.py", "minutes": 1.0, "float_psnr": 35.0, "stages": stages,
            "techniques": ["minmax"], "recipe_drop": 0.12, "sensitivity": {},
            "qat_cost": {"float_train_form_s": 0.1, "float_deploy_s": 0.05, "qat_ema_s": 0.2, "qat_lsq_s": 0.15}}
    rows = {"sesr_m5": {**base, "label": "SESR-M5", "model": "sesr_m5", "w8a16_drop": 0.004, "minmax_drop": 0.3,
                        "coreml_w8a8_minmax_drop": 0.31, "coreml_w8a8_drop": 0.125},
            "pkn": {**base, "label": "PKN", "model": "pkn", "w8a16_drop": None, "minmax_drop": 0.2,
                    "coreml_w8a8_minmax_drop": None, "coreml_w8a8_drop": None},
            "splitsr_s": {**base, "label": "SplitSR-S", "model": "splitsr_s"}}
    doc = tmp_path / "quant.md"
    bench.write_doc(rows, doc)
    text = doc.read_text()
    assert "| SESR-M5 | 0.300 | 0.310 | 0.120 | 0.125 | 0.004 |" in text
    assert ("| PKN | 0.200 | — (no Core ML conversion) | 0.120 | — (no Core ML conversion) | "
            "— (no 16x8 conversion) |") in text
    older = "— (older result: rerun this model)"
    assert f"| SplitSR-S | {older} | {older} | 0.120 | {older} | {older} |" in text


def test_doc_names_the_run_that_trained_reused_checkpoints_and_reads_its_numbers_from_the_rows(bench, tmp_path):
    """``--checkpoints-from``: the doc names the run that trained the checkpoints (from steps.json) and
    its training minutes; the reading paragraphs quote this run's rows, not fixed numbers."""
    trained, out = tmp_path / "quant", tmp_path / "quant2"
    for d, key in ((trained, "sesr_m5"), (trained, "sesr_m5@5")):
        (bench._entry_dir(d, key) / "checkpoints").mkdir(parents=True)
    cmd = "python bench/quant.py --minutes-per-model 1.2"
    (trained / "results.json").write_text(json.dumps({"sesr_m5": {"command": cmd, "minutes": 1.2},
                                                      "sesr_m5@5": {"command": cmd, "minutes": 5.0}}))
    stages = [_stage("minmax", True, 0.12), _stage("range_search", True, 0.15, details={}),
              _stage("lsq_qat", True, 0.03, details={"steps": 10})]
    for st, b in zip(stages[1:], ("9/12", "7/12")):
        st["val_images_better"] = b
    base = {"command": "python bench/quant.py --out OUT", "minutes": 1.0, "float_psnr": 35.0, "bicubic_psnr": 33.5,
            "stages": stages, "techniques": ["minmax", "range_search", "lsq_qat"], "sensitivity": {},
            "minmax_drop": 0.12, "qat_cost": {"float_train_form_s": 0.1, "float_deploy_s": 0.05, "qat_ema_s": 0.2,
                                              "qat_lsq_s": 0.15}}
    rows = {"sesr_m5": {**base, "label": "SESR-M5", "model": "sesr_m5", "train_steps": 100, "recipe_drop": 0.03,
                        "coreml_w8a8_drop": 0.01, "w8a16_drop": 0.004, "w8a16_weights": {"weights": "qat_w8a16"}},
            "sesr_m5@5": {**base, "label": "SESR-M5, 5 min", "model": "sesr_m5", "train_steps": 400, "recipe_drop": 0.02,
                          "coreml_w8a8_drop": 0.05, "w8a16_drop": 0.03}}
    for key in rows:
        src = bench._entry_dir(trained, key) / "steps.json"
        src.write_text(json.dumps({"ckpt": str(bench._entry_dir(trained, key) / "checkpoints" / "last.pt"), "steps": 1}))
        ckpt, steps = bench.train_model("sesr_m5", 1.0, tmp_path, out, key, checkpoints_from=trained)
        assert ckpt.parent.parent == bench._entry_dir(trained, key) and steps == 1  # reused, not trained
    doc = tmp_path / "quant.md"
    bench.write_doc(rows, doc, out)
    text = doc.read_text()
    assert f"the trained checkpoints of every entry come from `{trained}`, trained by `{cmd}`" in text
    assert "trained on T91 for about 1.2 min" in text
    assert "SESR-M5, 5 min (4.0x the steps of the common budget, +1.50 dB vs bicubic): min/max 0.120 dB, default recipe 0.020 dB" in text
    assert ("2 kept stage(s) raised one by more than 0.01 dB (range_search on SESR-M5, +0.030 dB, 9/12; "
            "range_search on SESR-M5, 5 min, +0.030 dB, 9/12)") in text
    assert "raised at least 7 of the 12 photos" in text
    assert "0.020 dB below the int8 simulation's on 1 of 2 rows, above it on SESR-M5, 5 min, 0.030 dB" in text
    assert "QAT w8a16 for 1 row(s) (SESR-M5); the recipe's for 1 row(s) (SESR-M5, 5 min)" in text
    assert "1 of 2 w8a16 drops are within 0.02 dB (the largest 0.030 dB, SESR-M5, 5 min)" in text
