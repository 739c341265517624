"""LexiconExtractor on OCR lines built in code (one line per text run, with boxes), as OCR gives them.

The dictionaries come from the session terminology index, as the extract stage loads them.
"""

from __future__ import annotations

import pytest

from pipeline.layout import group_rows
from pipeline.assertion import assertion_of
from pipeline.dates import iso_date
from pipeline.lexicon import LexiconExtractor, Lexicons
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
    assert metformin.attribute == "Metformin"  # the drug, as dose rules name it; the text is the product
    assert (metformin.dose_value, metformin.dose_unit, metformin.route, metformin.frequency) == (
        500.0, "mg", "PO", "BID")
    lisinopril = one(discharge, "medication", "Lisinopril 10 mg tablet")
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
    assert assertion_of("without known allergies, with a history of", "narrative") == "historical"
    assert assertion_of("no fever but", "narrative") == "present"
    assert assertion_of("patient denies", "narrative") == "negated"
    assert assertion_of("mother with", "narrative") == "family"


# Assertion in one note: negated, family, hypothetical and historical side by side -------

PROGRESS_NOTE = page(
    (40, [(80, "PROGRESS NOTE")]),
    (80, [(80, "HPI:")]),
    (110, [(80, "Patient denies chest pain. No evidence of pneumonia.")]),
    (140, [(80, "History of gout. Possible pulmonary embolism, return if shortness of breath.")]),
    (170, [(80, "Mother had asthma.")]),
    (210, [(80, "PMH:")]),
    (240, [(80, "- Hypertension")]),
    (270, [(80, "- h/o Pneumonia (resolved)")]),
    (310, [(80, "FHx:")]),
    (340, [(80, "Father with type 2 diabetes mellitus")]),
)


@pytest.fixture(scope="module")
def progress(extractor: LexiconExtractor) -> list[Entity]:
    return extractor.extract(DOCUMENT_ID, 0, group_rows(PROGRESS_NOTE), "progress_note")


def test_every_assertion_in_one_note(progress: list[Entity]) -> None:
    found = {(e.text.lower(), e.assertion) for e in progress if e.kind == "diagnosis"}

    assert {("chest pain", "negated"), ("pneumonia", "negated"), ("gout", "historical"),
            ("pulmonary embolism", "hypothetical"), ("shortness of breath", "hypothetical"),
            ("asthma", "family"), ("hypertension", "present"), ("pneumonia", "historical"),
            ("type 2 diabetes mellitus", "family")} <= found


def test_family_mentions_name_the_relative(progress: list[Entity]) -> None:
    relatives = {e.text.lower(): e.relationship for e in progress if e.assertion == "family"}

    assert relatives == {"asthma": "MTH", "type 2 diabetes mellitus": "FTH"}


def test_abbreviated_sections_and_diagnosis_status(progress: list[Entity]) -> None:
    listed = {(e.text, e.section, e.status) for e in progress if e.section == "past medical history"}

    assert listed == {("Hypertension", "past medical history", "active"),
                      ("Pneumonia", "past medical history", "resolved")}
    gout = one(progress, "diagnosis", "gout")
    assert (gout.section, gout.status) == ("history of present illness", "history")


# Medications: sig normalisation, status by section and document type ------------------

MEDICATION_LIST = page(
    (40, [(80, "DISCHARGE SUMMARY")]),
    (80, [(80, "Home meds:")]),
    (110, [(80, "- Metformin 500 mg PO BID")]),
    (140, [(80, "- Lisinopril 10 mg daily - stopped")]),
    (180, [(80, "Discharge medications:")]),
    (210, [(80, "- Furosemide 40 mg IV q8h for 3 days")]),
    (240, [(80, "- Gabapentin 300 mg po qhs prn pain")]),
    (270, [(80, "- Warfarin 5 twice daily")]),
    (300, [(80, "- Simvastatin 40 mg take as directed")]),
)


@pytest.fixture(scope="module")
def medications(extractor: LexiconExtractor) -> dict[str, Entity]:
    entities = extractor.extract(DOCUMENT_ID, 0, group_rows(MEDICATION_LIST), "discharge_summary")
    return {e.text.split()[0]: e for e in entities if e.kind == "medication"}


def test_medication_status_follows_the_list_it_is_on(medications: dict[str, Entity]) -> None:
    assert {name: e.status for name, e in medications.items()} == {
        "Metformin": "reported", "Lisinopril": "stopped", "Furosemide": "active", "Gabapentin": "active",
        "Warfarin": "active", "Simvastatin": "active"}


def test_sig_is_normalised_to_timing(medications: dict[str, Entity]) -> None:
    furosemide, gabapentin = medications["Furosemide"], medications["Gabapentin"]

    assert (furosemide.route, furosemide.frequency, furosemide.timing_frequency, furosemide.timing_period,
            furosemide.timing_period_unit, furosemide.duration_value, furosemide.duration_unit) == (
        "IV", "Q8H", 1, 8, "h", 3.0, "d")
    assert (gabapentin.route, gabapentin.frequency, gabapentin.timing_when, gabapentin.as_needed,
            gabapentin.as_needed_for) == ("PO", "QHS", "HS", True, "pain")


def test_unparseable_dose_and_sig_lower_the_field_confidence(medications: dict[str, Entity]) -> None:
    warfarin, simvastatin, metformin = medications["Warfarin"], medications["Simvastatin"], medications["Metformin"]
    confidence = {e.text.split()[0]: {f.name: f.confidence for f in e.fields} for e in (warfarin, simvastatin, metformin)}

    assert warfarin.dose_value == 5.0 and warfarin.dose_unit is None and warfarin.frequency == "BID"
    assert confidence["Warfarin"]["dose"] < 0.75 <= confidence["Metformin"]["dose"]
    assert simvastatin.frequency is None and confidence["Simvastatin"]["frequency"] < 0.75
    assert warfarin.confidence == min(confidence["Warfarin"].values())


def test_a_prescription_reads_unheaded_lines_as_medications(extractor: LexiconExtractor) -> None:
    lines = page((40, [(80, "Dr. A. Smith, 1 Main St")]), (80, [(80, "Cephalexin 500 mg PO TID x 10 days")]))

    as_other = extractor.extract(DOCUMENT_ID, 0, group_rows(lines), "other")
    as_prescription = extractor.extract(DOCUMENT_ID, 0, group_rows(lines), "prescription")

    assert [e.kind for e in as_other] == [e.kind for e in as_prescription] == ["medication"]  # strict match
    (rx,) = as_prescription
    assert (rx.section, rx.status, rx.duration_value) == ("prescription", "active", 10.0)


# Labs, allergies, procedures -------------------------------------------------------------


def test_reference_ranges_of_every_printed_form(extractor: LexiconExtractor) -> None:
    lines = page(
        (100, [(80, "Total cholesterol"), (480, "230"), (660, "mg/dL"), (860, "<200"), (1120, "H")]),
        (130, [(80, "Potassium"), (480, "4.2"), (660, "mmol/l"), (860, "3.5-5.0")]),
        (160, [(80, "eGFR"), (480, "45"), (660, "mL/min/1.73m2"), (860, ">60")]),
        (190, [(80, "Zorblatin"), (480, "12"), (660, "U/L"), (860, "5 - 40")]),
    )

    labs = {e.text: e for e in extractor.extract(DOCUMENT_ID, 0, group_rows(lines), "lab_report") if e.kind == "lab"}
    untyped = [e for e in extractor.extract(DOCUMENT_ID, 0, group_rows(lines)) if e.kind == "lab"]

    cholesterol, potassium = labs["Total cholesterol"], labs["Potassium"]
    assert (cholesterol.reference_low, cholesterol.reference_high, cholesterol.reference_text,
            cholesterol.interpretation) == (None, 200.0, "<200", "H")
    assert (potassium.unit, potassium.reference_low, potassium.reference_high, potassium.interpretation) == (
        "mmol/L", 3.5, 5.0, "N")
    egfr = labs["eGFR"]
    assert (egfr.unit, egfr.reference_low, egfr.reference_high, egfr.interpretation) == (
        "mL/min/{1.73_m2}", 60.0, None, "L")
    # An unknown test name is read in a lab report, with a confidence that sends it to review.
    assert labs["Zorblatin"].confidence < 0.75 <= labs["Potassium"].confidence
    assert "Zorblatin" not in {e.text for e in untyped}


@pytest.mark.parametrize("text, substance, reaction, severity", [
    ("Penicillin (hives, severe)", "Penicillin", "hives", "severe"),
    ("Codeine: nausea - mild", "Codeine", "nausea", "mild"),
    ("Latex", "Latex", None, None),
    ("Sulfamethoxazole - rash (moderate)", "Sulfamethoxazole", "rash", "moderate"),
])
def test_allergy_reaction_and_severity(extractor: LexiconExtractor, text: str, substance: str,
                                       reaction: str | None, severity: str | None) -> None:
    lines = page((100, [(80, "Allergies:")]), (130, [(80, text)]))

    (allergy,) = extractor.extract(DOCUMENT_ID, 0, group_rows(lines))

    assert (allergy.text, allergy.value, allergy.severity) == (substance, reaction, severity)


def test_procedures_with_dates(extractor: LexiconExtractor) -> None:
    lines = page((100, [(80, "PAST SURGICAL HISTORY:")]), (130, [(80, "- Appendectomy 2009")]),
                 (160, [(80, "- Colonoscopy on 03/14/2022")]), (190, [(80, "- s/p Cholecystectomy (05/2015)")]),
                 (220, [(80, "- Tonsillectomy")]), (250, [(80, "- Planned knee arthroscopy")]))

    procedures = {e.text: (e.value, e.assertion) for e in extractor.extract(DOCUMENT_ID, 0, group_rows(lines))}

    assert procedures == {"Appendectomy": ("2009", "present"), "Colonoscopy": ("2022-03-14", "present"),
                          "Cholecystectomy": ("2015-05", "historical"), "Tonsillectomy": (None, "present"),
                          "knee arthroscopy": (None, "hypothetical")}


def test_two_digit_birth_year_is_never_in_the_future(extractor: LexiconExtractor) -> None:
    lines = page((70, [(80, "DOB: 03/02/56"), (560, "Visit date: 3/2/24")]))

    values = {e.attribute: e.value for e in extractor.extract(DOCUMENT_ID, 0, group_rows(lines))}

    assert values == {"birth_date": "1956-03-02", "visit_date": "2024-03-02"}


# Lexicons kept beside the index ------------------------------------------------------------


def test_an_index_build_keeps_its_lexicons_beside_it_and_the_extract_stage_loads_them(tmp_path) -> None:
    import pickle

    from pipeline.lexicon import lexicons_from_index, lexicons_path
    from pipeline.spotter import TermSpotter
    from pipeline.stages.extract import LexiconExtractStage
    from terminology_index.build import IndexSources, build_index

    index = tmp_path / "index"
    build_index(IndexSources(icd10cm_xml=None), index)  # the starter sets alone: a small index
    kept = lexicons_path(index)
    assert kept.is_file()
    built = lexicons_from_index(TerminologyIndex(index))
    loaded = pickle.loads(kept.read_bytes())
    assert (loaded.diagnoses, loaded.medications, loaded.labs) == (built.diagnoses, built.medications, built.labs)
    assert loaded.diagnosis_spotter.cores == built.diagnosis_spotter.cores > 0

    # The stage reads the kept file (here replaced by a one-term spotter), it does not build its own.
    marker = Lexicons(diagnoses={"bench marker"}, medications=set(), labs=set(),
                      diagnosis_spotter=TermSpotter.from_terms(["bench marker"]))
    kept.write_bytes(pickle.dumps(marker))
    stage = LexiconExtractStage(index_path=str(index))
    stage.setup()
    assert stage.extractor.lexicons.diagnoses == {"bench marker"}


def test_a_new_index_version_builds_new_lexicons_and_removes_the_old(tmp_path) -> None:
    from pipeline.lexicon import ensure_lexicons, load_lexicons
    from terminology_index.build import IndexSources, ensure_index

    index = tmp_path / "index"
    ensure_index(IndexSources(icd10cm_xml=None), index)
    first = ensure_lexicons(index)
    loinc = tmp_path / "Loinc.csv"
    loinc.write_text('"LOINC_NUM","COMPONENT","LONG_COMMON_NAME","CLASSTYPE","STATUS"\n'
                     '"99999-9","Marker analyte","Marker analyte [Mass/volume] in Serum","1","ACTIVE"\n')
    ensure_index(IndexSources(icd10cm_xml=None, loinc_table=str(loinc)), index)  # a new version, same folder
    second = ensure_lexicons(index)
    assert second != first and second.is_file() and not first.exists()
    assert "marker analyte" in load_lexicons(index).labs
    assert [p.name for p in index.glob("lexicons-*.pickle")] == [second.name]
