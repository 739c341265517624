"""Per-stage figures of the run report, summed by the streaming table writer from the rows' timings."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pytest

from pipeline.report import render_stage_table, stage_figures
from pipeline.schemas import page_rows_to_table
from pipeline.stages.base import PageFailure, Stage
from pipeline.tables import PageTableWriter


class _Sleeper(Stage):
    """A stage that works a known time per page and rejects the pages it is told to."""

    name: ClassVar[str] = "sleeper"

    def __init__(self, seconds: float, rejects: tuple[int, ...] = ()):
        super().__init__()
        self.seconds, self.rejects = seconds, rejects

    def process_page(self, row: dict[str, Any]) -> dict[str, Any]:
        return self._guarded(self._work, row)

    def _work(self, row: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.seconds)
        if row["page_index"] in self.rejects:
            raise PageFailure("rejected", "told to reject this page")
        return row


class _Second(_Sleeper):
    name: ClassVar[str] = "second"


def _rows(pages: int) -> list[dict[str, Any]]:
    return [{"facility_id": "fac-1", "document_id": "doc-1", "page_index": i, "source_uri": "/r/doc-1.pdf",
             "sha256": "0" * 64, "media_type": "application/pdf"} for i in range(pages)]


def test_stage_figures_sum_streamed_timings(tmp_path):
    first, second = _Sleeper(0.02, rejects=(1,)), _Second(0.01)
    writer = PageTableWriter(tmp_path / "tables", tmp_path / "quarantine.parquet")
    graph_started = time.time()
    for start in (0, 3):  # two batches of three pages, streamed as the driver sees them
        batch = page_rows_to_table(_rows(6)[start:start + 3])
        writer.write_batch(second.process_batch(first.process_batch(batch)))
    graph_seconds = time.time() - graph_started
    writer.close_pages()
    writer.quarantine.close()

    figures = stage_figures(writer.stage_timings, graph_started, graph_seconds, {"sleeper": 2})

    assert list(figures) == ["sleeper", "second"]  # graph order
    assert figures["sleeper"]["pages_in"] == 6 and figures["sleeper"]["pages_out"] == 5
    assert figures["second"]["pages_in"] == 5 and figures["second"]["pages_out"] == 5  # the rejected page skipped it
    assert figures["sleeper"]["busy_seconds"] >= 6 * 0.02
    assert figures["second"]["busy_seconds"] >= 5 * 0.01
    assert figures["sleeper"]["workers"] == 2 and figures["second"]["workers"] == 1
    for stage, pool in (("sleeper", 2), ("second", 1)):
        timing = writer.stage_timings[stage]
        assert figures[stage]["utilisation"] == pytest.approx(timing.busy_seconds / (pool * graph_seconds), abs=1e-3)
        assert 0 < figures[stage]["first_output_seconds"] <= figures[stage]["last_output_seconds"] <= round(graph_seconds, 2) + 0.01  # rounded to 0.01 s
    # A page leaves the second stage after it left the first.
    assert figures["second"]["first_output_seconds"] >= figures["sleeper"]["first_output_seconds"]
    assert writer.pages.rows + writer.quarantine.rows == 6

    table = "\n".join(render_stage_table(figures))
    assert "| sleeper | 2 |" in table and "| second | 1 |" in table


def _report_over(tmp_path, pages: list[dict], max_page_error_rate: float):
    from pipeline.report import RunReport

    writer = PageTableWriter(tmp_path / "tables", tmp_path / "quarantine.parquet")
    writer.write_batch(page_rows_to_table(pages))
    writer.close_pages()
    writer.quarantine.close()
    return RunReport.build(pages_in=len(pages), tables=writer, entity_counts={}, resources={}, resource_failures=0,
                           skipped={}, wall_seconds=1.0, setup_seconds=0.0, processing_seconds=1.0, graph_seconds=1.0,
                           first_output_seconds=None, pipeline_version="t", terminology_version="t", output=tmp_path,
                           graph_started=0.0, stage_workers={}, max_page_error_rate=max_page_error_rate)


def test_the_run_fails_only_when_pipeline_failures_exceed_the_limit_not_for_rejected_inputs(tmp_path):
    rows = _rows(10)
    rejected = [{**row, "error_stage": "render", "error_type": "corrupt_file", "error_message": "x"} for row in rows[:4]]
    died = {**rows[4], "error_stage": "ocr", "error_type": "worker_died", "error_message": "x"}

    only_rejected = _report_over(tmp_path / "a", [*rejected, *rows[4:]], max_page_error_rate=0.05)
    one_died = _report_over(tmp_path / "b", [*rejected, died, *rows[5:]], max_page_error_rate=0.05)
    tolerated = _report_over(tmp_path / "c", [*rejected, died, *rows[5:]], max_page_error_rate=0.1)

    assert (only_rejected.pages_quarantined, only_rejected.pages_failed, only_rejected.passed) == (4, 0, True)
    assert (one_died.pages_failed, one_died.page_error_rate, one_died.passed) == (1, 0.1, False)
    assert one_died.conserved and tolerated.passed
