"""Page rows with entities, as the extract stage hands them to the code and validate stages."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.records import Entity


def make_entity(kind: str, text: str, line: int = 0, **fields: Any) -> Entity:
    """An extracted (uncoded) entity on one line of page 0."""
    values: dict[str, Any] = {
        "section": "",
        "assertion": "present",
        "page_index": 0,
        "line_ids": [line],
        "bbox": [80.0, 100.0 + 30 * line, 400.0, 120.0 + 30 * line],
        "ocr_confidence": 0.96,
        "confidence": 0.9,
    }
    values.update(fields)
    return Entity(entity_id=f"ent-{kind}-{line}", kind=kind, text=text, **values)


def make_page_row(entities: list[Entity] | None = None, page_index: int = 0, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "facility_id": "fac-1",
        "document_id": "doc-1",
        "page_index": page_index,
        "source_uri": "/records/fac-1/doc-1.pdf",
        "sha256": "0" * 64,
        "media_type": "application/pdf",
        "text_source": "ocr",
        "entities": [e.to_row() for e in entities or []],
    }
    row.update(values)
    return row


@pytest.fixture(name="make_entity")
def make_entity_fixture():
    """`make_entity(kind, text, line=0, **fields)`."""
    return make_entity


@pytest.fixture(name="make_page_row")
def make_page_row_fixture():
    """`make_page_row(entities, page_index=0, **columns)`."""
    return make_page_row
