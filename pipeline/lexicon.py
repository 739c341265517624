"""The lexicon extraction backend: sections, then small readers over each item of a page.

Works on rows of OCR lines (see `pipeline.layout`). Each kind of fact has its own reader
(`pipeline.readers`), composed in one visible list below; names are recognised against
dictionaries drawn from the terminology index, so the backend knows what the coder knows.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from pipeline.layout import Row
from pipeline.readers.allergies import AllergyReader
from pipeline.readers.common import BULLET, Lexicons, ReadContext
from pipeline.readers.conditions import ConditionReader
from pipeline.readers.demographics import DemographicsReader
from pipeline.readers.medications import MedicationReader
from pipeline.readers.observations import ObservationReader
from pipeline.readers.procedures import ProcedureReader
from pipeline.records import Entity
from pipeline.spotter import TermSpotter
from pipeline.terminology import TerminologyIndex, normalise_term

__all__ = ["LexiconExtractor", "Lexicons", "SECTIONS", "deterministic_entity_id", "lexicons_from_index"]

# Section headers as charts write them (names, abbreviations, variants) -> (canonical
# section, what its items are).
_SECTION_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("history of present illness", "narrative"): ("history of present illness", "hpi", "present illness",
                                                  "history of presenting complaint", "hpc", "interval history"),
    ("subjective", "narrative"): ("subjective",),
    ("chief complaint", "narrative"): ("chief complaint", "cc", "reason for visit", "reason for referral"),
    ("review of systems", "narrative"): ("review of systems", "ros"),
    ("past medical history", "diagnoses"): ("past medical history", "pmh", "pmhx", "past history",
                                            "past medical hx", "medical hx"),
    ("medical history", "checklist"): ("medical history",),
    ("past surgical history", "procedures"): ("past surgical history", "psh", "pshx", "surgical history",
                                              "surgeries"),
    ("problem list", "diagnoses"): ("problem list", "problems", "active problems"),
    ("assessment", "diagnoses"): ("assessment", "assessment and plan", "assessment & plan", "assessment/plan",
                                  "a/p", "a&p", "impression", "clinical impression"),
    ("diagnoses", "diagnoses"): ("diagnoses", "diagnosis", "dx"),
    ("discharge diagnoses", "diagnoses"): ("discharge diagnoses", "discharge diagnosis", "final diagnoses",
                                           "final diagnosis"),
    ("admission diagnoses", "diagnoses"): ("admission diagnoses", "admission diagnosis", "admitting diagnosis"),
    ("medications", "medications"): ("medications", "meds", "medication list", "medication"),
    ("home medications", "medications"): ("home medications", "home meds", "current medications", "current meds",
                                          "admission medications", "medications on admission",
                                          "outpatient medications"),
    ("discharge medications", "medications"): ("discharge medications", "discharge meds",
                                               "medications on discharge", "discharge prescriptions"),
    ("plan", "medications"): ("plan",),
    ("prescription", "medications"): ("rx", "prescription", "prescriptions"),
    ("allergies", "allergies"): ("allergies", "allergy", "drug allergies", "allergies/adverse reactions",
                                 "adverse reactions", "allergies and adverse reactions"),
    ("vital signs", "vitals"): ("vital signs", "vitals", "vs"),
    ("laboratory results", "labs"): ("labs", "laboratory", "laboratory results", "lab results", "results",
                                     "laboratory data", "pertinent labs"),
    ("procedures", "procedures"): ("procedures", "procedures performed", "operations"),
    ("family history", "family"): ("family history", "fhx", "fh", "family hx"),
    ("social history", "narrative"): ("social history", "shx", "sh", "social hx"),
    ("hospital course", "narrative"): ("hospital course", "brief hospital course"),
}
SECTIONS: dict[str, tuple[str, str]] = {name: section for section, names in _SECTION_NAMES.items() for name in names}
# A document type's sections whose items have no heading of their own (a prescription's
# lines, a lab report's table).
DEFAULT_ROLE = {"prescription": ("prescription", "medications"), "lab_report": ("laboratory results", "labs")}
_SECTIONS_COMPACT = {name.replace(" ", ""): value for name, value in SECTIONS.items()}
_HEADER = re.compile(r"^\s*([A-Za-z][A-Za-z /&]+?)\s*(?:\(.*\))?\s*[:\-]\s*(.*)$")

def lexicons_from_index(index: TerminologyIndex) -> Lexicons:
    """The readers' dictionaries drawn from an index: exact names per kind, and a spotter
    over every diagnosis term (descriptions, inclusion terms, synonyms) for free text."""
    return Lexicons(diagnoses=index.lexicon("diagnosis"), medications=index.lexicon("medication"),
                    labs=index.lexicon("lab"), diagnosis_spotter=TermSpotter(index.spotter_terms("diagnosis")))


class LexiconExtractor:
    """Turns the rows of one page into entity mentions (uncoded; the code stage codes them)."""

    def __init__(self, lexicons: Lexicons):
        self.lexicons = lexicons
        # In order: field readers first (they never claim an item), then the readers that
        # take a whole item; the first of those to read an item ends it.
        self.readers = [
            DemographicsReader(),
            ObservationReader(lexicons),
            MedicationReader(lexicons),
            AllergyReader(lexicons),
            ProcedureReader(),
            ConditionReader(lexicons),
        ]

    def extract(self, document_id: str, page_index: int, rows: list[Row], document_type: str = "other"
                ) -> list[Entity]:
        """Entities of one page; `document_type` (from the classifier) decides what unheaded
        rows are (a prescription's lines are medications) and how lists are read."""
        entities: list[Entity] = []
        # Before the first header (letterhead, patient banner) only fields and tables are read,
        # unless the document type says what its unheaded lines are.
        section, role = DEFAULT_ROLE.get(document_type, ("", "preamble"))
        for row in rows:
            text = row.text.strip()
            if not text:
                continue
            header = self._section_header(row)
            if header is not None:
                (section, role), text = header
                if not text:
                    continue
            item = BULLET.sub("", text).strip().rstrip(".")
            ctx = ReadContext(document_type, section, role, row, page_index, item)
            for reader in self.readers:
                if ctx.claimed:
                    break
                entities.extend(reader.read(ctx))
        seen: Counter[str] = Counter()
        for entity in entities:
            entity.entity_id = deterministic_entity_id(document_id, entity)
            seen[entity.entity_id] += 1
            if seen[entity.entity_id] > 1:  # the same words twice on one row stay two mentions
                entity.entity_id = f"{entity.entity_id}-{seen[entity.entity_id]}"
            entity.confidence = min((f.confidence for f in entity.fields), default=entity.confidence)
        return entities

    @staticmethod
    def _section_header(row: Row) -> tuple[tuple[str, str], str] | None:
        """(section, role) and any text after the colon, when the row opens a section.

        A heading is a known section name followed by a colon, or standing alone on its
        row (OCR often drops the colon: "RX").
        """
        match = _HEADER.match(row.lines[0].text)
        if match:
            name, rest = match.group(1), " ".join([match.group(2)] + [line.text for line in row.lines[1:]])
        elif len(row.lines) == 1:
            name, rest = row.lines[0].text, ""
        else:
            return None
        section = _SECTIONS_COMPACT.get(normalise_term(name).replace(" ", ""))
        return (section, rest.strip()) if section else None


def deterministic_entity_id(document_id: str, entity: Entity) -> str:
    """Deterministic: the same page and content give the same id on every run."""
    key = "|".join([document_id, str(entity.page_index), entity.kind, entity.attribute or "", entity.text,
                    ",".join(map(str, entity.line_ids))])
    return "ent-" + hashlib.sha256(key.encode()).hexdigest()[:20]
