"""The lexicon extraction backend: sections, dictionary spotting, patterns and assertion.

Works on rows of OCR lines (see `pipeline.layout`). Names are recognised against
dictionaries drawn from the terminology index, so the backend knows what the coder knows;
values are read with patterns and normalised (UCUM units, ISO dates, frequency codes).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, replace

from pipeline.assertion import assertion_of, relationship_of
from pipeline.dates import iso_date
from pipeline.layout import Row
from pipeline.records import Entity, FieldScore, OcrLine
from pipeline.sig import parse_sig
from pipeline.terminology import normalise_term
from pipeline.units import normalise_unit, ucum_code

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
# Medication lists that report what the patient already takes, as opposed to what is prescribed here.
REPORTED_MEDICATION_SECTIONS = frozenset({"home medications", "medications"})
_STOPPED = re.compile(r"\b(?:stopped|discontinued|d/c'?d|held|on hold|hold)\b", re.I)

# OCR drops spaces between words of headings ("FAMILYHISTORY"): match them compacted too.
_SECTIONS_COMPACT = {name.replace(" ", ""): value for name, value in SECTIONS.items()}
_HEADER = re.compile(r"^\s*([A-Za-z][A-Za-z /&]+?)\s*(?:\(.*\))?\s*[:\-]\s*(.*)$")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s*")
_NUMBER = r"\d+(?:\.\d+)?"

NON_DRUG_ALLERGENS = {"latex", "peanuts", "peanut", "shellfish", "eggs", "egg", "bee stings", "iodine", "contrast",
                      "tree nuts", "milk", "soy", "wheat", "fish", "adhesive tape"}
_SEVERITY = re.compile(r"\b(mild|moderate|severe|life[- ]threatening)\b", re.I)
_DIAGNOSIS_STATUS = re.compile(r"\s*[(\[,-]?\s*\b(resolved|in remission|remote|inactive|active|chronic|controlled|"
                               r"stable)\b\s*[)\]]?\s*$", re.I)
# Words before a listed diagnosis that change what it asserts ("h/o stroke", "r/o PE").
_LEADING_TRIGGER = re.compile(r"^(?P<trigger>(?:history of|hx of|h/o|s/p|status post|no|denies|rule out|r/o|possible|"
                              r"suspected|probable|family history of|planned|scheduled for)\s+)", re.I)

_VITAL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("pulse", re.compile(rf"\b(?:HR|heart rate|pulse)\s*:?\s*({_NUMBER})\s*(bpm|/min|beats/min)?", re.I)),
    ("respiratory rate", re.compile(rf"\b(?:RR|resp(?:iratory)? rate|resp)\s*:?\s*({_NUMBER})\s*(/min|breaths/min)?", re.I)),
    ("temperature", re.compile(rf"\b(?:temp(?:erature)?|T)\s*:?\s*({_NUMBER})\s*(°?\s?[CF])\b", re.I)),
    ("spo2", re.compile(rf"\b(?:SpO2|O2 sat|oxygen saturation|sat|SaO2)\s*:?\s*({_NUMBER})\s*(%)?", re.I)),
    ("weight", re.compile(rf"\b(?:weight|wt)\s*:?\s*({_NUMBER})\s*(kg|lbs?)\b", re.I)),
    ("height", re.compile(rf"\b(?:height|ht)\s*:?\s*({_NUMBER})\s*(cm|in)\b", re.I)),
    ("bmi", re.compile(rf"\bBMI\s*:?\s*({_NUMBER})\s*(kg/m2)?", re.I)),
)
_BLOOD_PRESSURE = re.compile(r"\b(?:BP|blood pressure)\s*:?\s*(\d{2,3})\s*/\s*(\d{2,3})\s*(mm ?hg)?", re.I)
_DEFAULT_VITAL_UNITS = {"pulse": "/min", "respiratory rate": "/min", "spo2": "%", "bmi": "kg/m2"}
_REFERENCE = rf"(?:[<>≤≥]=?\s*{_NUMBER}|{_NUMBER}\s*(?:-|–|to)\s*{_NUMBER})"
_LAB_ROW = re.compile(
    rf"^(?P<name>[A-Za-z][A-Za-z0-9 ,()/.-]*?)\s{{2,}}(?P<value>[<>]?{_NUMBER})\s{{2,}}(?P<unit>\S+)"
    rf"(?:\s{{2,}}(?P<reference>{_REFERENCE}))?(?:\s+(?P<flag>HH|LL|H|L|A|N|High|Low|Abnormal|Critical))?\s*$"
)
_RANGE = re.compile(rf"^(?P<low>{_NUMBER})\s*(?:-|–|to)\s*(?P<high>{_NUMBER})$")
_BOUND = re.compile(rf"^(?P<op>[<>≤≥])=?\s*(?P<value>{_NUMBER})$")
# Lab flags as printed -> v3-ObservationInterpretation codes (one map for row patterns and table cells).
LAB_FLAGS = {"H": "H", "L": "L", "HH": "HH", "LL": "LL", "A": "A", "N": "N", "*": "A",
             "HIGH": "H", "LOW": "L", "ABNORMAL": "A", "CRITICAL": "A"}
_MEDICATION = re.compile(
    rf"^(?P<name>[A-Za-z][A-Za-z -]*?)\s+(?P<dose>{_NUMBER})\s*(?P<unit>mg|mcg|µg|g|mL|units?|IU|mEq)\b"
    r"(?:\s+(?P<form>tablets?|capsules?|tab|cap|inhaler|solution|patch|injection))?(?P<rest>.*)$",
    re.I,
)
_MEDICATION_NO_UNIT = re.compile(rf"^(?P<name>[A-Za-z][A-Za-z -]*?)\s+(?P<dose>{_NUMBER})(?P<rest>(?:\s.*)?)$")
_ALLERGY = re.compile(r"^(?P<substance>[A-Za-z][A-Za-z ,-]*?)\s*(?:[:(-]\s*(?P<reaction>[A-Za-z ,-]+?)\)?)?\s*$")
_YEAR = re.compile(r"\b((?:19|20)\d{2})\b")
_MONTH_YEAR = re.compile(r"\b(\d{1,2})/((?:19|20)\d{2})\b")
_KEY_VALUE = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z ]{1,24}?)\s*:\s*(?P<value>.+?)\s*$")
_ENCOUNTER_KEYS = {"admission date": "admission_date", "admitted": "admission_date", "date of admission": "admission_date",
                   "discharge date": "discharge_date", "discharged": "discharge_date",
                   "date of discharge": "discharge_date", "visit date": "visit_date", "date of service": "visit_date",
                   "dos": "visit_date", "collected": "visit_date", "date": "visit_date"}

# Strength of each kind of evidence: how much a field read this way is worth before OCR
# confidence, coding and cross-checks (pipeline.confidence) adjust it.
# A clean scan reads at OCR confidence ~0.95-0.99, so the sure readings stay above the
# default review threshold (0.75) and the doubtful ones fall below it.
STRENGTH = {"exact_list_item": 0.95, "dictionary_in_text": 0.9, "pattern": 0.95, "table_row": 1.0,
            "procedure_item": 0.9, "unknown_lab_name": 0.6, "name_only": 0.7, "unparsed_sig": 0.6,
            "unknown_unit": 0.6, "no_unit": 0.55}


def interpret(entity: Entity) -> str | None:
    """H, L or N from a lab value against its reference range; None without both."""
    if entity.value_num is None or (entity.reference_low is None and entity.reference_high is None):
        return None
    if entity.reference_high is not None and entity.value_num > entity.reference_high:
        return "H"
    if entity.reference_low is not None and entity.value_num < entity.reference_low:
        return "L"
    return "N"


def parse_reference_range(text: str | None) -> tuple[float | None, float | None, str | None]:
    """(low, high, text as printed) of "3.5-5.0", "<200", ">60"; Nones when absent or unreadable."""
    if not text:
        return None, None, None
    printed = " ".join(text.split())
    span = _RANGE.match(printed)
    if span:
        return float(span["low"]), float(span["high"]), printed
    bound = _BOUND.match(printed)
    if bound:
        value = float(bound["value"])
        return (None, value, printed) if bound["op"] in "<≤" else (value, None, printed)
    return None, None, printed


def procedure_date(text: str) -> str | None:
    """A procedure's date as ISO 8601 at the precision written: day, month or year."""
    full = iso_date(text, future_years=0)
    if full:
        return full
    month = _MONTH_YEAR.search(text)
    if month and 1 <= int(month.group(1)) <= 12:
        return f"{month.group(2)}-{int(month.group(1)):02d}"
    year = _YEAR.search(text)
    return year.group(1) if year else None


@dataclass
class Lexicons:
    """Normalised names the extractor spots, drawn from the terminology index."""

    diagnoses: set[str]
    medications: set[str]
    labs: set[str]


@dataclass
class _Context:
    """Where on the page an item stands: what the extractor needs besides the words."""

    document_type: str
    section: str
    role: str
    row: Row
    page: int


class LexiconExtractor:
    """Turns the rows of one page into entity mentions (uncoded; the code stage codes them)."""

    def __init__(self, lexicons: Lexicons, max_ngram: int = 6):
        self.lexicons = lexicons
        self.max_ngram = max_ngram

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
                (section, role), rest = header
                if rest:
                    entities.extend(self._section_item(rest, _Context(document_type, section, role, row, page_index)))
                continue
            ctx = _Context(document_type, section, role, row, page_index)
            for line in row.lines:
                entities.extend(self._key_values(line, ctx))
            entities.extend(self._vitals(ctx))
            lab = self._lab_row(ctx)
            if lab:
                entities.append(lab)
                continue
            entities.extend(self._section_item(text, ctx))
        seen: Counter[str] = Counter()
        for entity in entities:
            entity.entity_id = deterministic_entity_id(document_id, entity)
            seen[entity.entity_id] += 1
            if seen[entity.entity_id] > 1:  # the same words twice on one row stay two mentions
                entity.entity_id = f"{entity.entity_id}-{seen[entity.entity_id]}"
            entity.confidence = min((f.confidence for f in entity.fields), default=entity.confidence)
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

    def _section_item(self, text: str, ctx: _Context) -> list[Entity]:
        item = _BULLET.sub("", text).strip().rstrip(".")
        if not item:
            return []
        if ctx.role not in ("medications", "allergies"):
            # A known drug with a dose is a medication wherever it stands (a misread "Rx:"
            # heading, a plan written as prose).
            medication = self._medication(item, ctx, strict=True)
            if medication:
                return [medication]
        if ctx.role == "diagnoses":
            return self._listed_diagnosis(item, ctx)
        if ctx.role == "medications":
            medication = self._medication(item, ctx)
            return [medication] if medication else []
        if ctx.role == "allergies":
            return self._allergy(item, ctx)
        if ctx.role == "procedures":
            return self._procedure(item, ctx)
        if ctx.role in ("narrative", "family"):
            return self._spot_diagnoses(item, ctx)
        return []  # check-box lists are read from the image by the layout's check-box reader

    # Patterns ----------------------------------------------------------------------------

    def _key_values(self, line: OcrLine, ctx: _Context) -> list[Entity]:
        match = _KEY_VALUE.match(line.text)
        if not match:
            return []
        key, value = normalise_term(match.group("key")), match.group("value").strip()
        ctx = replace(ctx, row=Row([line]))
        if not value.strip(" ,.;:"):  # a label with nothing after it ("MRN: ")
            return []
        if key in ("patient", "name", "patient name"):
            if "," in value:
                family, given = (part.strip() for part in value.split(",", 1))
                value = f"{given} {family}".strip()
            return [self._demographic("name", value, ctx)]
        if key in ("mrn", "medical record number", "mrn no", "nhs number", "nhs no"):
            attribute = "nhs_number" if key.startswith("nhs") else "mrn"
            number = value.replace(" ", "") if attribute == "nhs_number" else value.split()[0]
            return [self._demographic(attribute, number, ctx)]
        if key in ("dob", "date of birth", "birth date", "d o b"):
            iso = iso_date(value, future_years=0)  # "03/02/56" is 1956, never 2056
            return [self._demographic("birth_date", iso, ctx)] if iso else []
        if key in ("sex", "gender"):
            sex = {"f": "female", "female": "female", "m": "male", "male": "male"}.get(value.lower(), "unknown")
            return [self._demographic("sex", sex, ctx)]
        if key == "address":
            return [self._demographic("address", value, ctx)]
        if key in ("phone", "telephone", "tel"):
            return [self._demographic("phone", value, ctx)]
        if key in _ENCOUNTER_KEYS:
            iso = iso_date(value)
            if iso:
                entity = self._entity("encounter", value, ctx, "present")
                entity.attribute, entity.value = _ENCOUNTER_KEYS[key], iso
                score_field(entity, entity.attribute, iso, STRENGTH["pattern"])
                return [entity]
        return []

    def _demographic(self, attribute: str, value: str, ctx: _Context) -> Entity:
        entity = self._entity("demographic", value, ctx, "present")
        entity.attribute, entity.value = attribute, value
        score_field(entity, attribute, value, STRENGTH["pattern"])
        return entity

    def _vitals(self, ctx: _Context) -> list[Entity]:
        found = []
        for line in ctx.row.lines:
            single = replace(ctx, row=Row([line]))
            bp = _BLOOD_PRESSURE.search(line.text)
            if bp:
                for name, value in (("systolic", bp.group(1)), ("diastolic", bp.group(2))):
                    found.append(self._vital(name, bp.group(0), float(value), "mmHg", single))
            for name, pattern in _VITAL_PATTERNS:
                match = pattern.search(line.text)
                if match and not (name == "pulse" and bp and match.start() < bp.end()):
                    unit = (match.group(2) or "").replace(" ", "") or _DEFAULT_VITAL_UNITS.get(name)
                    found.append(self._vital(name, match.group(0), float(match.group(1)), unit, single))
        return found

    def _vital(self, name: str, text: str, value: float, unit: str | None, ctx: _Context) -> Entity:
        entity = self._entity("vital", text.strip(), ctx, "present")
        entity.attribute, entity.value, entity.value_num, entity.unit = name, f"{value:g}", value, normalise_unit(unit)
        score_field(entity, "value", entity.value, STRENGTH["pattern"])
        score_field(entity, "unit", entity.unit, STRENGTH["pattern"] if ucum_code(unit) else STRENGTH["unknown_unit"])
        return entity

    def _lab_row(self, ctx: _Context) -> Entity | None:
        match = _LAB_ROW.match(ctx.row.text)
        if not match:
            return None
        known = normalise_term(match.group("name")) in self.lexicons.labs
        # In a lab report a table row is a result even when its test name is not in the
        # dictionary; elsewhere an unknown name is too likely to be something else.
        if not known and ctx.role != "labs":
            return None
        entity = self._entity("lab", match.group("name").strip(), replace(ctx, section=ctx.section or "results"),
                              "present")
        value = match.group("value")
        entity.value, entity.unit = value, normalise_unit(match.group("unit"))
        entity.value_num = float(value.lstrip("<>"))
        entity.reference_low, entity.reference_high, entity.reference_text = parse_reference_range(
            match.group("reference"))
        flag = match.group("flag")
        entity.interpretation = LAB_FLAGS.get(flag.upper(), flag.upper()) if flag else interpret(entity)
        score_field(entity, "name", entity.text, STRENGTH["table_row"] if known else STRENGTH["unknown_lab_name"])
        score_field(entity, "value", value, STRENGTH["table_row"])
        score_field(entity, "unit", entity.unit, STRENGTH["table_row"] if ucum_code(match.group("unit"))
               else STRENGTH["unknown_unit"])
        if entity.reference_text:
            score_field(entity, "reference_range", entity.reference_text, STRENGTH["table_row"])
        return entity

    def _medication(self, item: str, ctx: _Context, strict: bool = False) -> Entity | None:
        """A medication mention; with `strict`, only a known drug followed by a dose."""
        match = _MEDICATION.match(item)
        unitless = None if match else _MEDICATION_NO_UNIT.match(item)
        if strict and not match:
            return None
        name = (match or unitless).group("name") if (match or unitless) else item
        drug = self._longest_known_prefix(name, self.lexicons.medications)
        if drug is None:
            return None
        assertion = assertion_of(item[:item.lower().find(drug.lower())], ctx.role)
        entity = self._entity("medication", name.strip() if (match or unitless) else drug, ctx, assertion)
        entity.attribute = drug  # the recognised drug name: what the code stage looks up
        entity.status = self._medication_status(item, ctx)
        score_field(entity, "name", drug, STRENGTH["pattern"] if (match or unitless) else STRENGTH["name_only"])
        if match:
            entity.text = f"{name.strip()} {match.group('dose')} {match.group('unit')}"
            entity.dose_value, entity.dose_unit = float(match.group("dose")), match.group("unit").lower()
            entity.value = (match.group("form") or "").lower() or None
            score_field(entity, "dose", f"{entity.dose_value:g} {entity.dose_unit}", STRENGTH["pattern"])
            self._apply_sig(entity, match.group("rest"))
        elif unitless:
            # "Metformin 500 BID": a number without a unit is a dose nobody can be sure of.
            entity.dose_value = float(unitless.group("dose"))
            score_field(entity, "dose", unitless.group("dose"), STRENGTH["no_unit"])
            self._apply_sig(entity, unitless.group("rest"))
        return entity

    @staticmethod
    def _apply_sig(entity: Entity, instruction: str) -> None:
        sig = parse_sig(instruction)
        entity.route, entity.frequency = sig.route, sig.frequency_code
        if sig.timing:
            entity.timing_frequency, entity.timing_period = sig.timing.frequency, sig.timing.period
            entity.timing_period_max, entity.timing_period_unit = sig.timing.period_max, sig.timing.period_unit
            entity.timing_when = sig.timing.when
        entity.as_needed, entity.as_needed_for = sig.as_needed, sig.as_needed_for
        entity.duration_value, entity.duration_unit = sig.duration_value, sig.duration_unit
        # Words of the sig nobody understood lower the timing's confidence: they may change it.
        strength = STRENGTH["unparsed_sig"] if sig.unparsed else STRENGTH["pattern"]
        if entity.frequency or sig.unparsed:
            score_field(entity, "frequency", entity.frequency, strength)
        if entity.route:
            score_field(entity, "route", entity.route, STRENGTH["pattern"])
        if sig.duration_value is not None:
            score_field(entity, "duration", f"{sig.duration_value:g} {sig.duration_unit}", STRENGTH["pattern"])

    @staticmethod
    def _medication_status(item: str, ctx: _Context) -> str:
        """stopped when the line says so; reported for a list of what the patient takes;
        active for what this document prescribes (discharge list, prescription, plan)."""
        if _STOPPED.search(item):
            return "stopped"
        if ctx.section in REPORTED_MEDICATION_SECTIONS and ctx.document_type != "prescription":
            return "reported"
        return "active"

    def _allergy(self, item: str, ctx: _Context) -> list[Entity]:
        lowered = item.lower()
        if lowered in ("nkda", "nka", "none", "no known allergies", "no known drug allergies"):
            entity = self._entity("allergy", item, ctx, "negated")
            score_field(entity, "substance", item, STRENGTH["pattern"])
            return [entity]
        severity = _SEVERITY.search(item)
        cleaned = _SEVERITY.sub("", item).replace("()", "").strip(" ,;-") if severity else item
        match = _ALLERGY.match(cleaned)
        substance = normalise_term(match.group("substance")) if match else ""
        known = substance in self.lexicons.medications or substance in NON_DRUG_ALLERGENS
        if not known:
            return []
        entity = self._entity("allergy", match.group("substance").strip(), ctx, "present")
        entity.value = (match.group("reaction") or "").strip(" ,-") or None
        entity.severity = severity.group(1).lower().replace("life threatening", "severe").replace(
            "life-threatening", "severe") if severity else None
        score_field(entity, "substance", entity.text, STRENGTH["exact_list_item"])
        if entity.value:
            score_field(entity, "reaction", entity.value, STRENGTH["pattern"])
        if entity.severity:
            score_field(entity, "severity", entity.severity, STRENGTH["pattern"])
        return [entity]

    def _listed_diagnosis(self, item: str, ctx: _Context) -> list[Entity]:
        """A diagnosis-list item: its status ("resolved"), and a leading trigger ("h/o")."""
        status_match = _DIAGNOSIS_STATUS.search(item)
        name = item[:status_match.start()].strip() if status_match and status_match.start() > 0 else item
        trigger = _LEADING_TRIGGER.match(name)
        prefix = trigger.group("trigger") if trigger else ""
        name = name[len(prefix):].strip()
        assertion = assertion_of(prefix, ctx.role)
        entity = self._entity("diagnosis", name, ctx, assertion)
        stated = status_match.group(1).lower() if status_match and status_match.start() > 0 else None
        entity.status = _diagnosis_status(assertion, stated)
        if assertion == "family":
            entity.relationship = relationship_of(item)[0]
        score_field(entity, "text", name, STRENGTH["exact_list_item"])
        score_field(entity, "assertion", assertion, STRENGTH["pattern"])
        return [entity]

    def _procedure(self, item: str, ctx: _Context) -> list[Entity]:
        when = procedure_date(item)
        name = re.split(r"\s+(?:on|performed|in)\s+|\s*[(,]\s*|\s+-\s+|\s+\d", item, maxsplit=1)[0].strip()
        trigger = _LEADING_TRIGGER.match(name)
        prefix = trigger.group("trigger") if trigger else ""
        name = name[len(prefix):]
        if not name or not re.search(r"[A-Za-z]{3}", name):
            return []
        entity = self._entity("procedure", name, ctx, assertion_of(prefix, ctx.role))
        entity.value = when
        score_field(entity, "text", name, STRENGTH["procedure_item"])
        if when:
            score_field(entity, "date", when, STRENGTH["pattern"])
        return [entity]

    def _spot_diagnoses(self, item: str, ctx: _Context) -> list[Entity]:
        """Longest dictionary matches in free text, each with its ConText assertion."""
        words = item.split()
        found, i = [], 0
        while i < len(words):
            for n in range(min(self.max_ngram, len(words) - i), 0, -1):
                phrase = " ".join(words[i:i + n]).strip(".,;:")
                if len(phrase) > 3 and normalise_term(phrase) in self.lexicons.diagnoses:
                    before, after = " ".join(words[:i]), " ".join(words[i + n:])
                    if words[i + n - 1][-1:] in ".;:":
                        after = "."  # the mention ends its clause: nothing after it is in scope
                    assertion = assertion_of(before, ctx.role, after)
                    entity = self._entity("diagnosis", phrase, ctx, assertion)
                    entity.status = _diagnosis_status(assertion, None)
                    if assertion == "family":
                        entity.relationship = relationship_of(f"{before} {after}")[0]
                    score_field(entity, "text", phrase, STRENGTH["dictionary_in_text"])
                    score_field(entity, "assertion", assertion, STRENGTH["dictionary_in_text"])
                    found.append(entity)
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
    def _entity(kind: str, text: str, ctx: _Context, assertion: str) -> Entity:
        return Entity(
            entity_id="",
            kind=kind,
            text=text,
            section=ctx.section,
            assertion=assertion,
            page_index=ctx.page,
            line_ids=ctx.row.line_ids,
            bbox=ctx.row.bbox,
            ocr_confidence=ctx.row.confidence,
            confidence=ctx.row.confidence,
        )


def _diagnosis_status(assertion: str, stated: str | None) -> str:
    """active | resolved | history, from a stated status word, else from the assertion."""
    if stated in ("resolved", "in remission", "inactive"):
        return "resolved"
    if stated == "remote" or assertion == "historical":
        return "history"
    return "active"


def score_field(entity: Entity, name: str, value: str | None, strength: float) -> None:
    """Record a field's confidence: how clearly the page shows it (OCR) times how sure the reading is."""
    entity.fields.append(FieldScore(name, value, round(entity.ocr_confidence * strength, 4)))


def deterministic_entity_id(document_id: str, entity: Entity) -> str:
    """Deterministic: the same page and content give the same id on every run."""
    key = "|".join([document_id, str(entity.page_index), entity.kind, entity.attribute or "", entity.text,
                    ",".join(map(str, entity.line_ids))])
    return "ent-" + hashlib.sha256(key.encode()).hexdigest()[:20]
