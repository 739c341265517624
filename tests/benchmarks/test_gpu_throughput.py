"""The GPU throughput benchmark: a clear stop without a GPU, and its figures on hand-computed cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.gpu_throughput import busy_fractions, main, render_markdown, stage_rates, tokens_per_page


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this node has nvidia-smi")
def test_without_a_gpu_it_stops_with_a_message_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "results"), "--documents", "1"]) == 2

    err = capsys.readouterr().err
    assert "no NVIDIA GPU" in err and "nvidia-smi" in err
    assert not (tmp_path / "results").exists()


def test_busy_fraction_is_the_mean_utilisation_of_each_gpu() -> None:
    # GPU0: (50 + 100) / 2 = 75 %; GPU1: (100 + 0) / 2 = 50 %.
    assert busy_fractions([[50, 100], [100, 0]]) == [0.75, 0.5]
    assert busy_fractions([]) == []


def test_stage_rate_is_pages_over_busy_seconds_per_worker() -> None:
    rows = stage_rates(10, {"ocr": 20.0, "render": 5.0}, {"ocr": 4, "render": None})

    # OCR: 20 busy seconds over 4 actors = 5 s for 10 pages -> 10 / 5 x 3600 = 7200 pages/hour.
    assert rows[0] == {"stage": "ocr", "pool_size": 4, "busy_seconds": 20.0, "pages_per_hour": 7200.0}
    assert rows[1]["pages_per_hour"] is None  # tasks: no fixed pool to divide by


def test_tokens_per_page_averages_the_token_columns(tmp_path: Path) -> None:
    pq.write_table(pa.table({"page_index": [0, 1, 2], "llm_output_tokens": [100, None, 300],
                             "llm_prompt_tokens": [1000, 2000, None]}), tmp_path / "pages.parquet")

    assert tokens_per_page(tmp_path / "pages.parquet") == {"llm_output_tokens": 200.0, "llm_prompt_tokens": 1500.0}


def test_the_markdown_report_carries_every_figure() -> None:
    result = {
        "metadata": {"date": "2026-11-22T09:00:00+00:00", "gpus": "H100 80 GiB", "overrides": ["ocr=paddle_gpu"]},
        "plan": "GPU plan ...", "pages_in": 10, "pages_processed": 9, "pages_quarantined": 1, "conserved": True,
        "processing_seconds": 12.0, "pages_per_hour": 3000.0, "gpu_sampling": "pynvml", "gpu_samples": 12,
        "gpu_busy_fraction": [0.8], "tokens_per_page": {},
        "stages": stage_rates(9, {"ocr": 20.0}, {"ocr": 4}),
    }

    text = render_markdown(result)

    assert "3000.0 pages/hour" in text and "GPU0 80%" in text and "no LLM token columns" in text
    assert "| ocr | 4 | 20.0 | 6480.0 |" in text
