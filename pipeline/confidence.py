"""Field confidence: extraction strength combined with coding and cross-checks.

The extractor scores each field as OCR confidence x pattern strength (`FieldScore.base`).
After coding, `combine` adds the code as a field (code score x how it matched x OCR
confidence) and scales every field by the agreement between two independent signals: the
classifier's document type and the section the entity was read in. It recomputes from the
base each time, so validating twice changes nothing.
"""

from __future__ import annotations

from pipeline.records import Entity, FieldScore

# Sections that belong to one document type: read in a document of another type, the
# classifier or the section reading is wrong, and every field of the entity is less sure.
TYPE_SECTIONS = {
    "discharge_summary": frozenset({"discharge diagnoses", "discharge medications", "hospital course",
                                    "admission diagnoses"}),
    "lab_report": frozenset({"laboratory results", "results"}),
    "prescription": frozenset({"prescription"}),
}
AGREE, UNSURE, DISAGREE = 1.0, 0.95, 0.85
SURE_TYPE = 0.6  # classifier confidence from which its type counts as a signal
# How a chosen code was found (CodeCandidate.match prefix) -> how far its score is trusted.
CODE_MATCH_TRUST = {"exact": 1.0, "combination": 1.0, "ocr-tolerant": 0.9}
OTHER_MATCH_TRUST = 0.8  # full-text or vector search: near, not the term itself
# What a wrong value costs a patient, by kind: scales review priority.
CLINICAL_WEIGHT = {"medication": 1.0, "allergy": 1.0, "lab": 0.9, "diagnosis": 0.8, "vital": 0.7,
                   "procedure": 0.6, "demographic": 0.6, "encounter": 0.5}
SEVERITY_WEIGHT = {"error": 0.5, "warning": 0.3, "info": 0.1}


def section_agreement(section: str, document_type: str | None, type_confidence: float) -> float:
    """1.0 when the section fits the document type (or says nothing about it), less when not."""
    owner = next((kind for kind, sections in TYPE_SECTIONS.items() if section in sections), None)
    if owner is None:
        return AGREE
    if not document_type or type_confidence < SURE_TYPE or document_type == "other":
        return UNSURE
    return AGREE if owner == document_type else DISAGREE


def code_trust(entity: Entity) -> float:
    """How the chosen code was found; a clinical drug chosen by strength inherits its ingredient's match."""
    chosen = next((c for c in entity.candidates if c.code in (entity.code, entity.ingredient_code)), None)
    if chosen is None:
        return OTHER_MATCH_TRUST
    prefix = chosen.match.split(":", 1)[0]
    return CODE_MATCH_TRUST.get(prefix, OTHER_MATCH_TRUST)


def combine(entity: Entity, document_type: str | None, type_confidence: float) -> None:
    """Set each field's confidence and the entity's (the lowest field's) from all signals."""
    factor = section_agreement(entity.section, document_type, type_confidence)
    fields = [field for field in entity.fields if field.name != "code"]
    if entity.code and entity.code_score is not None:
        base = entity.code_score * code_trust(entity) * entity.ocr_confidence
        fields.append(FieldScore("code", entity.code, base, base=base))
    for field in fields:
        field.confidence = round(field.base * factor, 4)
    entity.fields = fields
    if fields:
        entity.confidence = min(field.confidence for field in fields)


def review_priority(kind: str, confidence: float, severities: list[str]) -> float:
    """Worst first: low confidence and severe rule findings on clinically weighty kinds."""
    severity = max((SEVERITY_WEIGHT.get(s, 0.0) for s in severities), default=0.0)
    return round(CLINICAL_WEIGHT.get(kind, 0.5) * (1.0 - confidence + severity), 4)
