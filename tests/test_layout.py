"""group_rows: OCR lines -> printed rows, top to bottom, left to right."""

from __future__ import annotations

import math

import pytest

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


# Reading order across columns -------------------------------------------------------------

from pipeline.layout import (  # noqa: E402  (kept beside the tests that use them)
    blocks,
    find_tables,
    join_key_values,
    join_stacked_fields,
    key_values,
    reading_order,
    skew_angle,
    split_line,
    straighten,
)


def two_column_page() -> list[OcrLine]:
    """A letterhead, two columns side by side (left longer than right), a full-width footer."""
    left = ["PAST MEDICAL HISTORY:", "1. Essential hypertension", "2. Gout", "", "ALLERGIES:", "- Latex: rash"]
    right = ["HOME MEDICATIONS:", "- Metformin 500 mg PO BID", "- Lisinopril 10 mg PO daily"]
    lines = [ocr_line(0, "North Valley General Hospital", 80, 40)]
    for row in range(len(left)):
        y = 120 + 40 * row
        if left[row]:
            lines.append(ocr_line(len(lines), left[row], 80, y))
        if row < len(right):
            lines.append(ocr_line(len(lines), right[row], 700, y + 2))
    lines.append(ocr_line(len(lines), "Electronically signed by the attending physician after the visit of 03/02/2024.", 80, 400))
    return lines


def test_two_columns_read_left_column_then_right_then_the_full_width_footer() -> None:
    order = [row.text for row in reading_order(two_column_page())]

    assert order == ["North Valley General Hospital", "PAST MEDICAL HISTORY:", "1. Essential hypertension", "2. Gout",
                     "ALLERGIES:", "- Latex: rash", "HOME MEDICATIONS:", "- Metformin 500 mg PO BID",
                     "- Lisinopril 10 mg PO daily",
                     "Electronically signed by the attending physician after the visit of 03/02/2024."]


def header_grid_over_a_widening_list() -> list[OcrLine]:
    """A form's header: clinic and fields at the left, a title and fields at the right; under the
    left side a list that starts narrow and then widens towards the right column's edge."""
    lines = [ocr_line(0, "LAKESIDE CLINIC", 100, 100), ocr_line(1, "REFERRAL FORM FOR SPECIALISTS", 700, 100),
             ocr_line(2, "NAME: Ada Brook, 12 Harbour Road, Lakeside", 100, 128), ocr_line(3, "CLINICIAN: Dr Vale", 700, 128),
             ocr_line(4, "INTOLERANCES", 100, 170)]
    items = ["- Latex", "- Ragweed", "- Penicillin / reaction: hives and swelling of the lips (severe)", "- Dust"]
    for n, text in enumerate(items):
        lines.append(ocr_line(5 + n, text, 120, 194 + 24 * n))
    return lines


def test_a_list_that_runs_on_past_a_short_right_column_is_read_after_it() -> None:
    # The wide item crosses the gutter's whitespace, so reading order starts a new stretch at
    # it; the right column ended rows above, so what follows continues the left one.
    order = [row.text for row in reading_order(header_grid_over_a_widening_list())]

    assert order == ["REFERRAL FORM FOR SPECIALISTS", "CLINICIAN: Dr Vale", "LAKESIDE CLINIC",
                     "NAME: Ada Brook, 12 Harbour Road, Lakeside", "INTOLERANCES",
                     "- Latex", "- Ragweed", "- Penicillin / reaction: hives and swelling of the lips (severe)",
                     "- Dust"]


def test_a_row_set_apart_below_the_columns_keeps_left_then_right() -> None:
    lines = header_grid_over_a_widening_list()
    lines[-2:] = [ocr_line(7, "Notes continue here across the whole width of the printed page, past both columns", 100, 330)]

    order = [row.text for row in reading_order(lines)]

    assert order[:2] == ["LAKESIDE CLINIC", "NAME: Ada Brook, 12 Harbour Road, Lakeside"]
    assert order[-1] == "Notes continue here across the whole width of the printed page, past both columns"


def test_row_by_row_grouping_would_join_the_columns() -> None:
    # The failure reading order prevents: each printed row mixes a diagnosis and a drug.
    assert "1. Essential hypertension  - Metformin 500 mg PO BID" in [row.text for row in group_rows(two_column_page())]


def test_a_table_is_not_mistaken_for_columns() -> None:
    rows = [("Test", "Result", "Units", "Flag"), ("Glucose", "67", "mg/dL", "L"), ("Sodium", "140", "mmol/L", "")]
    lines = [ocr_line(len_, text, x, 100 + 40 * r) for r, cells in enumerate(rows)
             for len_, (x, text) in enumerate(zip((80, 480, 660, 1120), cells)) if text]

    assert [row.text for row in reading_order(lines)] == ["Test  Result  Units  Flag", "Glucose  67  mg/dL  L",
                                                          "Sodium  140  mmol/L"]


def test_a_tilted_scan_is_straightened_before_rows_are_grouped() -> None:
    angle = math.radians(1.5)
    tilted = []
    for line in two_column_page():
        polygon = [[x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)]
                   for x, y in line.polygon]
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        tilted.append(OcrLine(line.line_id, line.text, line.confidence, polygon, [min(xs), min(ys), max(xs), max(ys)]))

    assert skew_angle(tilted) == pytest.approx(angle, abs=1e-6)
    assert [r.text for r in reading_order(straighten(tilted))] == [r.text for r in reading_order(two_column_page())]


def test_a_tilted_table_whose_boxes_came_out_level_is_straightened_by_its_rows() -> None:
    # A fax tilted 1.3 degrees, right side raised, the detector's boxes all axis-aligned: the
    # results drift most of a row up across the page, and read as printed only when levelled.
    rows = [("Test", "Result", "Units", "Reference Range"), ("WBC", "8.0", "K/uL", "4.5-11.0"),
            ("RBC", "4.94", "M/uL", "4.70-6.10"), ("Hemoglobin", "15.6", "g/dL", "13.5-17.5"),
            ("Hematocrit", "49.2", "%", "41.0-53.0"), ("Platelets", "348", "K/uL", "150-450")]
    rise = math.tan(math.radians(1.3))
    lines = [ocr_line(len(cells) * r + c, text, x, 300 + 36 * r - rise * x, height=30)
             for r, cells in enumerate(rows) for c, (x, text) in enumerate(zip((130, 640, 960, 1230), cells))]

    assert [row.text for row in group_rows(lines)] != [row.text for row in group_rows(straighten(lines))]
    assert math.degrees(skew_angle(lines)) == pytest.approx(-1.3, abs=0.15)
    assert [row.text for row in reading_order(straighten(lines))] == ["  ".join(cells) for cells in rows]


def test_a_few_lines_that_line_up_by_chance_do_not_tilt_a_level_page() -> None:
    lines = [ocr_line(0, "Name: Jane Roe", 80, 100), ocr_line(1, "Seen by Dr. Poe", 900, 130),
             ocr_line(2, "Plan: rest", 80, 300)]

    assert skew_angle(lines) == 0.0


def test_level_lines_are_not_rotated() -> None:
    lines = two_column_page()

    assert straighten(lines) is lines


def test_blocks_split_at_paragraph_gaps_and_column_changes() -> None:
    found = [[row.text for row in block.rows] for block in blocks(reading_order(two_column_page()))]

    assert found[1:4] == [["PAST MEDICAL HISTORY:", "1. Essential hypertension", "2. Gout"],
                          ["ALLERGIES:", "- Latex: rash"],
                          ["HOME MEDICATIONS:", "- Metformin 500 mg PO BID", "- Lisinopril 10 mg PO daily"]]
    assert [block.column for block in blocks(reading_order(two_column_page()))][1:4] == [0, 0, 1]


# Tables -----------------------------------------------------------------------------------

HEADER = (("Test", 80), ("Result", 480), ("Units", 660), ("Reference Range", 860), ("Flag", 1120))


def table_lines(*body: tuple[tuple[str, float], ...]) -> list[OcrLine]:
    lines = [ocr_line(i, text, x, 100) for i, (text, x) in enumerate(HEADER)]
    for r, cells in enumerate(body, start=1):
        lines += [ocr_line(len(lines), text, x, 100 + 40 * r) for text, x in cells]
    return lines


def test_table_cells_are_assigned_by_header_columns_even_with_a_missing_cell() -> None:
    lines = table_lines((("Glucose", 80), ("67", 480), ("mg/dL", 660), ("70 - 99", 860), ("L", 1120)),
                        # no reference range printed: the flag must not be read as the range
                        (("Potassium", 80), ("5.9", 480), ("mmol/L", 660), ("H", 1120)),
                        (("Sodium", 80), ("140", 480), ("mmol/L", 660), ("136 - 145", 860)))

    (table,) = find_tables(reading_order(lines))

    assert table.roles == ["name", "value", "unit", "range", "flag"]
    cells = [{role: body.text(role) for role in table.roles} for body in table.rows]
    assert cells == [
        {"name": "Glucose", "value": "67", "unit": "mg/dL", "range": "70 - 99", "flag": "L"},
        {"name": "Potassium", "value": "5.9", "unit": "mmol/L", "range": None, "flag": "H"},
        {"name": "Sodium", "value": "140", "unit": "mmol/L", "range": "136 - 145", "flag": None},
    ]


def test_a_one_line_caption_just_above_the_header_titles_the_table() -> None:
    body = (("Glucose", 80), ("67", 480), ("mg/dL", 660))
    captioned = [ocr_line(100, "Basic Metabolic Panel", 80, 70)] + table_lines(body)
    far = [ocr_line(100, "LABORATORY RESULTS", 80, 20)] + table_lines(body)
    dated = [ocr_line(100, "Collected 03/02/2024", 80, 70)] + table_lines(body)
    in_section = [ocr_line(100, "LABORATORY RESULTS: Lipid Panel", 80, 70)] + table_lines(body)

    assert [find_tables(reading_order(lines))[0].title for lines in (captioned, far, dated, table_lines(body),
                                                                     in_section)] == [
        "Basic Metabolic Panel", None, None, None, "Lipid Panel"]


def test_a_line_that_joins_two_cells_is_cut_at_the_column_boundary() -> None:
    lines = table_lines((("Glucose", 80), ("67", 480), ("L", 1120)))
    # OCR read the unit and the range as one line, with one space for the wide gap between them.
    lines.append(OcrLine(len(lines), "mg/dL 70 - 99", 0.9, [[660, 140], [923, 140], [923, 160], [660, 160]],
                         [660, 140, 923, 160]))

    (table,) = find_tables(reading_order(lines))

    assert table.rows[0].text("unit") == "mg/dL" and table.rows[0].text("range") == "70 - 99"


def test_table_ends_at_prose_and_rows_without_a_header_are_no_table() -> None:
    lines = table_lines((("Glucose", 80), ("67", 480), ("mg/dL", 660)))
    lines.append(ocr_line(len(lines), "Results reviewed by the laboratory director.", 80, 180))

    (table,) = find_tables(reading_order(lines))

    assert [body.text("name") for body in table.rows] == ["Glucose"]
    assert find_tables(reading_order(lines[len(HEADER):])) == []


def test_split_line_estimates_word_positions_from_character_offsets() -> None:
    line = ocr_line(0, "Diabetes  X Asthma", 100, 0)  # 9 px per character

    assert split_line(line, [100 + 9 * 10]) == ["Diabetes", "X Asthma"]
    assert split_line(line, []) == ["Diabetes X Asthma"]


# Key-value fields -------------------------------------------------------------------------

def test_key_values_on_one_line_and_split_over_two() -> None:
    row = Row([ocr_line(0, "Patient: Smith, Mary", 80, 70), ocr_line(1, "DOB:", 600, 70),
               ocr_line(2, "03/02/1956", 660, 71), ocr_line(3, "MRN: 1000002", 900, 70)])

    fields = key_values(row)

    assert [(f.key, f.value) for f in fields] == [("Patient", "Smith, Mary"), ("DOB", "03/02/1956"),
                                                 ("MRN", "1000002")]
    assert fields[1].bbox == union_bbox([row.lines[1], row.lines[2]])
    joined = join_key_values(row)
    assert [line.text for line in joined.lines] == ["Patient: Smith, Mary", "DOB: 03/02/1956", "MRN: 1000002"]
    assert joined.lines[1].bbox == fields[1].bbox


def test_a_label_followed_by_another_label_takes_no_value() -> None:
    row = Row([ocr_line(0, "Phone:", 80, 70), ocr_line(1, "Sex: F", 400, 70)])

    assert [(f.key, f.value) for f in key_values(row)] == [("Sex", "F")]
    assert join_key_values(row) is row


def test_a_heading_over_a_key_value_line_is_not_stacked_onto_it() -> None:
    lines = [OcrLine(0, "SCREENING", 0.97, [[80, 40], [161, 40], [161, 60], [80, 60]], [80, 40, 161, 60]),
             OcrLine(1, "GAD-7 score: 8", 0.97, [[80, 68], [206, 68], [206, 88], [80, 88]], [80, 68, 206, 88])]

    rows = join_stacked_fields(reading_order(lines))

    assert [row.text for row in rows] == ["SCREENING", "GAD-7 score: 8"]


def test_a_form_label_row_takes_its_values_past_a_column_read_between_them() -> None:
    # Reading order of a boxed form whose title and SEX box at the right were read as a column
    # of their own: they fall between the MRN label row and the values printed under it.
    rows = [Row([ocr_line(0, "MRN", 110, 400), ocr_line(1, "DATE OF SERVICE", 570, 400),
                 ocr_line(2, "PROVIDER", 1060, 400)]),
            Row([ocr_line(3, "PATIENT ENCOUNTER FORM", 1360, 160)]), Row([ocr_line(4, "SEX", 1580, 290)]),
            Row([ocr_line(5, "Female", 1580, 330)]),  # a field of the passed-over column, stacked in turn
            Row([ocr_line(6, "77aa01c2", 110, 440), ocr_line(7, "03-Apr-2020", 570, 440),
                 ocr_line(8, "Dr. Alma Poe-Smith", 1060, 440)])]

    texts = [row.text for row in join_stacked_fields(rows)]

    assert texts == ["MRN: 77aa01c2  DATE OF SERVICE: 03-Apr-2020  PROVIDER: Dr. Alma Poe-Smith",
                     "PATIENT ENCOUNTER FORM", "SEX: Female"]
