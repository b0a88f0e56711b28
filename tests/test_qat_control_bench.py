"""bench/qat_control.py's table: each column is the stated difference of the recorded PSNRs."""

from __future__ import annotations

from conftest import load_bench

from edgesr.quantization.recipe import RecipeConfig


def test_the_table_states_each_drop_against_its_reference(tmp_path):
    record = {"run_dir": "runs/x", "model": "sesr_m5", "scale": 2, "ptq_techniques": ["minmax"],
              "psnr": {"float": {"Set5": 36.300}, "ptq": {"Set5": 36.210}, "qat": {"Set5": 36.320},
                       "qat, distilled": {"Set5": 36.250}, "float fine-tuned": {"Set5": 36.400}},
              "seconds": {"ptq": 10.0, "qat": 50.0}}
    doc = tmp_path / "qat_control.md"
    load_bench("qat_control").write_markdown([record], RecipeConfig(), "python bench/qat_control.py runs/x", doc)
    text = doc.read_text()
    # float, PTQ drop, QAT drop (negative: above float), distilled drop, float gain, QAT below fine-tuned float
    assert "| sesr_m5 x2 (`runs/x`) | 36.300 | 0.090 | -0.020 | 0.050 | 0.100 | 0.080 |" in text
    assert f"{RecipeConfig().qat_steps} steps" in text and "`python bench/qat_control.py runs/x`" in text
