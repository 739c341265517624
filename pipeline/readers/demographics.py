"""Demographics and encounter fields written as `label: value` ("DOB: 03/02/1956")."""

from __future__ import annotations

import re
from dataclasses import replace

from pipeline.dates import iso_date
from pipeline.layout import Row
from pipeline.readers.common import STRENGTH, ReadContext, new_entity, score_field
from pipeline.records import Entity
from pipeline.terminology import ocr_folded

# A label may carry an OCR slip ("D0B" for DOB), so digits that read as letters count as letters.
_KEY_VALUE = re.compile(r"^\s*(?P<key>[A-Za-z015|][A-Za-z015| ]{1,24}?)\s*:\s*(?P<value>.+?)\s*$")
_ENCOUNTER_KEYS = {"admission date": "admission_date", "admitted": "admission_date", "date of admission": "admission_date",
                   "discharge date": "discharge_date", "discharged": "discharge_date",
                   "date of discharge": "discharge_date", "visit date": "visit_date", "date of service": "visit_date",
                   "dos": "visit_date", "collected": "visit_date", "date": "visit_date"}


_NAME_KEYS = ("patient", "name", "patient name")
_ID_KEYS = ("mrn", "medical record number", "mrn no", "nhs number", "nhs no")
_BIRTH_KEYS = ("dob", "date of birth", "birth date", "d o b")
# Labels that share a line with the fields above without being read themselves.
_OTHER_KEYS = ("provider", "attending", "physician", "visit type", "facility", "department", "age", "room", "ward")
_ALL_KEYS = (*_NAME_KEYS, *_ID_KEYS, *_BIRTH_KEYS, "sex", "gender", "address", "phone", "telephone", "tel",
             *_ENCOUNTER_KEYS, *_OTHER_KEYS)
# Letters that OCR reads as digits or bars, so "D0B:" and "Ti1e:" still match their labels.
_OCR_LOOKALIKES = {"o": "[o0]", "l": "[l1i|]", "i": "[il1|]", "s": "[s5]", " ": r"\s+"}


# A digit zero inside a word of a name is OCR's reading of the letter O ("0'Keefe"): no
# person's name holds a digit. Other digits are left alone: 1 may be l or I, 5 may be S or s.
_ZERO_IN_NAME = re.compile(r"0(?=[a-z'\-]*[a-z])|(?<=[a-z])0", re.I)


def person_name(value: str) -> str:
    """A written name with OCR's zero-for-O slips undone."""
    # Inside a lower-case run the letter is "o" ("Lind0n"); at a word's start or among capitals "O".
    return _ZERO_IN_NAME.sub(lambda m: "o" if value[m.start() - 1: m.start()].islower() else "O", value)


def _label_pattern(key: str) -> str:
    return "".join(_OCR_LOOKALIKES.get(char, re.escape(char)) for char in key)


# A known label and its colon, longest first, so "Patient Name:" is one key, not "Patient" + "Name:".
_KEY_AT = re.compile(r"(?:^|(?<=\s))(?:" + "|".join(_label_pattern(k) for k in sorted(_ALL_KEYS, key=len, reverse=True))
                     + r")\s*:", re.I)
_FOLDED = {ocr_folded(key): key for key in _ALL_KEYS}


def _fields(text: str) -> list[str]:
    """A line cut before each known label: "Patient: Herman, Theron MRN: 0a3c7c37" is two fields."""
    starts = [match.start() for match in _KEY_AT.finditer(text)]
    if not starts or starts[0] != 0:
        starts = [0] + starts
    return [text[a:b].strip() for a, b in zip(starts, starts[1:] + [len(text)]) if text[a:b].strip()]


class DemographicsReader:
    """Patient name, MRN / NHS number, birth date, sex, address, phone; encounter dates."""

    def read(self, ctx: ReadContext) -> list[Entity]:
        found = []
        for line in ctx.row.lines:
            # One printed line often holds several fields ("Patient: Herman, Theron MRN: 0a3c7c37").
            for field in _fields(line.text):
                found.extend(self._key_value(field, replace(ctx, row=Row([line]))))
        return found

    def _key_value(self, text: str, ctx: ReadContext) -> list[Entity]:
        match = _KEY_VALUE.match(text)
        if not match:
            return []
        key, value = _FOLDED.get(ocr_folded(match.group("key")), ""), match.group("value").strip()
        if not value.strip(" ,.;:"):  # a label with nothing after it ("MRN: ")
            return []
        if key in _NAME_KEYS:
            if "," in value:
                family, given = (part.strip() for part in value.split(",", 1))
                value = f"{given} {family}".strip()
            return [_demographic("name", person_name(value), ctx)]
        if key in _ID_KEYS:
            attribute = "nhs_number" if key.startswith("nhs") else "mrn"
            number = value.replace(" ", "") if attribute == "nhs_number" else value.split()[0]
            return [_demographic(attribute, number, ctx)]
        if key in _BIRTH_KEYS:
            iso = iso_date(value, future_years=0)  # "03/02/56" is 1956, never 2056
            return [_demographic("birth_date", iso, ctx)] if iso else []
        if key in ("sex", "gender"):
            sex = {"f": "female", "female": "female", "m": "male", "male": "male"}.get(value.lower(), "unknown")
            return [_demographic("sex", sex, ctx)]
        if key == "address":
            return [_demographic("address", value, ctx)]
        if key in ("phone", "telephone", "tel"):
            return [_demographic("phone", value, ctx)]
        if key in _ENCOUNTER_KEYS:
            iso = iso_date(value)
            if iso:
                entity = new_entity("encounter", value, ctx, "present")
                entity.attribute, entity.value = _ENCOUNTER_KEYS[key], iso
                score_field(entity, entity.attribute, iso, STRENGTH["pattern"])
                return [entity]
        return []


def _demographic(attribute: str, value: str, ctx: ReadContext) -> Entity:
    entity = new_entity("demographic", value, ctx, "present")
    entity.attribute, entity.value = attribute, value
    score_field(entity, attribute, value, STRENGTH["pattern"])
    return entity
