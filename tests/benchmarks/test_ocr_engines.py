"""The OCR engine benchmark's scoring and choice, on figures made in code (no model runs)."""

from __future__ import annotations

import pytest

from benchmarks.ocr_engines import OPTIONS, OptionResult, accuracy, choose_default, render_markdown
from pipeline.stages.ocr import OcrStage


def result(option: str, rate: float, f1: float, cer: float) -> OptionResult:
    return OptionResult(option, {}, 8, 10.0, rate, 1.0, f1, cer)


def test_accuracy_is_the_kits_word_bag_f1_and_micro_cer():
    f1, cer = accuracy(["Blood  pressure\n120/80", "abc"], ["Blood pressure 120/80", "abd"])
    assert f1 == pytest.approx(2 * 3 / (4 + 4))  # "abc" vs "abd" shares no word; the rest match
    assert cer == pytest.approx(1 / (len("Blood pressure 120/80") + 3))
    f1, cer = accuracy([""], ["gold text"])
    assert (f1, cer) == (0.0, 1.0)


def test_the_default_is_the_fastest_option_within_the_accuracy_bounds():
    baseline = result("ort_default", 20.0, 0.990, 0.050)
    fast_but_worse = result("fast", 60.0, 0.980, 0.050)
    within = result("within", 35.0, 0.9851, 0.0549)
    cer_too_high = result("cer", 40.0, 0.995, 0.0551)
    assert choose_default([baseline, fast_but_worse, within, cer_too_high], baseline).option == "within"
    assert choose_default([baseline, fast_but_worse], baseline).option == "ort_default"


def test_markdown_names_the_method_the_noise_and_the_choice():
    results = [result("ort_default", 20.0, 0.99, 0.05), result("openvino_bf16_w128", 30.0, 0.99, 0.05)]
    figures = {"pages": 8, "method": "CPU time per page", "chosen": "openvino_bf16_w128",
               "results": [r.__dict__ for r in results],
               "noise": {"option": "ort_default", "first": 20.0, "last": 21.0, "spread_percent": 4.8}}
    markdown = render_markdown(figures)
    assert "| openvino_bf16_w128 | 30.0 | 1.50x | 0.99 | 0.05 |" in markdown
    assert "CPU time per page" in markdown and "4.8%" in markdown and "**openvino_bf16_w128**" in markdown


def test_every_option_builds_an_ocr_stage(tmp_path):
    for settings in OPTIONS.values():
        OcrStage(model_dir=str(tmp_path), cpu_threads=1, **settings)
