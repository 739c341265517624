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
