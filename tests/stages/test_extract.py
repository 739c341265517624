"""LexiconExtractStage wiring: page lines in, entities out, failed rows untouched."""

from __future__ import annotations

import math
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


def test_the_page_text_is_written_in_reading_order(stage: LexiconExtractStage) -> None:
    left, right = [f"left column sentence number {i}" for i in range(3)], [f"right column line {i} of text" for i in range(3)]
    two_columns = lines(*[cell for i in range(3) for cell in ((80, 70 + 30 * i, left[i]), (600, 70 + 30 * i, right[i]))])
    (out,) = stage.process_batch(page_rows_to_table([row(two_columns)])).to_pylist()

    assert out["text"] == "\n".join(left + right)


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


# Layout-driven extraction: tables by column, check boxes, two columns ------------------------

def checkbox(x: float, y: float, state: str, label: str | None, label_line: int | None) -> dict:
    return {"bbox": [x, y, x + 23, y + 23], "state": state, "ink": 0.5 if state == "checked" else 0.0,
            "label": label, "label_line_ids": [] if label_line is None else [label_line]}


def by_kind(out: dict, kind: str) -> list[dict]:
    return [e for e in out["entities"] if e["kind"] == kind]


def test_lab_table_fields_come_from_their_columns(stage: LexiconExtractStage) -> None:
    page = lines((80, 100, "Test"), (480, 100, "Result"), (660, 100, "Units"), (860, 100, "Reference Range"),
                 (1120, 100, "Flag"),
                 (80, 140, "Glucose"), (480, 140, "67"), (660, 140, "mg/dL"), (860, 140, "70 - 99"), (1120, 140, "L"),
                 # no range printed: "H" is the flag, not a range, and stays the flag
                 (80, 180, "Potassium"), (480, 180, "5.9"), (660, 180, "mmol/L"), (1120, 180, "H"),
                 (80, 220, "Sodium"), (480, 220, "150"), (660, 220, "mmol/L"), (860, 220, "136 - 145"))

    (out,) = stage.process_batch(page_rows_to_table([row(page)])).to_pylist()

    labs = {e["text"]: (e["value_num"], e["unit"], e["reference_low"], e["reference_high"], e["interpretation"])
            for e in by_kind(out, "lab")}
    assert labs == {"Glucose": (67.0, "mg/dL", 70.0, 99.0, "L"), "Potassium": (5.9, "mmol/L", None, None, "H"),
                    "Sodium": (150.0, "mmol/L", 136.0, 145.0, "H")}  # no flag printed: derived from the range
    assert len(by_kind(out, "lab")) == 3  # each row once, not again by the row pattern
    assert {e["panel"] for e in by_kind(out, "lab")} == {None}


def test_a_result_keeps_the_title_of_its_table(stage: LexiconExtractStage) -> None:
    page = lines((80, 60, "Complete Blood Count"), (80, 100, "Test"), (480, 100, "Result"), (660, 100, "Units"),
                 (80, 140, "Hemoglobin"), (480, 140, "13.1"), (660, 140, "g/dL"))

    (out,) = stage.process_batch(page_rows_to_table([row(page)])).to_pylist()

    assert [(e["text"], e["panel"]) for e in by_kind(out, "lab")] == [("Hemoglobin", "Complete Blood Count")]


def test_checked_boxes_under_a_history_heading_are_present_diagnoses(stage: LexiconExtractStage) -> None:
    page = lines((80, 100, "MEDICAL HISTORY (check all that apply):"), (118, 140, "Diabetes"),
                 (498, 140, "High blood pressure"), (878, 140, "Asthma"),
                 (80, 220, "REVIEW OF SYSTEMS:"), (80, 260, "Chest pain"), (610, 260, "Yes"), (800, 260, "No"))
    boxes = [checkbox(80, 140, "checked", "Diabetes", 1), checkbox(460, 140, "unchecked", "High blood pressure", 2),
             checkbox(840, 140, "ambiguous", "Asthma", 3),
             checkbox(575, 260, "unchecked", "Yes", 6), checkbox(765, 260, "checked", "No", 7)]

    (out,) = stage.process_batch(page_rows_to_table([row(page, checkboxes=boxes)])).to_pylist()

    found = {(e["text"], e["assertion"], tuple(e["flags"])) for e in by_kind(out, "diagnosis")}
    assert found == {("Diabetes", "present", ()), ("Asthma", "present", ("checkbox_ambiguous",)),
                     ("Chest pain", "negated", ())}
    diabetes = next(e for e in by_kind(out, "diagnosis") if e["text"] == "Diabetes")
    assert diabetes["bbox"] == [80, 140, 103, 163] and diabetes["line_ids"] == [1]  # provenance: the box


def test_boxes_outside_a_history_heading_and_pages_without_boxes_add_nothing(stage: LexiconExtractStage) -> None:
    page = lines((80, 100, "Refills:"), (118, 140, "Diabetes"))

    (out,) = stage.process_batch(page_rows_to_table([row(page, checkboxes=[checkbox(80, 140, "checked", "Diabetes", 1)])])
                                 ).to_pylist()
    (plain,) = stage.process_batch(page_rows_to_table([row(page)])).to_pylist()

    assert by_kind(out, "diagnosis") == [] and plain["entities"] == []


def test_two_column_page_keeps_each_column_in_its_own_section(stage: LexiconExtractStage) -> None:
    page = lines((80, 100, "PAST MEDICAL HISTORY:"), (700, 100, "HOME MEDICATIONS:"),
                 (80, 140, "- Essential hypertension"), (700, 140, "- Metformin 500 mg PO BID"),
                 (80, 180, "- Gout"), (80, 260, "Electronically signed by the attending physician at the end of the visit on 03/02/2024."))

    (out,) = stage.process_batch(page_rows_to_table([row(page)])).to_pylist()

    assert {e["text"] for e in by_kind(out, "diagnosis")} == {"Essential hypertension", "Gout"}
    assert [(e["text"], e["frequency"]) for e in by_kind(out, "medication")] == [("Metformin 500 mg", "BID")]


def test_boxes_on_a_tilted_scan_find_their_heading(stage: LexiconExtractStage) -> None:
    # Tilted 2 degrees with the right side raised: in scan pixels the box at the right edge
    # sits higher than the bottom of its heading, level it sits below.
    angle = -math.radians(2.0)

    def tilt(points: list[list[float]]) -> list[list[float]]:
        return [[x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)]
                for x, y in points]

    def bounds(points: list[list[float]]) -> list[float]:
        return [min(p[0] for p in points), min(p[1] for p in points), max(p[0] for p in points),
                max(p[1] for p in points)]

    page = lines((80, 100, "PATIENT INTAKE FORM"), (80, 200, "MEDICAL HISTORY (check all that apply):"),
                 (1030, 240, "Asthma"), (80, 300, "Address: 10 Oak St, Springfield, IL 62704"),
                 (80, 360, "REVIEW OF SYSTEMS:"), (80, 400, "Chest pain"), (1030, 400, "No"))
    for line in page:
        line["polygon"] = tilt(line["polygon"])
        line["bbox"] = bounds(line["polygon"])
    box, no_box = (bounds(tilt([[992, y], [1015, y], [1015, y + 23], [992, y + 23]])) for y in (240, 400))
    assert box[1] < page[1]["bbox"][3]  # the failures a tilt causes without levelling: box above its heading,
    assert no_box[3] < page[5]["bbox"][1] + 10  # and "No" off the baseline of its question
    marks = [{"bbox": box, "state": "checked", "ink": 0.5, "label": "Asthma", "label_line_ids": [2]},
             {"bbox": no_box, "state": "checked", "ink": 0.5, "label": "No", "label_line_ids": [6]}]

    (out,) = stage.process_batch(page_rows_to_table([row(page, checkboxes=marks)])).to_pylist()

    assert [(e["text"], e["assertion"], e["section"]) for e in by_kind(out, "diagnosis")] == [
        ("Asthma", "present", "medical history"), ("Chest pain", "negated", "review of systems")]
