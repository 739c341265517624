"""LexiconExtractor on OCR lines built in code (one line per text run, with boxes), as OCR gives them.

The dictionaries come from the session terminology index, as the extract stage loads them.
"""

from __future__ import annotations

import pytest

from pipeline.layout import group_rows
from pipeline.lexicon import LexiconExtractor, Lexicons, iso_date
from pipeline.records import Entity, OcrLine
from pipeline.terminology import TerminologyIndex

DOCUMENT_ID = "doc-0123456789abcdef"


def page(*rows: tuple[float, list[tuple[float, str]]]) -> list[OcrLine]:
    """Lines from (y, [(x, text), ...]) rows; ids in reading order, boxes 20 px high."""
    lines = []
    for y, runs in rows:
        for x, text in runs:
            x1 = x + 9.0 * len(text)
            lines.append(OcrLine(len(lines), text, 0.96, [[x, y], [x1, y], [x1, y + 20], [x, y + 20]],
                                 [x, y, x1, y + 20]))
    return lines


DISCHARGE_SUMMARY = page(
    (40, [(80, "North Valley General Hospital")]),
    (70, [(80, "Patient: Johnson, Janet"), (560, "MRN: 3000002"), (880, "DOB: 12/20/1975")]),
    (100, [(80, "DISCHARGE SUMMARY")]),
    (130, [(80, "Admission Date: 03/02/2024"), (640, "Discharge Date: 03/05/2024")]),
    (170, [(80, "HISTORY OF PRESENT ILLNESS:")]),
    (200, [(80, "Patient admitted for evaluation and management.")]),
    (230, [(80, "Patient denies chest pain.")]),
    (270, [(80, "PAST MEDICAL HISTORY:")]),
    (300, [(80, "- Essential hypertension")]),
    (330, [(80, "- Type 2 diabetes mellitus")]),
    (370, [(80, "DISCHARGE DIAGNOSES:")]),
    (400, [(80, "1. Community acquired pneumonia")]),
    (440, [(80, "ALLERGIES:")]),
    (470, [(80, "- Codeine: nausea")]),
    (500, [(80, "Kind regards,")]),
    (540, [(80, "HOME MEDICATIONS:")]),
    (570, [(80, "- Metformin 500 mg PO BID")]),
    (600, [(80, "- Lisinopril 10 mg tablet by mouth daily")]),
    (640, [(80, "VITAL SIGNS:")]),
    (670, [(80, "BP 128/76 mmHg"), (500, "HR 78 bpm"), (800, "RR 16 /min")]),
    (700, [(80, "Temp 36.8 C"), (500, "SpO2 97 %"), (800, "Weight 82.5 kg")]),
    (740, [(80, "FAMILY HISTORY:")]),
    (770, [(80, "Mother with hypertension.")]),
)

LAB_REPORT = page(
    (40, [(80, "LABORATORY REPORT")]),
    (70, [(80, "Collected: 03/02/2024"), (640, "Specimen: Blood")]),
    (100, [(80, "Test"), (480, "Result"), (660, "Units"), (860, "Reference Range"), (1120, "Flag")]),
    (130, [(80, "Glucose"), (480, "67"), (660, "mg/dL"), (860, "70 - 99"), (1120, "L")]),
    (160, [(80, "Hemoglobin A1c"), (480, "8.1"), (660, "%"), (860, "4.0 - 5.6")]),
    (190, [(80, "Sodium"), (480, "140"), (660, "mmol/L"), (860, "136 - 145")]),
)


@pytest.fixture(scope="module")
def extractor(terminology_index: TerminologyIndex) -> LexiconExtractor:
    return LexiconExtractor(Lexicons(
        diagnoses=terminology_index.lexicon("diagnosis"),
        medications=terminology_index.lexicon("medication"),
        labs=terminology_index.lexicon("lab"),
    ))


@pytest.fixture(scope="module")
def discharge(extractor: LexiconExtractor) -> list[Entity]:
    return extractor.extract(DOCUMENT_ID, 0, group_rows(DISCHARGE_SUMMARY))


def one(entities: list[Entity], kind: str, text: str) -> Entity:
    found = [e for e in entities if e.kind == kind and e.text == text]
    assert len(found) == 1, f"{kind} {text!r} in {[(e.kind, e.text) for e in entities]}"
    return found[0]


def line_ids_of(*texts: str) -> list[int]:
    return [line.line_id for line in DISCHARGE_SUMMARY if line.text in texts]


# Sections and diagnoses ------------------------------------------------------------------


def test_diagnosis_lists_are_read_per_section(discharge: list[Entity]) -> None:
    pmh = one(discharge, "diagnosis", "Essential hypertension")
    dm2 = one(discharge, "diagnosis", "Type 2 diabetes mellitus")
    pneumonia = one(discharge, "diagnosis", "Community acquired pneumonia")  # the "1." is not part of it

    assert (pmh.section, pmh.assertion) == ("past medical history", "present")
    assert (dm2.section, dm2.assertion) == ("past medical history", "present")
    assert (pneumonia.section, pneumonia.assertion) == ("discharge diagnoses", "present")
    assert pmh.line_ids == line_ids_of("- Essential hypertension")
    assert pmh.bbox == DISCHARGE_SUMMARY[pmh.line_ids[0]].bbox
    assert pmh.page_index == 0 and 0 < pmh.confidence <= pmh.ocr_confidence == pytest.approx(0.96)


def test_denied_finding_is_negated(discharge: list[Entity]) -> None:
    chest_pain = one(discharge, "diagnosis", "chest pain")

    assert (chest_pain.section, chest_pain.assertion) == ("history of present illness", "negated")


def test_family_history_is_asserted_of_the_family(discharge: list[Entity]) -> None:
    family = [e for e in discharge if e.section == "family history"]

    assert [(e.kind, e.text, e.assertion) for e in family] == [("diagnosis", "hypertension", "family")]


def test_no_diagnosis_comes_from_the_banner_vitals_or_medications(discharge: list[Entity]) -> None:
    sections = {e.section for e in discharge if e.kind == "diagnosis"}

    assert sections <= {"history of present illness", "past medical history", "discharge diagnoses", "family history"}


# Medications and allergies ---------------------------------------------------------------


def test_medication_dose_route_and_frequency(discharge: list[Entity]) -> None:
    metformin = one(discharge, "medication", "Metformin 500 mg")

    assert metformin.section == "home medications"
    assert metformin.attribute == "Metformin"
    assert (metformin.dose_value, metformin.dose_unit, metformin.route, metformin.frequency) == (
        500.0, "mg", "PO", "BID")
    lisinopril = one(discharge, "medication", "Lisinopril 10 mg")
    assert (lisinopril.dose_value, lisinopril.value, lisinopril.route, lisinopril.frequency) == (
        10.0, "tablet", "PO", "QD")


def test_allergy_with_reaction_and_no_allergy_from_a_sign_off(discharge: list[Entity]) -> None:
    allergies = [e for e in discharge if e.kind == "allergy"]

    assert [(e.text, e.value, e.assertion, e.section) for e in allergies] == [
        ("Codeine", "nausea", "present", "allergies")]  # "Kind regards," is not an allergy


@pytest.mark.parametrize("text", ["No known drug allergies", "NKDA"])
def test_no_known_allergies_is_a_negated_allergy(extractor: LexiconExtractor, text: str) -> None:
    lines = page((100, [(80, "ALLERGIES:")]), (130, [(80, text)]))

    entities = extractor.extract(DOCUMENT_ID, 0, group_rows(lines))

    assert [(e.kind, e.text, e.assertion) for e in entities] == [("allergy", text, "negated")]


def test_allergy_on_the_header_line(extractor: LexiconExtractor) -> None:
    entities = extractor.extract(DOCUMENT_ID, 0, group_rows(page((100, [(80, "Allergies: Penicillin (hives)")]))))

    assert [(e.kind, e.text, e.value) for e in entities] == [("allergy", "Penicillin", "hives")]


# Vitals and labs -------------------------------------------------------------------------


def test_vitals_row_values_with_ucum_units(discharge: list[Entity]) -> None:
    vitals = {e.attribute: (e.value_num, e.unit) for e in discharge if e.kind == "vital"}

    assert vitals == {
        "systolic": (128.0, "mm[Hg]"),
        "diastolic": (76.0, "mm[Hg]"),
        "pulse": (78.0, "/min"),
        "respiratory rate": (16.0, "/min"),
        "temperature": (36.8, "Cel"),
        "spo2": (97.0, "%"),
        "weight": (82.5, "kg"),
    }
    pulse = next(e for e in discharge if e.attribute == "pulse")
    assert pulse.line_ids == line_ids_of("HR 78 bpm")  # the box is the cell, not the whole row
    assert pulse.section == "vital signs"


def test_lab_table_row_split_in_cells(extractor: LexiconExtractor) -> None:
    labs = {e.text: e for e in extractor.extract(DOCUMENT_ID, 0, group_rows(LAB_REPORT)) if e.kind == "lab"}

    assert set(labs) == {"Glucose", "Hemoglobin A1c", "Sodium"}
    glucose = labs["Glucose"]
    assert (glucose.value_num, glucose.unit, glucose.reference_low, glucose.reference_high, glucose.interpretation) == (
        67.0, "mg/dL", 70.0, 99.0, "L")
    assert len(glucose.line_ids) == 5
    assert glucose.bbox[0] == 80 and glucose.bbox[2] == 1120 + 9.0
    # Without a printed flag the interpretation comes from the range.
    assert (labs["Hemoglobin A1c"].value_num, labs["Hemoglobin A1c"].interpretation) == (8.1, "H")
    assert (labs["Sodium"].unit, labs["Sodium"].interpretation) == ("mmol/L", "N")


# Demographics and encounter --------------------------------------------------------------


def test_banner_key_values_are_demographics(discharge: list[Entity]) -> None:
    demographics = {e.attribute: e.value for e in discharge if e.kind == "demographic"}

    assert demographics == {"name": "Janet Johnson", "mrn": "3000002", "birth_date": "1975-12-20"}
    dob = next(e for e in discharge if e.attribute == "birth_date")
    assert dob.line_ids == line_ids_of("DOB: 12/20/1975")


def test_encounter_dates_are_iso(discharge: list[Entity]) -> None:
    encounter = {e.attribute: e.value for e in discharge if e.kind == "encounter"}

    assert encounter == {"admission_date": "2024-03-02", "discharge_date": "2024-03-05"}


def test_impossible_birth_date_gives_no_birth_date(extractor: LexiconExtractor) -> None:
    lines = page((70, [(80, "Patient: Johnson, Janet"), (560, "MRN: 3000002"), (880, "DOB: 13/45/1975")]))

    entities = extractor.extract(DOCUMENT_ID, 0, group_rows(lines))

    assert {e.attribute for e in entities if e.kind == "demographic"} == {"name", "mrn"}


@pytest.mark.parametrize("text, iso", [("12/20/1975", "1975-12-20"), ("on 1975-12-20.", "1975-12-20"),
                                       ("13/45/1975", None), ("02/30/2024", None), ("no date", None)])
def test_iso_date(text: str, iso: str | None) -> None:
    assert iso_date(text) == iso


# Entity ids ------------------------------------------------------------------------------


def test_entity_ids_are_deterministic_and_distinct(extractor: LexiconExtractor, discharge: list[Entity]) -> None:
    again = extractor.extract(DOCUMENT_ID, 0, group_rows(DISCHARGE_SUMMARY))
    other_document = extractor.extract("doc-fedcba9876543210", 0, group_rows(DISCHARGE_SUMMARY))

    ids = [e.entity_id for e in discharge]
    assert ids == [e.entity_id for e in again]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("ent-") for i in ids)
    assert not set(ids) & {e.entity_id for e in other_document}


def test_negation_scope_ends_at_a_terminator() -> None:
    from pipeline.lexicon import assertion_of

    assert assertion_of("without known allergies, with a history of", "narrative") == "historical"
    assert assertion_of("no fever but", "narrative") == "present"
    assert assertion_of("patient denies", "narrative") == "negated"
    assert assertion_of("mother with", "narrative") == "family"
