"""group_rows: OCR lines -> printed rows, top to bottom, left to right."""

from __future__ import annotations

from pipeline.layout import Row, group_rows, union_bbox
from pipeline.records import OcrLine


def ocr_line(line_id: int, text: str, x: float, y: float, height: float = 20.0, confidence: float = 0.95) -> OcrLine:
    x1 = x + 9.0 * len(text)
    return OcrLine(line_id, text, confidence, [[x, y], [x1, y], [x1, y + height], [x, y + height]],
                   [x, y, x1, y + height])


def test_cells_on_one_baseline_form_one_row_in_x_order() -> None:
    # OCR returns cells in any order and with a few pixels of vertical jitter.
    lines = [ocr_line(2, "mg/dL", 660, 303), ocr_line(0, "Glucose", 80, 300), ocr_line(1, "67", 480, 298),
             ocr_line(3, "70 - 99", 860, 301), ocr_line(4, "L", 1120, 302)]

    (row,) = group_rows(lines)

    assert [line.text for line in row.lines] == ["Glucose", "67", "mg/dL", "70 - 99", "L"]
    assert row.text == "Glucose  67  mg/dL  70 - 99  L"  # a double space marks each column gap
    assert row.line_ids == [0, 1, 2, 3, 4]


def test_lines_a_line_height_apart_are_separate_rows_top_to_bottom() -> None:
    lines = [ocr_line(0, "third", 80, 360), ocr_line(1, "first", 80, 300), ocr_line(2, "second", 80, 330)]

    rows = group_rows(lines)

    assert [row.text for row in rows] == ["first", "second", "third"]


def test_row_bbox_is_the_union_and_confidence_the_minimum() -> None:
    row = Row([ocr_line(0, "BP 128/76 mmHg", 80, 670, confidence=0.9),
               ocr_line(1, "HR 78 bpm", 500, 668, height=26, confidence=0.7)])

    assert row.bbox == [80, 668, 500 + 9 * len("HR 78 bpm"), 694]
    assert row.bbox == union_bbox(row.lines)
    assert row.confidence == 0.7


def test_no_lines_no_rows() -> None:
    assert group_rows([]) == []
