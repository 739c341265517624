"""Field confidence: extraction strength x code trust x agreement of document type and section."""

from __future__ import annotations

import pytest

from pipeline.confidence import combine, review_priority, section_agreement
from pipeline.records import CodeCandidate, Entity, FieldScore


def entity(section: str = "discharge medications", **fields) -> Entity:
    values = dict(entity_id="e1", kind="medication", text="Metformin 500 mg", section=section, assertion="present",
                  page_index=0, line_ids=[0], bbox=[0.0, 0.0, 1.0, 1.0], ocr_confidence=0.9, confidence=0.9,
                  fields=[FieldScore("name", "Metformin", 0.855), FieldScore("dose", "500 mg", 0.855)])
    values.update(fields)
    return Entity(**values)


@pytest.mark.parametrize("section, document_type, type_confidence, factor", [
    ("discharge medications", "discharge_summary", 0.95, 1.0),  # agree
    ("discharge medications", "lab_report", 0.95, 0.85),  # disagree
    ("discharge medications", "lab_report", 0.3, 0.95),  # the classifier is unsure: a weak signal
    ("laboratory results", "lab_report", 0.9, 1.0),
    ("home medications", "lab_report", 0.95, 1.0),  # a section any document may have says nothing
])
def test_section_and_document_type_agreement(section: str, document_type: str, type_confidence: float,
                                             factor: float) -> None:
    assert section_agreement(section, document_type, type_confidence) == factor


def test_code_field_from_score_match_and_ocr() -> None:
    exact = entity(code="861007", code_score=1.0,
                   candidates=[CodeCandidate("rxnorm", "861007", "metformin 500 MG", 1.0, "exact:SCD")])
    searched = entity(code="861007", code_score=0.8,
                      candidates=[CodeCandidate("rxnorm", "861007", "metformin 500 MG", 0.8, "fts")])

    by_strength = entity(code="861007", ingredient_code="6809", code_score=1.0,
                         candidates=[CodeCandidate("rxnorm", "6809", "metformin", 1.0, "exact:preferred")])

    combine(exact, "discharge_summary", 0.95)
    combine(searched, "discharge_summary", 0.95)
    combine(by_strength, "discharge_summary", 0.95)

    assert {f.name: f.confidence for f in exact.fields}["code"] == pytest.approx(0.9)
    assert {f.name: f.confidence for f in searched.fields}["code"] == pytest.approx(0.8 * 0.8 * 0.9, abs=1e-4)
    assert exact.confidence == pytest.approx(0.855) and searched.confidence == pytest.approx(0.576, abs=1e-4)
    assert {f.name: f.confidence for f in by_strength.fields}["code"] == pytest.approx(0.9)


def test_disagreement_lowers_every_field_and_combining_twice_changes_nothing() -> None:
    disagreeing = entity()

    combine(disagreeing, "lab_report", 0.95)
    once = [(f.name, f.confidence) for f in disagreeing.fields]
    combine(disagreeing, "lab_report", 0.95)

    assert once == [("name", pytest.approx(0.7268, abs=1e-4)), ("dose", pytest.approx(0.7268, abs=1e-4))]
    assert [(f.name, f.confidence) for f in disagreeing.fields] == once


def test_priority_puts_low_confidence_severe_medication_findings_first() -> None:
    medication_error = review_priority("medication", 0.5, ["error"])
    medication_low = review_priority("medication", 0.5, [])
    encounter_error = review_priority("encounter", 0.5, ["error"])
    vital_info = review_priority("vital", 0.9, ["info"])

    assert medication_error > medication_low > vital_info
    assert medication_error > encounter_error
