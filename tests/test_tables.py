"""Table writer: document rules over every page of a document, and the review queue."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.config import ValidateConfig
from pipeline.records import Entity, FieldScore
from pipeline.schemas import page_rows_to_table
from pipeline.stages.validate import RuleEngine, load_rules
from pipeline.tables import PageTableWriter, finish_entity_tables


def entity(entity_id: str, kind: str, text: str, page: int, **fields) -> dict:
    values = dict(section="", assertion="present", page_index=page, line_ids=[0], bbox=[10.0, 20.0, 30.0, 40.0],
                  ocr_confidence=0.95, confidence=0.9)
    values.update(fields)
    return Entity(entity_id=entity_id, kind=kind, text=text, **values).to_row()


def page(page_index: int, entities: list[dict], document_id: str = "doc-1") -> dict:
    return {"facility_id": "fac-1", "document_id": document_id, "page_index": page_index,
            "source_uri": f"/r/{document_id}.pdf", "sha256": "0" * 64, "media_type": "application/pdf",
            "document_type_predicted": "discharge_summary", "document_type_confidence": 0.9, "entities": entities}


def test_document_rules_see_pages_from_different_batches_and_the_queue_is_worst_first(tmp_path: Path) -> None:
    rules = RuleEngine(load_rules(), ValidateConfig(today="2025-06-01"))
    writer = PageTableWriter(tmp_path / "tables", tmp_path / "quarantine.parquet", rules)
    # Page 0 and page 1 arrive in separate batches, as streaming gives them.
    writer.write_batch(page_rows_to_table([page(0, [
        entity("adm", "encounter", "Admitted", 0, attribute="admission_date", value="2024-03-05"),
        entity("gout-0", "diagnosis", "Gout", 0),
        entity("dose", "medication", "Warfarin 5", 0, attribute="Warfarin", dose_value=5.0, dose_unit="mg",
               confidence=0.5, flags=["low_confidence"], requires_review=True,
               fields=[FieldScore("dose", "5", 0.5, ["low_confidence"])]),
    ])]))
    writer.write_batch(page_rows_to_table([page(1, [
        entity("dis", "encounter", "Discharged", 1, attribute="discharge_date", value="2024-03-01"),
        entity("gout-1", "diagnosis", "Gout", 1),
    ]), page(0, [entity("gout-other", "diagnosis", "Gout", 0)], document_id="doc-2")]))
    writer.close_pages()

    _, counts = finish_entity_tables(tmp_path / "tables", writer.documents, rules)

    flags = {row["entity_id"]: row["flags"] for row in pq.read_table(tmp_path / "tables" / "entities.parquet").to_pylist()}
    assert flags == {"adm": [], "gout-0": [], "dose": ["low_confidence"], "dis": ["discharge_before_admission"],
                     "gout-1": ["duplicate_across_pages"], "gout-other": []}
    queue = pq.read_table(tmp_path / "tables" / "review_queue.parquet").to_pylist()
    assert [(r["entity_id"], r["field"]) for r in queue] == [("dose", "dose"), ("dis", "discharge_date"),
                                                              ("gout-1", "entity")]
    assert [r["priority"] for r in queue] == sorted((r["priority"] for r in queue), reverse=True)
    assert queue[1]["reason"].startswith("discharge-before-admission: ")
    assert (queue[1]["document_id"], queue[1]["page_index"], queue[1]["bbox"]) == ("doc-1", 1, [10.0, 20.0, 30.0, 40.0])
    assert counts["review_queue"] == 3


def test_a_document_with_too_many_quarantined_pages_is_held_back_its_good_pages_flagged(tmp_path: Path) -> None:
    rules = RuleEngine(load_rules(), ValidateConfig(today="2025-06-01"))
    writer = PageTableWriter(tmp_path / "tables", tmp_path / "quarantine.parquet", rules)
    failed = {**page(1, []), "error_stage": "ocr", "error_type": "worker_died", "error_message": "x"}
    blank = {**page(0, [], document_id="doc-2"), "lines": [], "checkboxes": []}
    writer.write_batch(page_rows_to_table([page(0, [entity("gout", "diagnosis", "Gout", 0)]), failed, blank,
                                           page(1, [entity("ok", "diagnosis", "Gout", 1)], document_id="doc-2")]))
    writer.close_pages()

    assembly, counts = finish_entity_tables(tmp_path / "tables", writer.documents, rules, max_document_error_rate=0.1)

    entities = {row["entity_id"]: row for row in pq.read_table(tmp_path / "tables" / "entities.parquet").to_pylist()}
    assert entities["gout"]["flags"] == ["document_held_back"] and entities["gout"]["requires_review"]
    assert entities["ok"]["flags"] == []
    assert [row["entity_id"] for row in pq.read_table(assembly).to_pylist()] == ["ok"]  # doc-1 kept out of FHIR
    assert counts["documents_held_back"] == 1
    assert writer.blank_pages == 3  # pages without lines or check boxes (none of these test pages has text)
