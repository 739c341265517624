"""Demographics: several fields on one line, labels above values, dates in any common form."""

from __future__ import annotations

import pytest
from reader_pages import column, draw, of_kind

from pipeline.dates import iso_date


def fields(entities) -> dict[str, str]:
    return {e.attribute: e.value for e in of_kind(entities, "demographic")}


def test_several_fields_on_one_line(read) -> None:
    lines = column("Patient: Okafor, Adaeze MRN: 7c1f0e22", "DOB: 03-Sep-1961 Sex: F")

    assert fields(read(lines)) == {"name": "Adaeze Okafor", "mrn": "7c1f0e22", "birth_date": "1961-09-03",
                                   "sex": "female"}


def test_labels_with_an_ocr_slip_still_read(read) -> None:
    lines = column("Patient: MCGLYNN, BESSIE MRN: f816e07c", "D0B: Jun 24. 2004 5ex: F")

    assert fields(read(lines)) == {"name": "BESSIE MCGLYNN", "mrn": "f816e07c", "birth_date": "2004-06-24",
                                   "sex": "female"}


def test_a_zero_inside_a_name_is_the_letter_o(read) -> None:
    lines = column("Patient: 0'Keefe, Sim0n MRN: 0a3c7c37", "Name: B0B LIND0N 2nd")

    entities = of_kind(read(lines), "demographic")

    assert [e.value for e in entities if e.attribute == "name"] == ["Simon O'Keefe", "BOB LINDON 2nd"]
    assert [e.value for e in entities if e.attribute == "mrn"] == ["0a3c7c37"]  # an identifier keeps its zeros


def test_boxed_form_labels_above_values(read) -> None:
    lines = draw((100, [(80, "PATIENT NAME"), (420, "DATE OF BIRTH"), (700, "SEX")]),
                 (126, [(80, "OKAFOR, ADAEZE"), (420, "1961-09-03"), (700, "Female")]),
                 (160, [(80, "MRN"), (420, "DATE OF SERVICE")]),
                 (186, [(80, "7c1f0e22"), (420, "11/02/2019")]))

    entities = read(lines)

    assert fields(entities) == {"name": "ADAEZE OKAFOR", "birth_date": "1961-09-03", "sex": "female",
                                "mrn": "7c1f0e22"}
    assert [(e.attribute, e.value) for e in of_kind(entities, "encounter")] == [("visit_date", "2019-11-02")]


def test_a_scanned_form_whose_value_boxes_reach_into_their_labels(read) -> None:
    # Padded OCR boxes: each value's box starts above its label's bottom edge and a little
    # left of its label; the name has a box of its own.
    lines = draw((100, [(80, "PATIENT NAME")]),
                 (114, [(76, "OKAFOR, ADAEZE")]),
                 (150, [(80, "DATE OF BIRTH"), (420, "SEX")]),
                 (166, [(72, "1961-09-03"), (412, "Female")]))

    assert fields(read(lines)) == {"name": "ADAEZE OKAFOR", "birth_date": "1961-09-03", "sex": "female"}


def test_a_heading_over_a_sentence_or_a_heading_stays_a_heading(read) -> None:
    lines = column("CLINICAL NOTE", "CHIEF COMPLAINT", "Cough.", "ALLERGIES", "Penicillin")

    entities = read(lines)

    assert not of_kind(entities, "demographic")
    assert [(a.text, a.section) for a in of_kind(entities, "allergy")] == [("Penicillin", "allergies")]


@pytest.mark.parametrize("written, iso", [
    ("Sep 3, 1961", "1961-09-03"), ("3 September 1961", "1961-09-03"), ("1961-09-03", "1961-09-03"),
    ("09/03/1961", "1961-09-03"), ("03-Sep-1961", "1961-09-03"), ("03.09.1961", "1961-03-09"),  # US order first
])
def test_dates_in_common_written_forms(written: str, iso: str) -> None:
    assert iso_date(written, future_years=0) == iso


def test_a_day_first_date_that_only_reads_day_first() -> None:
    assert iso_date("24.06.2004") == "2004-06-24"
