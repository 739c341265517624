"""A small page drawn in code: OCR lines, the lexicon's coded mentions, the page's candidates (helpers and fixtures)."""

from __future__ import annotations

import pytest

from pipeline.llm.prompt import PageCandidate
from pipeline.records import CodeCandidate, Entity, OcrLine
from terminology_index import ICD10CM, RXNORM

PAGE_TEXT = ["MRN: 3000002", "PAST MEDICAL HISTORY:", "- Essential hypertension", "- No history of asthma",
             "HOME MEDICATIONS:", "- Metformin 500 mg PO BID"]

HYPERTENSION = CodeCandidate(ICD10CM, "I10", "Essential (primary) hypertension", 0.98, "exact")
ASTHMA = CodeCandidate(ICD10CM, "J45.909", "Unspecified asthma, uncomplicated", 0.9, "exact")
METFORMIN = CodeCandidate(RXNORM, "6809", "metformin", 0.95, "exact")


@pytest.fixture
def page_lines() -> list[OcrLine]:
    return [OcrLine(line_id=i, text=text, confidence=0.9 + 0.01 * i, polygon=[[0, 0]] * 4,
                    bbox=[80.0, 60.0 + 30 * i, 400.0, 80.0 + 30 * i]) for i, text in enumerate(PAGE_TEXT)]


@pytest.fixture
def page_candidates() -> list[PageCandidate]:
    return [PageCandidate("diagnosis", HYPERTENSION), PageCandidate("medication", METFORMIN),
            PageCandidate("diagnosis", ASTHMA)]


def lexicon_entity(kind: str, text: str, line: int, candidate: CodeCandidate | None, **fields) -> Entity:
    values = dict(section="past_medical_history", assertion="present", page_index=0, line_ids=[line],
                  bbox=[80.0, 60.0 + 30 * line, 400.0, 80.0 + 30 * line], ocr_confidence=0.95, confidence=0.7)
    values.update(fields)
    entity = Entity(entity_id=f"lex-{line}", kind=kind, text=text, **values)
    if candidate is not None:
        entity.code, entity.code_system, entity.code_display = candidate.code, candidate.system, candidate.display
        entity.code_score, entity.candidates = candidate.score, [candidate]
    return entity


@pytest.fixture
def lexicon_entities() -> list[Entity]:
    """What the lexicon and code stages found: the MRN, hypertension, negated asthma, metformin."""
    return [
        lexicon_entity("demographic", "3000002", 0, None, attribute="mrn", value="3000002"),
        lexicon_entity("diagnosis", "Essential hypertension", 2, HYPERTENSION),
        lexicon_entity("diagnosis", "asthma", 3, ASTHMA, assertion="negated"),
        lexicon_entity("medication", "Metformin", 5, METFORMIN, section="medications", dose_value=500.0, dose_unit="mg"),
    ]


def mention(k: str, t: str, lines: list[int], a: str = "present", c: int | None = None,
            v: str | None = None, u: str | None = None) -> dict:
    """One entity as the model writes it (compact keys)."""
    return {"k": k, "t": t, "l": lines, "a": a, "c": c, "v": v, "u": u}
