"""Vital signs in text and lab results in rows: value, UCUM unit, reference range, flag."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from pipeline.layout import Row
from pipeline.readers.common import NUMBER, STRENGTH, Lexicons, ReadContext, new_entity, score_field
from pipeline.records import Entity
from pipeline.terminology import normalise_term
from pipeline.units import normalise_unit, ucum_code

# Between a vital's name and its value prose puts a verb or a preposition ("her blood
# pressure was 128/82", "a heart rate of 88"); a form puts a colon.
_LINK = r"(?:\s*:|\s+(?:was|is|of|at|measured at|reading|recorded at|noted at))*\s*"
_VITAL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("pulse", re.compile(rf"\b(?:HR|heart rate|pulse(?: rate)?){_LINK}({NUMBER})\s*(bpm|/min|beats/min|beats per minute)?", re.I)),
    ("respiratory rate", re.compile(
        rf"\b(?:RR|resp(?:\.|iratory)?\s*rate|resp\.?|respirations){_LINK}({NUMBER})\s*(/min|breaths/min|breaths per minute)?",
        re.I)),
    ("temperature", re.compile(rf"\b(?:temp(?:erature)?\.?|T){_LINK}({NUMBER})\s*(°?\s?[CF])\b", re.I)),
    ("spo2", re.compile(rf"\b(?:SpO2|O2 sat(?:uration)?|oxygen saturation|sat|SaO2){_LINK}({NUMBER})\s*(%)?", re.I)),
    ("weight", re.compile(rf"\b(?:weight|wt\.?){_LINK}({NUMBER})\s*(kg|lbs?)\b", re.I)),
    ("height", re.compile(rf"\b(?:height|ht\.?){_LINK}({NUMBER})\s*(cm|in)\b", re.I)),
    ("bmi", re.compile(rf"\b(?:BMI|body mass index){_LINK}({NUMBER})\s*(kg/m2)?", re.I)),
    # Pain on the 0-10 numeric rating scale ("Pain 3/10", "pain score: 4").
    ("pain", re.compile(rf"\bpain(?: score| severity| level)?(?: \(0-10\))?{_LINK}(\d{{1,2}})(\s*/\s*10)?(?![\d.])", re.I)),
)
_BLOOD_PRESSURE = re.compile(rf"\b(?:BP|blood pressure){_LINK}(\d{{2,3}})\s*/\s*(\d{{2,3}})\s*(mm ?hg)?", re.I)
# A scored instrument: "PHQ-2 score: 2", "GAD-7 total score 3", "Morse Fall Scale: 30".
_SCORE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9()/ -]{1,60}?)\s+(?:total\s+)?score\s*:?\s*(?P<value>\d{1,3})\b"
                    r"|^(?P<scale>[A-Za-z][A-Za-z0-9 -]{1,40}?\b(?:scale|index|questionnaire))\s*:?\s*(?P<scale_value>\d{1,3})\b",
                    re.I)
# One "name value unit" item of a vitals list ("Wt-for-length pctl 32.6 %", "OFC 50.3 cm",
# "FEV1/FVC: 63 %"): a measure none of the patterns above names, coded by its name.
_MEASURE = re.compile(rf"^(?P<name>[A-Za-z][A-Za-z0-9 .()/+-]{{0,50}}?)\s*:?\s+(?P<value>-?{NUMBER})"
                      rf"\s*(?P<unit>%|[A-Za-z/][A-Za-z0-9/*^.]*)?$")
_DEFAULT_VITAL_UNITS = {"pulse": "/min", "respiratory rate": "/min", "spo2": "%", "bmi": "kg/m2", "pain": "{score}"}
_REFERENCE = rf"(?:[<>≤≥]=?\s*{NUMBER}|{NUMBER}\s*(?:-|–|to)\s*{NUMBER})"
_LAB_ROW = re.compile(
    rf"^(?P<name>[A-Za-z][A-Za-z0-9 ,()/.-]*?)\s{{2,}}(?P<value>[<>]?{NUMBER})\s{{2,}}(?P<unit>\S+)"
    rf"(?:\s{{2,}}(?P<reference>{_REFERENCE}))?(?:\s+(?P<flag>HH|LL|H|L|A|N|High|Low|Abnormal|Critical))?\s*$"
)
_RANGE = re.compile(rf"^(?P<low>{NUMBER})\s*(?:-|–|to)\s*(?P<high>{NUMBER})$")
_BOUND = re.compile(rf"^(?P<op>[<>≤≥])=?\s*(?P<value>{NUMBER})$")
# Lab flags as printed -> v3-ObservationInterpretation codes (one map for row patterns and table cells).
LAB_FLAGS = {"H": "H", "L": "L", "HH": "HH", "LL": "LL", "A": "A", "N": "N", "*": "A",
             "HIGH": "H", "LOW": "L", "ABNORMAL": "A", "CRITICAL": "A"}


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


SURVEY = "survey"  # the attribute of a lab-kind entity that is a scored instrument


class ObservationReader:
    """Vital signs wherever they are written; a lab row claims its item."""

    def __init__(self, lexicons: Lexicons):
        self.lexicons = lexicons

    def read(self, ctx: ReadContext) -> list[Entity]:
        found = self._vitals(ctx)
        lab = self._lab_row(ctx)
        read = [lab] if lab else self._scores(ctx)
        if not lab and ctx.role == "vitals":
            read += self._measures(ctx, {entity.text for entity in read})
        if read:
            ctx.claimed = True
        return found + read

    def _scores(self, ctx: ReadContext) -> list[Entity]:
        """A scored instrument (PHQ-2, GAD-7, AUDIT-C, a fall scale) as an Observation of the
        survey category; the code stage finds its LOINC code by name."""
        found = []
        for segment in label_value_segments(ctx.row):
            # Scores listed inline: "Morse Fall Scale: 30; PHQ-2 score: 1; DAST-10 score: 0".
            for text in re.split(r"\s*;\s*", segment.text):
                entity = self._score(text, replace(ctx, row=segment, section=ctx.section or "screening"))
                if entity:
                    found.append(entity)
        return found

    def _measures(self, ctx: ReadContext, read: set[str]) -> list[Entity]:
        """The items of a vitals list that no vital pattern and no score reads, as results
        coded by name: any measure the LOINC index names, not only the patterns' own."""
        found = []
        for item in re.split(r"\s*[,;]\s+", ctx.text):
            match = _MEASURE.match(item.strip().rstrip("."))
            if not match or _BLOOD_PRESSURE.search(item) or any(p.search(item) for _, p in _VITAL_PATTERNS):
                continue
            name = match.group("name").strip(" :")
            if name in read or _SCORE.match(item.strip()):
                continue
            entity = new_entity("lab", name, ctx, "present")
            entity.value, entity.value_num = match.group("value"), float(match.group("value"))
            unit = match.group("unit")
            entity.unit = normalise_unit(unit) if unit else None
            known = normalise_term(name) in self.lexicons.labs
            score_field(entity, "name", name, STRENGTH["pattern" if known else "unknown_lab_name"])
            score_field(entity, "value", entity.value, STRENGTH["pattern"])
            score_field(entity, "unit", entity.unit, STRENGTH["pattern"] if unit and ucum_code(unit)
                        else STRENGTH["unknown_unit" if unit else "no_unit"])
            found.append(entity)
        return found

    def _score(self, text: str, ctx: ReadContext) -> Entity | None:
        # OCR puts accents on letters of a scan ("DAST-10 scorè: 0"); the patterns read plain letters.
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
        match = _SCORE.match(text)
        if not match or _BLOOD_PRESSURE.search(text) or re.match(r"\s*pain\b", text, re.I):
            return None
        value_group = "value" if match.group("value") else "scale_value"
        value = match.group(value_group)
        name = match.string[:match.start(value_group)].strip(" :")
        entity = new_entity("lab", name, ctx, "present")
        entity.attribute = SURVEY
        entity.value, entity.value_num, entity.unit = value, float(value), "{score}"
        known = normalise_term(entity.text) in self.lexicons.labs
        score_field(entity, "name", entity.text, STRENGTH["pattern" if known else "unknown_lab_name"])
        score_field(entity, "value", value, STRENGTH["pattern"])
        return entity

    def _vitals(self, ctx: ReadContext) -> list[Entity]:
        found = []
        # A vitals sentence wrapped over rows ("..., Resp." / "rate 15 breaths/min") is one phrase.
        segments = [_SegmentRow(ctx.row.lines)] if len(ctx.spans) > 1 else label_value_segments(ctx.row)
        for segment in segments:
            text = segment.text
            single = replace(ctx, row=segment)
            bp = _BLOOD_PRESSURE.search(text)
            if bp:
                for name, value in (("systolic", bp.group(1)), ("diastolic", bp.group(2))):
                    found.append(_vital(name, bp.group(0), float(value), "mmHg", single))
            for name, pattern in _VITAL_PATTERNS:
                match = pattern.search(text)
                if match and not (name in ("pulse", "respiratory rate") and bp and match.start() < bp.end()):
                    unit = "{score}" if name == "pain" else (
                        (match.group(2) or "").replace(" ", "") or _DEFAULT_VITAL_UNITS.get(name))
                    found.append(_vital(name, match.group(0), float(match.group(1)), unit, single))
        return found

    def _lab_row(self, ctx: ReadContext) -> Entity | None:
        match = _LAB_ROW.match(ctx.row.text)
        if not match:
            return None
        known = normalise_term(match.group("name")) in self.lexicons.labs
        # In a lab report a table row is a result even when its test name is not in the
        # dictionary; elsewhere an unknown name is too likely to be something else.
        if not known and ctx.role != "labs":
            return None
        entity = new_entity("lab", match.group("name").strip(), replace(ctx, section=ctx.section or "results"),
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


def label_value_segments(row: Row) -> list[Row]:
    """A row cut into label + value runs: a cell that starts with a letter opens a run, cells
    that start with a number, and unit cells, join it. "Blood pressure | 153/96 mmHg | Height | 181.9 cm" (two
    measures side by side, label and value in their own cells) gives two runs; a sentence
    or "BP: 120/80" in one cell is one run."""
    segments: list[list] = []
    for line in row.lines:
        text = line.text.strip()
        if segments and (not re.match(r"[A-Za-z]", text) or ucum_code(text)):
            segments[-1].append(line)
        else:
            segments.append([line])
    return [_SegmentRow(lines) for lines in segments]


class _SegmentRow(Row):
    """A run of cells read as one phrase: joined by single spaces, not the column gap."""

    @property
    def text(self) -> str:
        return " ".join(line.text.strip() for line in self.lines)


def _vital(name: str, text: str, value: float, unit: str | None, ctx: ReadContext) -> Entity:
    entity = new_entity("vital", text.strip(), ctx, "present")
    entity.attribute, entity.value, entity.value_num, entity.unit = name, f"{value:g}", value, normalise_unit(unit)
    score_field(entity, "value", entity.value, STRENGTH["pattern"])
    score_field(entity, "unit", entity.unit, STRENGTH["pattern"] if ucum_code(unit) else STRENGTH["unknown_unit"])
    return entity
