"""LexiconExtractStage wiring: page lines in, entities out, failed rows untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.schemas import page_rows_to_table
from pipeline.stages.extract import LexiconExtractStage


def lines(*rows: tuple[float, float, str]) -> list[dict]:
    """Line rows as OCR writes them, from (x, y, text)."""
    out = []
    for i, (x, y, text) in enumerate(rows):
        x1 = x + 9.0 * len(text)
        out.append({"line_id": i, "text": text, "confidence": 0.95, "bbox": [x, y, x1, y + 20],
                    "polygon": [[x, y], [x1, y], [x1, y + 20], [x, y + 20]]})
    return out


PAGE_LINES = lines((80, 70, "MRN: 3000002"), (80, 130, "PAST MEDICAL HISTORY:"), (80, 160, "- Essential hypertension"),
                   (80, 200, "HOME MEDICATIONS:"), (80, 230, "- Metformin 500 mg PO BID"))


@pytest.fixture(scope="module")
def stage(terminology_index_path: Path) -> LexiconExtractStage:
    return LexiconExtractStage(index_path=str(terminology_index_path))


def row(page_lines: list[dict] | None, page_index: int = 0, **values) -> dict:
    return {"facility_id": "fac-1", "document_id": "doc-1", "page_index": page_index, "source_uri": "/r/doc-1.pdf",
            "sha256": "0" * 64, "media_type": "application/pdf", "text_source": "ocr", "lines": page_lines, **values}


def test_page_lines_become_entities(stage: LexiconExtractStage) -> None:
    (out,) = stage.process_batch(page_rows_to_table([row(PAGE_LINES, page_index=2)])).to_pylist()

    found = {(e["kind"], e["text"]) for e in out["entities"]}
    assert found == {("demographic", "3000002"), ("diagnosis", "Essential hypertension"),
                     ("medication", "Metformin 500 mg")}
    assert all(e["page_index"] == 2 and e["entity_id"].startswith("ent-") for e in out["entities"])
    assert [t["stage"] for t in out["timings"]] == ["extract"]


def test_page_without_lines_has_no_entities(stage: LexiconExtractStage) -> None:
    (out,) = stage.process_batch(page_rows_to_table([row(None)])).to_pylist()

    assert out["entities"] == [] and out["error_stage"] is None


def test_rows_failed_upstream_pass_through_untouched(stage: LexiconExtractStage) -> None:
    failed = row(PAGE_LINES, error_stage="ocr", error_type="undecodable_image", error_message="bad pixels")
    batch = page_rows_to_table([failed])

    assert stage.process_batch(batch).to_pylist() == batch.to_pylist()


@pytest.mark.parametrize("confidence, kinds", [(0.9, ["medication"]), (0.3, [])])
def test_a_confident_document_type_decides_what_unheaded_lines_are(stage: LexiconExtractStage, confidence: float,
                                                                   kinds: list[str]) -> None:
    # A dose without a unit is no strict medication match: only a prescription's lines are read as medications.
    unheaded = lines((80, 70, "Dr. A. Smith, 1 Main St"), (80, 130, "Metformin 500 BID"))

    (out,) = stage.process_batch(page_rows_to_table([row(unheaded, document_type_predicted="prescription",
                                                         document_type_confidence=confidence)])).to_pylist()

    assert [e["kind"] for e in out["entities"]] == kinds
