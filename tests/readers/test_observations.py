"""Observations: vitals in prose and on forms, pain 0-10, scored instruments, result tables."""

from __future__ import annotations

from reader_pages import column, draw, of_kind

from pipeline.readers.observations import SURVEY


def test_vitals_in_a_sentence(read) -> None:
    lines = column("HOSPITAL COURSE:", "On arrival her blood pressure was 142/91 and her heart rate of 104,",
                   "respirations 22 and temperature 38.4 C.")

    vitals = {v.attribute: v.value_num for v in of_kind(read(lines), "vital")}

    assert vitals == {"systolic": 142, "diastolic": 91, "pulse": 104, "respiratory rate": 22, "temperature": 38.4}


def test_pain_and_scored_instruments(read) -> None:
    lines = column("SCREENING", "Pain: 6/10", "PHQ-9 total score: 14", "Braden scale: 18", "EPDS score 9")

    entities = read(lines)

    pain = of_kind(entities, "vital")
    assert [(p.attribute, p.value_num, p.unit) for p in pain] == [("pain", 6, "{score}")]
    scores = [(s.text, s.value_num, s.attribute) for s in of_kind(entities, "lab")]
    assert scores == [("PHQ-9 total score", 14, SURVEY), ("Braden scale", 18, SURVEY), ("EPDS score", 9, SURVEY)]


def test_form_vitals_under_their_labels(read) -> None:
    lines = draw((100, [(80, "PULSE"), (300, "RESP. RATE"), (520, "WEIGHT")]),
                 (126, [(80, "64 /min"), (300, "18 /min"), (520, "71.5 kg")]))

    vitals = {v.attribute: v.value_num for v in of_kind(read(lines), "vital")}

    assert vitals == {"pulse": 64, "respiratory rate": 18, "weight": 71.5}


def test_two_measures_side_by_side_each_label_in_its_own_cell(read) -> None:
    # "Measure | Value | Measure | Value": every label and every value is a cell of its own.
    lines = draw((60, [(80, "VITAL SIGNS")]),
                 (100, [(80, "Measure"), (330, "Value"), (560, "Measure"), (810, "Value")]),
                 (128, [(80, "Blood pressure"), (330, "131/84 mmHg"), (560, "Height"), (810, "167.2 cm")]),
                 (156, [(80, "Pulse"), (330, "72"), (430, "/min"), (560, "Temp"), (810, "37.1"), (880, "C")]),
                 (184, [(80, "Pain"), (330, "2/10"), (560, "GAD-7 score"), (810, "5")]))

    entities = read(lines)

    vitals = {v.attribute: v.value_num for v in of_kind(entities, "vital")}
    assert vitals == {"systolic": 131, "diastolic": 84, "height": 167.2, "pulse": 72, "temperature": 37.1, "pain": 2}
    assert [(s.text, s.value_num) for s in of_kind(entities, "lab")] == [("GAD-7 score", 5)]
    height = next(v for v in of_kind(entities, "vital") if v.attribute == "height")
    assert height.text == "Height 167.2 cm"  # its own two cells, not the row


def test_scores_listed_inline_are_each_an_observation(read) -> None:
    lines = column("Screening:", "Braden scale: 18; EPDS score: 9; PHQ-9 score: 4")

    assert [(s.text, s.value_num) for s in of_kind(read(lines), "lab")] == [
        ("Braden scale", 18), ("EPDS score", 9), ("PHQ-9 score", 4)]


def test_a_heading_over_scores_is_no_label_over_its_value(read) -> None:
    # A heading no reader knows, then "Key: value" rows: the first row is not the heading's value.
    lines = column("SCREENING", "GAD-7 score: 8", "PHQ-2 score: 1", "DAST-10 scorè: 0", "Morse Fall Scale 45")

    scores = [(s.text, s.value_num) for s in of_kind(read(lines), "lab")]

    assert scores == [("GAD-7 score", 8), ("PHQ-2 score", 1), ("DAST-10 score", 0), ("Morse Fall Scale", 45)]  # the OCR accent read plain


def test_a_vitals_sentence_wrapped_over_rows_with_measures_no_pattern_names(read) -> None:
    lines = column("Vital signs:", "Blood pressure 120/83 mmHg, Ht 93.4 cm, Weight 13.4 kg, Wt-for-length",
                   "pctl 32.6 %, OFC 50.3 cm, FEV1/FVC 63 %, HR 75 bpm, Resp.", "rate 15 breaths/min")

    entities = read(lines)

    vitals = {v.attribute: v.value_num for v in of_kind(entities, "vital")}
    assert vitals == {"systolic": 120, "diastolic": 83, "height": 93.4, "weight": 13.4, "pulse": 75,
                      "respiratory rate": 15}
    measures = [(m.text, m.value_num, m.unit) for m in of_kind(entities, "lab")]
    assert measures == [("Wt-for-length pctl", 32.6, "%"), ("OFC", 50.3, "cm"), ("FEV1/FVC", 63, "%")]
