"""What every reader shares: the context of a row, evidence strengths, entity and field helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.layout import Row
from pipeline.records import Entity, FieldScore
from pipeline.spotter import TermSpotter
from pipeline.terminology import normalise_term

NUMBER = r"\d+(?:\.\d+)?"
BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s*")
# Words before a listed item that change what it asserts ("h/o stroke", "r/o PE").
LEADING_TRIGGER = re.compile(r"^(?P<trigger>(?:history of|hx of|h/o|s/p|status post|no|denies|rule out|r/o|possible|"
                             r"suspected|probable|family history of|planned|scheduled for)\s+)", re.I)
# SNOMED CT semantic tags ("Stress (finding)"): the hierarchy a term belongs to, not part of
# its name. The tags are SNOMED CT's own (SNOMED CT Editorial Guide, "Semantic Tags").
SEMANTIC_TAG = re.compile(
    r"\s*\((?:disorder|finding|procedure|situation|observable entity|qualifier value|morphologic abnormality|"
    r"regime/therapy|event|body structure|substance|product|medicinal product|clinical drug|person|"
    r"environment|physical object|record artifact|specimen|navigational concept|social concept|"
    r"assessment scale|tumor staging|attribute|occupation|ethnic group|life style|religion/philosophy|"
    r"physical force|organism|cell|cell structure|geographic location|racial group)\)", re.I)

# Strength of each kind of evidence: how much a field read this way is worth before OCR
# confidence, coding and cross-checks (pipeline.confidence) adjust it.
# A clean scan reads at OCR confidence ~0.95-0.99, so the sure readings stay above the
# default review threshold (0.75) and the doubtful ones fall below it.
STRENGTH = {"exact_list_item": 0.95, "dictionary_in_text": 0.9, "pattern": 0.95, "table_row": 1.0,
            "procedure_item": 0.9, "unknown_lab_name": 0.6, "name_only": 0.7, "unparsed_sig": 0.6,
            "unknown_unit": 0.6, "no_unit": 0.55, "narrative_list_item": 0.8, "unknown_list_item": 0.7}


@dataclass
class Lexicons:
    """Normalised names the readers spot, drawn from the terminology index.

    `diagnosis_spotter` finds diagnosis terms in free text approximately (word order,
    plurals, OCR slips, abbreviations); built from the index's every diagnosis term by
    `lexicons_from_index`, else from `diagnoses` on first use.
    """

    diagnoses: set[str]
    medications: set[str]
    labs: set[str]
    vitals: set[str] = field(default_factory=set)
    diagnosis_spotter: TermSpotter | None = None

    def diagnosis_terms(self) -> TermSpotter:
        """The diagnosis spotter (built from the plain names when none was given)."""
        if self.diagnosis_spotter is None:
            self.diagnosis_spotter = TermSpotter.from_terms(self.diagnoses)
        return self.diagnosis_spotter


@dataclass
class ReadContext:
    """Where on the page an item stands: what a reader needs besides the words."""

    document_type: str
    section: str
    role: str
    row: Row
    page: int
    text: str = ""  # the item: the row's text without its bullet, or what follows a heading's colon
    # Set by a reader that read the whole item (a lab row, a medication line): later readers skip it.
    claimed: bool = False
    # A paragraph joined from several rows: where each row's text starts and ends in `text`.
    spans: list[tuple[int, int, Row]] = field(default_factory=list)

    def rows_of(self, start: int, end: int) -> Row:
        """The lines that carry characters start..end of the item (its provenance)."""
        lines = [line for a, b, row in self.spans if a < end and start < b for line in row.lines]
        return Row(lines) if lines else self.row


def new_entity(kind: str, text: str, ctx: ReadContext, assertion: str) -> Entity:
    """An entity mention with the row's provenance (page, lines, box, OCR confidence)."""
    return Entity(entity_id="", kind=kind, text=text, section=ctx.section, assertion=assertion, page_index=ctx.page,
                  line_ids=ctx.row.line_ids, bbox=ctx.row.bbox, ocr_confidence=ctx.row.confidence,
                  confidence=ctx.row.confidence)


def score_field(entity: Entity, name: str, value: str | None, strength: float) -> None:
    """Record a field's confidence: how clearly the page shows it (OCR) times how sure the reading is."""
    entity.fields.append(FieldScore(name, value, round(entity.ocr_confidence * strength, 4)))


def longest_known_prefix(name: str, known: set[str]) -> str | None:
    """The longest run of leading words of `name` that is a known term."""
    words = name.split()
    for n in range(len(words), 0, -1):
        if normalise_term(" ".join(words[:n])) in known:
            return " ".join(words[:n])
    return None
