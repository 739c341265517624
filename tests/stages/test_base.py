"""Page-level isolation in the stage base: a batch call that raises is retried page by page."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from pipeline.schemas import page_rows_to_table
from pipeline.stages.base import INTERNAL_ERROR, PageFailure, Stage


def rows(pages: int, document_id: str = "doc-1") -> list[dict[str, Any]]:
    return [{"facility_id": "fac-1", "document_id": document_id, "page_index": i, "source_uri": "/r/x.pdf",
             "sha256": "0" * 64, "media_type": "application/pdf"} for i in range(pages)]


class _BatchedStage(Stage):
    """Works on the whole batch at once (like OCR's single predict call) and raises for the
    whole batch when one page in it is bad: the failure the base must isolate."""

    name: ClassVar[str] = "batched"

    def __init__(self, bad: dict[int, BaseException]):
        super().__init__()
        self.bad, self.calls = bad, []

    def process_pages(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls.append([row["page_index"] for row in rows])
        for row in rows:
            if row["page_index"] in self.bad:
                raise self.bad[row["page_index"]]
        return [{**row, "text_source": "ocr"} for row in rows]


def test_a_batch_that_raises_is_retried_page_by_page_and_only_the_bad_page_is_quarantined() -> None:
    stage = _BatchedStage({2: ValueError("patient John Smith's page")})

    out = stage.process_batch(page_rows_to_table(rows(4))).to_pylist()

    assert stage.calls == [[0, 1, 2, 3], [0], [1], [2], [3]]
    assert [row["error_type"] for row in out] == [None, None, INTERNAL_ERROR, None]
    assert (out[2]["error_stage"], out[2]["error_message"]) == ("batched", "ValueError")  # type, never the text
    assert [row["text_source"] for row in out] == ["ocr", "ocr", None, "ocr"]
    assert all(row["timings"][-1]["stage"] == "batched" for row in out)


def test_a_page_failure_keeps_its_reason_when_isolated() -> None:
    stage = _BatchedStage({0: PageFailure("undecodable_image", "bad size")})

    out = stage.process_batch(page_rows_to_table(rows(2))).to_pylist()

    assert [(row["error_type"], row["error_message"]) for row in out] == [("undecodable_image", "bad size"),
                                                                          (None, None)]


def test_a_fatal_error_is_not_isolated_but_leaves_the_stage() -> None:
    stage = _BatchedStage({1: MemoryError()})

    with pytest.raises(MemoryError):
        stage.process_batch(page_rows_to_table(rows(2)))


class _WrongLength(Stage):
    name: ClassVar[str] = "wrong_length"

    def process_pages(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows[:1]  # a bug: a page goes missing on the way


def test_a_stage_that_loses_a_row_has_it_quarantined_not_dropped() -> None:
    out = _WrongLength().process_batch(page_rows_to_table(rows(3))).to_pylist()

    assert len(out) == 3 and [row["error_type"] for row in out] == [None, None, None]  # page by page: one in, one out


def test_rows_already_failed_pass_through_untouched() -> None:
    stage = _BatchedStage({})
    failed = {**rows(1)[0], "error_stage": "render", "error_type": "corrupt_file", "error_message": "x"}

    out = stage.process_batch(page_rows_to_table([failed, *rows(2)[1:]])).to_pylist()

    assert out[0]["error_stage"] == "render" and stage.calls == [[1]]
