"""bench/zoo.py: every benchmarked entry exists at x2 and x4, and the report renders its rows."""

from __future__ import annotations

import argparse

import pytest

from conftest import load_bench

from edgesr.core.models import create

@pytest.fixture(scope="module")
def zoo():
    return load_bench("zoo")


@pytest.mark.parametrize("scale", [2, 4])
def test_every_benchmarked_model_is_registered(zoo, scale):
    for label, name_of in zoo.ZOO:
        model = create(name_of(scale), scale=scale)
        assert model.scale == scale, label


def test_report_lists_rows_published_numbers_and_failures(zoo, tmp_path):
    rows = [
        {"label": "eSR-MAX K7 C13", "model": "eSR-MAX_s2_K7_C13", "scale": 2, "steps": 7, "params": 2548,
         "gmacs_720p": 0.587, "heavy": False, "sets": {"Set5": {"psnr_y": 30.5, "ssim_y": 0.9}},
         "tflite": {"fp32": {"latency_ms": 12.0}, "int8": "export failed: no int8 max"},
         "budget_min": 0.5, "device": "cpu", "command": "python bench/zoo.py --minutes-per-model 0.5"},
        {"label": "SplitSR (paper)", "model": "splitsr", "scale": 4, "steps": 1, "params": 1642128,
         "gmacs_720p": 94.3, "heavy": True, "sets": {"Set5": {"psnr_y": 25.0, "ssim_y": 0.7}}, "tflite": "skipped (heavy on CPU)"},
        {"label": "SESR-M5", "model": "sesr_m5", "scale": 2, "steps": 5, "params": 13700, "gmacs_720p": 3.1,
         "heavy": False, "sets": {"Set5": {"psnr_y": 35.0, "ssim_y": 0.95}},
         "tflite": {"fp32": {"latency_ms": 20.0}, "int8": {"latency_ms": 30.0, "set5_psnr_drop": 0.1234,
                                                         "qat_steps": 200, "set5_psnr_drop_recipe": 0.0876}}},
        {"label": "PKN", "model": "pkn", "scale": 2, "steps": 6, "params": 1000, "gmacs_720p": 1.0,  # measured before
         "heavy": False, "sets": {"Set5": {"psnr_y": 33.0, "ssim_y": 0.93}},  # the recipe: plain QAT, not shown
         "tflite": {"fp32": {"latency_ms": 20.0}, "int8": {"latency_ms": 30.0, "set5_psnr_drop": 0.5,
                                                         "qat_steps": 200, "set5_psnr_drop_qat": 0.3}}},
        {"label": "SplitSR (paper)", "model": "splitsr", "scale": 2, "steps": 2, "params": 1635204, "gmacs_720p": 94.0,
         "heavy": False, "sets": {"Set5": {"psnr_y": 24.0, "ssim_y": 0.6}}, "reprofiled": True,
         "tflite": {"fp32": {"latency_ms": 900.0}, "int8": {"latency_ms": 950.0, "set5_psnr_drop": 4.0,
                                                          "recipe": "recipe not run: 94 GMACs per 720p frame"}}},
    ]
    args = argparse.Namespace(command="python bench/zoo.py --minutes-per-model 1", minutes_per_model=1.0, device="cpu", out=tmp_path,
                              batch=16, lr_patch=32, lr=5e-4)
    doc = tmp_path / "zoo.md"
    zoo.write_markdown(rows, None, args, doc, "zoo_pareto.png")
    text = doc.read_text()
    assert "| eSR-MAX K7 C13 (`eSR-MAX_s2_K7_C13`) | x2 | 7 | 2,548 | 0.59 | 30.50 / 0.9000 |" in text
    assert "Set5 34.94" in text  # the authors' published number beside ours
    assert "eSR-MAX K7 C13 x2, TFLite int8: export failed: no int8 max" in text and "1-7 optimizer steps" in text
    assert "scored on Set5/Set14 only" in text
    assert "| int8 drop PTQ (dB) | int8 drop, recipe (dB) |" in text
    assert "| 0.123 | 0.088 | 20.0 | 30.0 |" in text  # PTQ, then what edgesr run ships
    assert "| 0.500 | — | 20.0 | 30.0 |" in text  # an older row's plain-QAT drop is not passed off as the recipe's
    assert "SplitSR (paper) x2: recipe not run: 94 GMACs per 720p frame" in text  # why its recipe cell is empty
    assert "The TFLite columns of SplitSR (paper) x2 were re-measured" in text
    # each row's own budget and command (rows accumulate across invocations), not this invocation's
    assert "**0.5 / 1 min of training" in text
    assert "`python bench/zoo.py --minutes-per-model 0.5`, then `python bench/zoo.py --minutes-per-model 1`" in text
    assert "negative recipe drop" not in text
    rows[2]["tflite"]["int8"]["set5_psnr_drop_recipe"] = -0.05  # int8 above float: QAT also trained it
    zoo.write_markdown(rows, None, args, doc, "zoo_pareto.png")
    assert "- A negative recipe drop (SESR-M5 x2): the int8 model scores above" in doc.read_text()
    zoo.write_plot(rows, tmp_path / "zoo_pareto.png")
    assert (tmp_path / "zoo_pareto.png").stat().st_size > 1000
