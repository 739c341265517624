"""The DuckDB-paged queue: order, keyset paging, filters, counts, items and lines."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.review.queue import QueueFilter, ReviewQueue, lines_around
from pipeline.review.store import item_id_of
from pipeline.schemas import PAGES_TABLE_SCHEMA, REVIEW_QUEUE_SCHEMA


def synthetic_output(root: Path, rows: int) -> Path:
    """An output folder with only a queue and a pages table: what the queue reads at start."""
    tables = root / "tables"
    tables.mkdir(parents=True)
    kinds = ["medication", "lab", "diagnosis"]
    queue = pa.table({
        "facility_id": [f"fac-{i % 2}" for i in range(rows)], "document_id": [f"doc-{i % 5}" for i in range(rows)],
        "page_index": [0] * rows, "bbox": [[0.0, 0.0, 1.0, 1.0]] * rows, "entity_id": [f"ent-{i}" for i in range(rows)],
        "kind": [kinds[i % 3] for i in range(rows)], "field": ["value"] * rows, "value": [str(i) for i in range(rows)],
        "confidence": [0.5] * rows, "reason": ["low_confidence: 0.50 < 0.75" if i % 2 else "dose-x: out; code-format: bad"
                                               for i in range(rows)],
        "priority": [round((i * 7919 % rows) / rows, 4) for i in range(rows)]}, schema=REVIEW_QUEUE_SCHEMA)
    pq.write_table(queue, tables / "review_queue.parquet")
    pages = [{"facility_id": f"fac-{d % 2}", "document_id": f"doc-{d}", "page_index": 0, "source_uri": "/x.pdf",
              "sha256": "0", "media_type": "application/pdf", "document_type": "lab_report" if d == 0 else None,
              "document_type_predicted": "discharge_summary", "document_type_confidence": 0.9} for d in range(5)]
    pq.write_table(pa.Table.from_pylist(pages, schema=PAGES_TABLE_SCHEMA), tables / "pages.parquet")
    return root


def test_pages_walk_the_whole_queue_worst_first(tmp_path: Path):
    queue = ReviewQueue([synthetic_output(tmp_path, 230)])
    seen, after = [], 0
    while page := queue.page(QueueFilter(), after, 50):
        seen += page
        after = page[-1]["seq"]
    assert len(seen) == 230 and len({r["item_id"] for r in seen}) == 230
    assert [r["priority"] for r in seen] == sorted((r["priority"] for r in seen), reverse=True)


def test_filters_counts_and_document_types(tmp_path: Path):
    queue = ReviewQueue([synthetic_output(tmp_path, 60)])
    assert queue.facets["kind"] == ["diagnosis", "lab", "medication"]
    assert queue.facets["reason"] == ["code-format", "dose-x", "low_confidence"]
    assert queue.facets["document_type"] == ["discharge_summary", "lab_report"]  # the hint wins for doc-0
    labs = queue.page(QueueFilter(kind="lab"), 0, 100)
    assert len(labs) == 20 and {r["kind"] for r in labs} == {"lab"}
    assert len(queue.page(QueueFilter(reason="code-format"), 0, 100)) == 30
    assert all(r["priority"] >= 0.5 for r in queue.page(QueueFilter(min_priority=0.5), 0, 100))
    assert {r["document_type"] for r in queue.page(QueueFilter(document_type="lab_report"), 0, 100)} == {"lab_report"}
    assert queue.counts(QueueFilter(facility_id="fac-0")) == {"open": 30, "done": 0, "skipped": 0}


def test_decisions_move_items_between_statuses(tmp_path: Path):
    queue = ReviewQueue([synthetic_output(tmp_path, 10)])
    first, second = queue.page(QueueFilter(), 0, 2)
    for item, action in ((first, "accept"), (second, "skip")):
        queue.record(0, {"reviewer": "rita", "role": "reviewer", "item_id": item["item_id"], "action": action})
    assert queue.counts(QueueFilter()) == {"open": 8, "done": 1, "skipped": 1}
    assert queue.page(QueueFilter(), 0, 1)[0]["seq"] == 3
    assert queue.page(QueueFilter(status="skipped"), 0, 5)[0]["item_id"] == second["item_id"]
    # A restarted server reads the same states from the log.
    assert ReviewQueue([tmp_path]).counts(QueueFilter()) == {"open": 8, "done": 1, "skipped": 1}


def test_item_ids_match_the_python_digest(tmp_path: Path):
    queue = ReviewQueue([synthetic_output(tmp_path, 3)])
    row = queue.page(QueueFilter(), 0, 1)[0]
    item = queue.item(0, row["item_id"])
    assert row["item_id"] == item_id_of(item["facility_id"], item["document_id"], item["entity_id"], item["field"],
                                        item["reason"])
    assert queue.item(1, row["item_id"]) is None and queue.item(0, "0" * 16) is None


def test_two_output_folders_form_one_queue(tmp_path: Path):
    queue = ReviewQueue([synthetic_output(tmp_path / "a", 5), synthetic_output(tmp_path / "b", 7)])
    rows = queue.page(QueueFilter(), 0, 100)
    assert len(rows) == 12 and {r["out"] for r in rows} == {0, 1}


def test_a_folder_without_a_queue_is_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        ReviewQueue([tmp_path])


def test_lines_around_the_field_in_reading_order():
    lines = [{"line_id": i, "text": f"line {i}", "confidence": 1.0, "bbox": [0, 20 * (9 - i), 10, 20 * (9 - i) + 10]}
             for i in range(10)]  # ids run bottom to top
    around = lines_around(lines, [5], 2)
    assert [l["line_id"] for l in around] == [7, 6, 5, 4, 3]
    assert [l["is_field"] for l in around] == [False, False, True, False, False]
    assert lines_around(lines, [42], 2) == []


def test_a_store_output_with_tables_as_part_folders_reads_as_one_queue(tmp_path: Path):
    single = synthetic_output(tmp_path / "single", 60)
    parted = synthetic_output(tmp_path / "parted", 60)
    for name in ("review_queue", "pages"):  # the store's layout: one part per patient shard
        table = pq.read_table(parted / "tables" / f"{name}.parquet")
        (parted / "tables" / f"{name}.parquet").unlink()
        for number, offset in enumerate(range(0, table.num_rows, 25)):
            folder = parted / "tables" / name
            folder.mkdir(exist_ok=True)
            pq.write_table(table.slice(offset, 25), folder / f"part-{number:04d}.parquet")

    def walk(queue: ReviewQueue) -> list[tuple[str, str | None]]:
        return [(item["entity_id"], item["document_type"]) for item in queue.page(QueueFilter(), 0, 100)]

    assert walk(ReviewQueue([parted])) == walk(ReviewQueue([single]))
    assert len(walk(ReviewQueue([parted]))) == 60
