"""The lexicon extraction backend: sections, dictionary spotting, patterns and assertion.

Works on rows of OCR lines (see `pipeline.layout`). Names are recognised against
dictionaries drawn from the terminology index, so the backend knows what the coder knows;
values are read with patterns and normalised (UCUM units, ISO dates, frequency codes).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date

from pipeline.layout import Row
from pipeline.records import Entity, OcrLine
from pipeline.terminology import normalise_term

# Section headers as charts write them -> (canonical section, what its items are).
SECTIONS: dict[str, tuple[str, str]] = {
    "history of present illness": ("history of present illness", "narrative"),
    "hpi": ("history of present illness", "narrative"),
    "subjective": ("subjective", "narrative"),
    "chief complaint": ("chief complaint", "narrative"),
    "review of systems": ("review of systems", "narrative"),
    "past medical history": ("past medical history", "diagnoses"),
    "pmh": ("past medical history", "diagnoses"),
    "medical history": ("medical history", "checklist"),
    "problem list": ("problem list", "diagnoses"),
    "assessment": ("assessment", "diagnoses"),
    "assessment and plan": ("assessment", "diagnoses"),
    "diagnoses": ("diagnoses", "diagnoses"),
    "discharge diagnoses": ("discharge diagnoses", "diagnoses"),
    "discharge diagnosis": ("discharge diagnoses", "diagnoses"),
    "admission diagnoses": ("admission diagnoses", "diagnoses"),
    "medications": ("medications", "medications"),
    "home medications": ("home medications", "medications"),
    "current medications": ("home medications", "medications"),
    "discharge medications": ("discharge medications", "medications"),
    "plan": ("plan", "medications"),
    "rx": ("prescription", "medications"),
    "allergies": ("allergies", "allergies"),
    "vital signs": ("vital signs", "vitals"),
    "vitals": ("vital signs", "vitals"),
    "procedures": ("procedures", "procedures"),
    "family history": ("family history", "family"),
    "social history": ("social history", "narrative"),
}

# OCR drops spaces between words of headings ("FAMILYHISTORY"): match them compacted too.
_SECTIONS_COMPACT = {name.replace(" ", ""): value for name, value in SECTIONS.items()}
_HEADER = re.compile(r"^\s*([A-Za-z][A-Za-z /&]+?)\s*(?:\(.*\))?\s*:\s*(.*)$")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s*")
_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b|\b(\d{4})-(\d{2})-(\d{2})\b")
_NUMBER = r"\d+(?:\.\d+)?"

NEGATION_TRIGGERS = ("no ", "denies ", "denied ", "negative for ", "without ", "not ", "ruled out ", "no known ")
HISTORY_TRIGGERS = ("history of ", "h/o ", "prior ", "previous ")
HYPOTHETICAL_TRIGGERS = ("rule out ", "r/o ", "possible ", "suspected ", "if ")
NON_DRUG_ALLERGENS = {"latex", "peanuts", "peanut", "shellfish", "eggs", "egg", "bee stings", "iodine", "contrast",
                      "tree nuts", "milk", "soy", "wheat", "fish", "adhesive tape"}
FAMILY_WORDS = ("mother", "father", "sister", "brother", "grandmother", "grandfather", "aunt", "uncle", "family")

UCUM_UNITS = {
    "mmhg": "mm[Hg]", "bpm": "/min", "/min": "/min", "breaths/min": "/min", "c": "Cel", "°c": "Cel",
    "f": "[degF]", "°f": "[degF]", "%": "%", "kg": "kg", "lb": "[lb_av]", "lbs": "[lb_av]", "cm": "cm",
    "in": "[in_i]", "mg/dl": "mg/dL", "mmol/l": "mmol/L", "g/dl": "g/dL", "u/l": "U/L", "iu/l": "[IU]/L",
    "k/ul": "10*3/uL", "x10^3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "miu/l": "m[IU]/L", "uiu/ml": "u[IU]/mL",
    "ng/ml": "ng/mL", "pg/ml": "pg/mL", "meq/l": "meq/L", "mg": "mg", "mcg": "ug", "g": "g", "ml": "mL",
    "units": "[iU]", "unit": "[iU]", "ml/min/1.73m2": "mL/min/{1.73_m2}", "kg/m2": "kg/m2",
}

FREQUENCIES = {
    "daily": "QD", "once daily": "QD", "qd": "QD", "every day": "QD", "bid": "BID", "twice daily": "BID",
    "twice a day": "BID", "tid": "TID", "three times daily": "TID", "qid": "QID", "four times daily": "QID",
    "qhs": "QHS", "at bedtime": "QHS", "nightly": "QHS", "qod": "QOD", "every other day": "QOD",
    "q4h": "Q4H", "q6h": "Q6H", "q8h": "Q8H", "q12h": "Q12H", "weekly": "QWK", "prn": "PRN", "as needed": "PRN",
}
ROUTES = {"po": "PO", "by mouth": "PO", "oral": "PO", "iv": "IV", "im": "IM", "sc": "SC", "sq": "SC",
          "subcut": "SC", "sl": "SL", "inhaled": "INH", "topical": "TOP", "pr": "PR"}

_VITAL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("pulse", re.compile(rf"\b(?:HR|heart rate|pulse)\s*:?\s*({_NUMBER})\s*(bpm|/min)?", re.I)),
    ("respiratory rate", re.compile(rf"\b(?:RR|resp(?:iratory)? rate|resp)\s*:?\s*({_NUMBER})\s*(/min|breaths/min)?", re.I)),
    ("temperature", re.compile(rf"\b(?:temp(?:erature)?|T)\s*:?\s*({_NUMBER})\s*(°?[CF])\b", re.I)),
    ("spo2", re.compile(rf"\b(?:SpO2|O2 sat|oxygen saturation|sat)\s*:?\s*({_NUMBER})\s*(%)?", re.I)),
    ("weight", re.compile(rf"\b(?:weight|wt)\s*:?\s*({_NUMBER})\s*(kg|lbs?)\b", re.I)),
    ("height", re.compile(rf"\b(?:height|ht)\s*:?\s*({_NUMBER})\s*(cm|in)\b", re.I)),
    ("bmi", re.compile(rf"\bBMI\s*:?\s*({_NUMBER})\s*(kg/m2)?", re.I)),
)
_BLOOD_PRESSURE = re.compile(r"\b(?:BP|blood pressure)\s*:?\s*(\d{2,3})\s*/\s*(\d{2,3})\s*(mm ?hg)?", re.I)
_DEFAULT_VITAL_UNITS = {"pulse": "/min", "respiratory rate": "/min", "spo2": "%", "bmi": "kg/m2"}
_LAB_ROW = re.compile(
    rf"^(?P<name>[A-Za-z][A-Za-z0-9 ,()/.-]*?)\s{{2,}}(?P<value>[<>]?{_NUMBER})\s{{2,}}(?P<unit>\S+)"
    rf"(?:\s{{2,}}(?P<low>{_NUMBER})\s*-\s*(?P<high>{_NUMBER}))?(?:\s{{2,}}(?P<flag>HH|LL|H|L|A|N))?\s*$"
)
_MEDICATION = re.compile(
    rf"^(?P<name>[A-Za-z][A-Za-z -]*?)\s+(?P<dose>{_NUMBER})\s*(?P<unit>mg|mcg|g|mL|units?)\b"
    r"(?:\s+(?P<form>tablets?|capsules?|tab|cap))?(?P<rest>.*)$",
    re.I,
)
_ALLERGY = re.compile(r"^(?P<substance>[A-Za-z][A-Za-z ,-]*?)\s*(?:[:(-]\s*(?P<reaction>[A-Za-z ,]+?)\)?)?\s*$")
_PROCEDURE = re.compile(r"^(?P<name>.+?)(?:\s+(?:on|performed)\s+(?P<date>\S+))?\s*$", re.I)
_KEY_VALUE = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z ]{1,24}?)\s*:\s*(?P<value>.+?)\s*$")


def iso_date(text: str) -> str | None:
    """The first date in `text` as ISO 8601, or None when there is none or it is impossible."""
    match = _DATE.search(text)
    if not match:
        return None
    try:
        if match.group(3):
            return date(int(match.group(3)), int(match.group(1)), int(match.group(2))).isoformat()
        return date(int(match.group(4)), int(match.group(5)), int(match.group(6))).isoformat()
    except ValueError:
        return None


def ucum(unit: str | None) -> str | None:
    if not unit:
        return None
    return UCUM_UNITS.get(unit.strip().lower(), unit.strip())


# A trigger's scope ends at these (ConText terminators): "no fever, with a history of HTN".
_SCOPE_END = re.compile(r"[;.]|,\s*(?:with|but|and)\b|\b(?:but|however|although|except|aside from)\b")


def assertion_of(text_before: str, section_role: str) -> str:
    """NegEx/ConText-style assertion from the words before a mention (within the trigger's
    scope, which ends at a terminator) and the section it is in."""
    if section_role == "family":
        return "family"
    before = " " + _SCOPE_END.split(text_before.lower())[-1] + " "
    if any(f" {w} " in before for w in FAMILY_WORDS):
        return "family"
    if any(f" {t}" in before for t in NEGATION_TRIGGERS):
        return "negated"
    if any(f" {t}" in before for t in HYPOTHETICAL_TRIGGERS):
        return "hypothetical"
    if any(f" {t}" in before for t in HISTORY_TRIGGERS):
        return "historical"
    return "present"


@dataclass
class Lexicons:
    """Normalised names the extractor spots, drawn from the terminology index."""

    diagnoses: set[str]
    medications: set[str]
    labs: set[str]


class LexiconExtractor:
    """Turns the rows of one page into entity mentions (uncoded; the code stage codes them)."""

    def __init__(self, lexicons: Lexicons, max_ngram: int = 6):
        self.lexicons = lexicons
        self.max_ngram = max_ngram

    def extract(self, document_id: str, page_index: int, rows: list[Row]) -> list[Entity]:
        entities: list[Entity] = []
        # Before the first header (letterhead, patient banner) only fields and tables are read.
        section, role = "", "preamble"
        for row in rows:
            text = row.text.strip()
            if not text:
                continue
            header = self._section_header(row)
            if header is not None:
                (section, role), rest = header
                if rest:
                    entities.extend(self._section_item(row, rest, section, role, page_index))
                continue
            for line in row.lines:
                entities.extend(self._key_values(line, page_index, section))
            entities.extend(self._vitals(row, page_index, section))
            lab = self._lab_row(row, page_index, section)
            if lab:
                entities.append(lab)
                continue
            entities.extend(self._section_item(row, text, section, role, page_index))
        seen: Counter[str] = Counter()
        for entity in entities:
            entity.entity_id = _entity_id(document_id, entity)
            seen[entity.entity_id] += 1
            if seen[entity.entity_id] > 1:  # the same words twice on one row stay two mentions
                entity.entity_id = f"{entity.entity_id}-{seen[entity.entity_id]}"
        return entities

    # Sections ----------------------------------------------------------------------------

    def _section_header(self, row: Row) -> tuple[tuple[str, str], str] | None:
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

    def _section_item(self, row: Row, text: str, section: str, role: str, page: int) -> list[Entity]:
        item = _BULLET.sub("", text).strip().rstrip(".")
        if not item:
            return []
        if role not in ("medications", "allergies"):
            # A known drug with a dose is a medication wherever it stands (a misread "Rx:"
            # heading, a plan written as prose).
            medication = self._medication(item, section, row, page, strict=True)
            if medication:
                return [medication]
        if role == "diagnoses":
            return [self._entity("diagnosis", item, section, assertion_of("", role), row, page, strength=0.9)]
        if role == "medications":
            medication = self._medication(item, section, row, page)
            return [medication] if medication else []
        if role == "allergies":
            return self._allergy(item, section, row, page)
        if role == "procedures":
            match = _PROCEDURE.match(item)
            if match and match.group("name"):
                entity = self._entity("procedure", match.group("name"), section, "present", row, page, strength=0.8)
                entity.value = iso_date(match.group("date") or "")
                return [entity]
            return []
        if role in ("narrative", "family"):
            return self._spot_diagnoses(item, section, role, row, page)
        return []  # check-box lists need the check-box reader (not in this backend yet)

    # Patterns ----------------------------------------------------------------------------

    def _key_values(self, line: OcrLine, page: int, section: str) -> list[Entity]:
        match = _KEY_VALUE.match(line.text)
        if not match:
            return []
        key, value = normalise_term(match.group("key")), match.group("value").strip()
        row = Row([line])
        if not value.strip(" ,.;:"):  # a label with nothing after it ("MRN: ")
            return []
        if key in ("patient", "name", "patient name"):
            if "," in value:
                family, given = (part.strip() for part in value.split(",", 1))
                value = f"{given} {family}".strip()
            return [self._demographic("name", value, row, page, section)]
        if key in ("mrn", "medical record number", "mrn no"):
            return [self._demographic("mrn", value.split()[0], row, page, section)]
        if key in ("dob", "date of birth", "birth date"):
            iso = iso_date(value)
            return [self._demographic("birth_date", iso, row, page, section)] if iso else []
        if key in ("sex", "gender"):
            sex = {"f": "female", "female": "female", "m": "male", "male": "male"}.get(value.lower(), "unknown")
            return [self._demographic("sex", sex, row, page, section)]
        if key == "address":
            return [self._demographic("address", value, row, page, section)]
        if key in ("phone", "telephone"):
            return [self._demographic("phone", value, row, page, section)]
        encounter_keys = {"admission date": "admission_date", "discharge date": "discharge_date",
                          "visit date": "visit_date", "date of service": "visit_date", "collected": "visit_date",
                          "date": "visit_date"}
        if key in encounter_keys:
            iso = iso_date(value)
            if iso:
                entity = self._entity("encounter", value, section, "present", row, page, strength=0.9)
                entity.attribute, entity.value = encounter_keys[key], iso
                return [entity]
        return []

    def _demographic(self, attribute: str, value: str, row: Row, page: int, section: str) -> Entity:
        entity = self._entity("demographic", value, section, "present", row, page, strength=0.95)
        entity.attribute, entity.value = attribute, value
        return entity

    def _vitals(self, row: Row, page: int, section: str) -> list[Entity]:
        found = []
        for line in row.lines:
            single = Row([line])
            bp = _BLOOD_PRESSURE.search(line.text)
            if bp:
                for name, value in (("systolic", bp.group(1)), ("diastolic", bp.group(2))):
                    found.append(self._vital(name, bp.group(0), float(value), "mm[Hg]", single, page, section))
            for name, pattern in _VITAL_PATTERNS:
                match = pattern.search(line.text)
                if match and not (name == "pulse" and bp and match.start() < bp.end()):
                    unit = ucum(match.group(2)) or _DEFAULT_VITAL_UNITS.get(name)
                    found.append(self._vital(name, match.group(0), float(match.group(1)), unit, single, page, section))
        return found

    def _vital(self, name: str, text: str, value: float, unit: str | None, row: Row, page: int, section: str) -> Entity:
        entity = self._entity("vital", text.strip(), section, "present", row, page, strength=0.95)
        entity.attribute, entity.value, entity.value_num, entity.unit = name, f"{value:g}", value, unit
        return entity

    def _lab_row(self, row: Row, page: int, section: str) -> Entity | None:
        match = _LAB_ROW.match(row.text)
        if not match or normalise_term(match.group("name")) not in self.lexicons.labs:
            return None
        entity = self._entity("lab", match.group("name").strip(), section or "results", "present", row, page, strength=1.0)
        value = match.group("value")
        entity.value, entity.unit = value, ucum(match.group("unit"))
        entity.value_num = float(value.lstrip("<>"))
        if match.group("low"):
            entity.reference_low, entity.reference_high = float(match.group("low")), float(match.group("high"))
        entity.interpretation = match.group("flag") or self._interpret(entity)
        return entity

    @staticmethod
    def _interpret(entity: Entity) -> str | None:
        if entity.reference_low is None or entity.value_num is None:
            return None
        if entity.value_num > entity.reference_high:
            return "H"
        return "L" if entity.value_num < entity.reference_low else "N"

    def _medication(self, item: str, section: str, row: Row, page: int, strict: bool = False) -> Entity | None:
        """A medication mention; with `strict`, only a known drug followed by a dose."""
        match = _MEDICATION.match(item)
        if strict and not match:
            return None
        name = match.group("name") if match else item
        drug = self._longest_known_prefix(name, self.lexicons.medications)
        if drug is None:
            return None
        entity = self._entity("medication", name.strip() if match else drug, section, "present", row, page,
                              strength=1.0 if match else 0.7)
        entity.attribute = drug  # the recognised drug name: what the code stage looks up
        if match:
            entity.text = f"{name.strip()} {match.group('dose')} {match.group('unit')}"
            entity.dose_value, entity.dose_unit = float(match.group("dose")), match.group("unit").lower()
            entity.value = (match.group("form") or "").lower() or None
            rest = " " + match.group("rest").lower() + " "
            entity.route = next((code for word, code in ROUTES.items() if f" {word} " in rest), None)
            entity.frequency = next(
                (code for word, code in sorted(FREQUENCIES.items(), key=lambda kv: -len(kv[0])) if f" {word} " in rest),
                None,
            )
        return entity

    def _allergy(self, item: str, section: str, row: Row, page: int) -> list[Entity]:
        lowered = item.lower()
        if lowered in ("nkda", "none", "no known allergies", "no known drug allergies"):
            return [self._entity("allergy", item, section, "negated", row, page, strength=1.0)]
        match = _ALLERGY.match(item)
        substance = normalise_term(match.group("substance")) if match else ""
        known = substance in self.lexicons.medications or substance in NON_DRUG_ALLERGENS
        if not known:
            return []
        entity = self._entity("allergy", match.group("substance").strip(), section, "present", row, page, strength=0.9)
        entity.value = (match.group("reaction") or "").strip() or None
        return [entity]

    def _spot_diagnoses(self, item: str, section: str, role: str, row: Row, page: int) -> list[Entity]:
        """Longest dictionary matches in free text, each with its NegEx-style assertion."""
        words = item.split()
        found, i = [], 0
        while i < len(words):
            for n in range(min(self.max_ngram, len(words) - i), 0, -1):
                phrase = " ".join(words[i:i + n]).strip(".,;:")
                if len(phrase) > 3 and normalise_term(phrase) in self.lexicons.diagnoses:
                    assertion = assertion_of(" ".join(words[:i]), role)
                    found.append(self._entity("diagnosis", phrase, section, assertion, row, page, strength=0.8))
                    i += n
                    break
            else:
                i += 1
        return found

    @staticmethod
    def _longest_known_prefix(name: str, known: set[str]) -> str | None:
        words = name.split()
        for n in range(len(words), 0, -1):
            if normalise_term(" ".join(words[:n])) in known:
                return " ".join(words[:n])
        return None

    @staticmethod
    def _entity(kind: str, text: str, section: str, assertion: str, row: Row, page: int, strength: float) -> Entity:
        return Entity(
            entity_id="",
            kind=kind,
            text=text,
            section=section,
            assertion=assertion,
            page_index=page,
            line_ids=row.line_ids,
            bbox=row.bbox,
            ocr_confidence=row.confidence,
            confidence=round(row.confidence * strength, 4),
        )


def _entity_id(document_id: str, entity: Entity) -> str:
    """Deterministic: the same page and content give the same id on every run."""
    key = "|".join([document_id, str(entity.page_index), entity.kind, entity.attribute or "", entity.text,
                    ",".join(map(str, entity.line_ids))])
    return "ent-" + hashlib.sha256(key.encode()).hexdigest()[:20]
