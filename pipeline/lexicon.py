"""The lexicon extraction backend: sections, then small readers over each item of a page.

Works on rows of OCR lines (see `pipeline.layout`). Each kind of fact has its own reader
(`pipeline.readers`), composed in one visible list below; names are recognised against
dictionaries drawn from the terminology index, so the backend knows what the coder knows.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

from pipeline.beside_index import KeptBesideIndex
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
    # Smoking, alcohol, work and home: FHIR records these as social-history Observations, not
    # as the patient's conditions.
    ("social history", "social"): ("social history", "shx", "sh", "social hx"),
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


# Built once beside the index, loaded by every extract actor; the code that turns an index into
# lexicons is in its key, so a change to any of it builds them again.
LEXICONS = KeptBesideIndex("lexicons-", ("lexicon.py", "spotter.py", "terminology.py", "readers/common.py"),
                           lambda index_path: lexicons_from_index(TerminologyIndex(index_path)))


def lexicons_path(index_path: Path) -> Path:
    """Where the lexicons of the index at `index_path` are kept (named by its version and the code)."""
    return LEXICONS.path(index_path)


def ensure_lexicons(index_path: Path) -> Path:
    """Build the lexicons of an index once (the spotter: a few CPU seconds) and keep them in
    the index folder, where every extract actor loads them; older ones are removed."""
    return LEXICONS.ensure(index_path)


def load_lexicons(index_path: Path) -> Lexicons:
    """The lexicons of the index at `index_path`, from the file `ensure_lexicons` keeps."""
    ensure_lexicons(index_path)
    return LEXICONS.load_if_kept(index_path)


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
        heading = DEFAULT_ROLE.get(document_type, ("", "preamble"))
        section, role = heading
        # The rows of the item being read: a narrative paragraph, or a list item wrapped over
        # several rows; each with its text (a heading's row only with what follows the colon).
        pending: list[tuple[Row, str]] = []
        # Where a lead-in's list items start: right of the lead-in's own left edge. Scans lose
        # small bullets, so an item indented past the lead-in is still an item without one.
        item_indent: float | None = None
        list_right = 0.0  # the list's widest row so far: where a wrapped item's line would end

        def read_pending() -> None:
            if pending:
                entities.extend(self._read_rows(pending, document_type, section, role, page_index))
                pending.clear()

        for row in rows:
            text = row.text.strip()
            if not text:
                continue
            if PAGE_FURNITURE.search(text):
                # A running header or footer ("Page 1 of 2", a signature line) ends the section
                # above it: it is no item of that list. Its fields are still read.
                read_pending()
                section, role = heading = ("", "preamble")
                item_indent = None
                pending.append((row, text))
                read_pending()
                continue
            header = self._section_header(row, role)
            if header is not None:
                read_pending()
                (section, role), text = header
                heading = (section, role)
                item_indent = None
                if text:
                    pending.append((row, text))
                continue
            if (lead := _lead_in(_last_sentence(pending, text))) is not None:
                # "The following procedures were conducted:" opens a list of that kind.
                read_pending()
                section, role = lead
                item_indent = row.bbox[0] + (row.bbox[2] - row.bbox[0]) / max(len(text), 1)
                list_right = row.bbox[2]
                continue
            bullet = BULLET.match(text)
            indented = item_indent is not None and row.bbox[0] > item_indent
            if not bullet and not indented and (section, role) != heading and section.startswith(_LIST_OF):
                read_pending()
                section, role = heading  # the lead-in's list ended with the first row back at its margin
                item_indent = None
            if indented:
                list_right = max(list_right, row.bbox[2])
                if not bullet and pending and _would_have_fitted(pending[-1][0], text, list_right):
                    bullet = True  # the row above ended short: this row is an item whose bullet was lost
            if pending and not bullet and (role in NARRATIVE_ROLES or (role in _WRAPPING_ROLES and text[:1].islower())):
                pending.append((row, text))  # the paragraph, or the wrapped list item, goes on
                continue
            read_pending()
            pending.append((row, text))
        read_pending()
        seen: Counter[str] = Counter()
        for entity in entities:
            entity.entity_id = deterministic_entity_id(document_id, entity)
            seen[entity.entity_id] += 1
            if seen[entity.entity_id] > 1:  # the same words twice on one row stay two mentions
                entity.entity_id = f"{entity.entity_id}-{seen[entity.entity_id]}"
            entity.confidence = min((f.confidence for f in entity.fields), default=entity.confidence)
        return entities

    def _read(self, ctx: ReadContext) -> list[Entity]:
        """Every reader in turn on one item, until one of them claims it."""
        found: list[Entity] = []
        for reader in self.readers:
            if ctx.claimed:
                break
            found.extend(reader.read(ctx))
        return found

    def _read_rows(self, rows: list[tuple[Row, str]], document_type: str, section: str, role: str, page: int
                   ) -> list[Entity]:
        """One item read from its rows joined into one text, so a sentence or a list item
        wrapped over lines stays whole; `spans` keeps which row each part came from."""
        spans, parts, offset = [], [], 0
        for row, text in rows:
            spans.append((offset, offset + len(text), row))
            parts.append(text)
            offset += len(text) + 1
        joined = Row([line for row, _ in rows for line in row.lines]) if len(rows) > 1 else rows[0][0]
        return self._read(ReadContext(document_type, section, role, joined, page, _item(" ".join(parts)),
                                      spans=spans))

    def _section_header(self, row: Row, role: str) -> tuple[tuple[str, str], str] | None:
        """(section, role) and any text after the colon, when the row opens a section.

        A heading is a known section name followed by a colon, or standing alone on its
        row (OCR often drops the colon: "RX"). Headings that join two names ("Diagnoses /
        Problem list", "Assessment and problem list") or add a word ("Medications ordered")
        take the first known name; a short all-capitals row that names no known section
        still ends the one before ("SCREENING"), so its lines are not read as that one's items
        (in a list, only when it is more than one word and no known term: "NKDA", "COPD").
        """
        match = _HEADER.match(row.lines[0].text)
        if match:
            name, rest = match.group(1), " ".join([match.group(2)] + [line.text for line in row.lines[1:]])
        elif len(row.lines) == 1:
            name, rest = row.lines[0].text, ""
        else:
            return None
        section = _known_section(name, prefix=bool(match) or _looks_like_heading(name))
        if section is None and not match and _looks_like_heading(name) and (
                role not in LIST_ROLES or (len(name.split()) > 1 and not self._known_term(name))):
            section = (normalise_term(name), "other")
        return (section, rest.strip()) if section else None

    def _known_term(self, text: str) -> bool:
        term = normalise_term(text)
        return any(term in known for known in (self.lexicons.diagnoses, self.lexicons.medications, self.lexicons.labs))


LIST_ROLES = frozenset({"diagnoses", "medications", "allergies", "procedures"})
# Where a row that starts in lower case continues the item above (a wrapped list item, a
# vitals list written as a sentence, or a sentence under a heading no reader knows).
_WRAPPING_ROLES = LIST_ROLES | {"other", "vitals"}
# Page furniture: a page count, a signature box, or a signature with its date at the end of the row
# (OCR may glue it to the name before: "MDSigned: 2021-07-02").
PAGE_FURNITURE = re.compile(r"\bpage \d+ (?:of|/) \d+\b|\bsignature\b|signed\b(?: by| on)?:?.*\d{2,4}\s*$", re.I)
# Narrative sections are read a paragraph at a time; list sections an item (row) at a time.
NARRATIVE_ROLES = frozenset({"narrative", "family", "social"})
_HEADING_PARTS = re.compile(r"\s*(?:/|&|\band\b)\s*")
_HEADING_WORDS = re.compile(r"^[A-Z][A-Z /&-]{2,60}$")
_LIST_OF = "list of "
# A line ending in a colon that opens a list says what the list holds.
_LEAD_IN_KINDS = (
    ("procedures", re.compile(r"\b(?:procedures?|operations?|surger(?:y|ies))\b", re.I)),
    ("medications", re.compile(r"\b(?:medications?|medicines?|prescri\w+|drugs?)\b", re.I)),
    ("diagnoses", re.compile(r"\b(?:diagnos[ie]s|problems?|conditions?)\b", re.I)),
    ("allergies", re.compile(r"\ballerg\w+", re.I)),
)


def _last_sentence(pending: list[tuple[Row, str]], text: str) -> str:
    """The sentence a row ends, with its start on the rows above when the row goes on from
    them ("... The following procedures" / "were conducted:")."""
    if not pending or not text.endswith(":") or BULLET.match(text):
        return text
    joined = " ".join([t for _, t in pending] + [text])
    return re.split(r"(?<=[.!?])\s+", joined)[-1]


def _would_have_fitted(above: Row, text: str, right_edge: float) -> bool:
    """Whether the first word of `text` would have fitted at the end of the row above, which
    then ended short by choice (a new item), not where the line was full (a wrapped item)."""
    char_width = (above.bbox[2] - above.bbox[0]) / max(len(above.text), 1)
    first_word = len(text.split()[0]) if text.split() else 0
    return above.bbox[2] + (first_word + 1) * char_width <= right_edge


def _item(text: str) -> str:
    return BULLET.sub("", text).strip().rstrip(".")


def _looks_like_heading(text: str) -> bool:
    """Capitals only, a few words, no digits: how forms and letters print their headings."""
    return bool(_HEADING_WORDS.match(text.strip())) and len(text.split()) <= 6


def _known_section(name: str, prefix: bool) -> tuple[str, str] | None:
    key = normalise_term(name)
    found = _SECTIONS_COMPACT.get(key.replace(" ", ""))
    if found or not prefix:
        return found
    for part in _HEADING_PARTS.split(name.lower()):
        found = _SECTIONS_COMPACT.get(normalise_term(part).replace(" ", ""))
        if found:
            return found
    words = key.split()
    for n in range(len(words) - 1, 0, -1):
        found = SECTIONS.get(" ".join(words[:n]))
        if found:
            return found
    return None


def _lead_in(text: str) -> tuple[str, str] | None:
    """(section, role) of a sentence that ends in a colon and opens a list; the role is the
    kind of item it names, or "other" when it names none (its items are then not read)."""
    if not text.endswith(":") or len(text.split()) < 3:
        return None
    role = next((kind for kind, pattern in _LEAD_IN_KINDS if pattern.search(text)), "other")
    return _LIST_OF + role, role


def deterministic_entity_id(document_id: str, entity: Entity) -> str:
    """Deterministic: the same page and content give the same id on every run."""
    key = "|".join([document_id, str(entity.page_index), entity.kind, entity.attribute or "", entity.text,
                    ",".join(map(str, entity.line_ids))])
    return "ent-" + hashlib.sha256(key.encode()).hexdigest()[:20]
