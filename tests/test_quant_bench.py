"""bench/quant.py: every entry is registered, and docs/quant.md renders each row's stages and verdicts."""

from __future__ import annotations


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
