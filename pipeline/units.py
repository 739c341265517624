"""Units as pages write them -> UCUM codes: the one map extraction and FHIR assembly share."""

from __future__ import annotations

# Keys are matched case-insensitively because pages are inconsistent ("mg/dl"); values are
# case-sensitive UCUM codes.
_UCUM_CODES = {
    "mg": "mg", "mcg": "ug", "ug": "ug", "µg": "ug", "g": "g", "kg": "kg", "ml": "mL", "l": "L",
    "[iu]": "[iU]", "iu": "[iU]", "unit": "[iU]", "units": "[iU]",
    "mm[hg]": "mm[Hg]", "mmhg": "mm[Hg]", "mm hg": "mm[Hg]",
    "/min": "/min", "bpm": "/min", "beats/min": "/min", "breaths/min": "/min",
    "%": "%", "[degf]": "[degF]", "degf": "[degF]", "°f": "[degF]", "f": "[degF]",
    "cel": "Cel", "degc": "Cel", "°c": "Cel", "c": "Cel",
    "[lb_av]": "[lb_av]", "lb": "[lb_av]", "lbs": "[lb_av]", "cm": "cm", "m": "m", "[in_i]": "[in_i]", "in": "[in_i]",
    "kg/m2": "kg/m2", "mg/dl": "mg/dL", "g/dl": "g/dL", "ug/dl": "ug/dL", "mcg/dl": "ug/dL", "mg/l": "mg/L",
    "g/l": "g/L", "ng/ml": "ng/mL", "pg/ml": "pg/mL", "mmol/l": "mmol/L", "umol/l": "umol/L", "µmol/l": "umol/L",
    "meq/l": "meq/L", "u/l": "U/L", "iu/l": "[IU]/L", "miu/l": "m[IU]/L", "uiu/ml": "u[IU]/mL", "miu/ml": "m[IU]/mL",
    "10*3/ul": "10*3/uL", "k/ul": "10*3/uL", "x10^3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "x10e3/ul": "10*3/uL",
    "10*9/l": "10*9/L", "x10^9/l": "10*9/L",
    "10*6/ul": "10*6/uL", "m/ul": "10*6/uL", "x10^6/ul": "10*6/uL", "fl": "fL", "pg": "pg", "s": "s", "sec": "s",
    "ml/min/1.73m2": "mL/min/{1.73_m2}", "ml/min": "mL/min",
    "{score}": "{score}", "/10": "{score}",  # instrument scores (pain 0-10, PHQ-2 ...): UCUM annotation
    "mg/ml": "mg/mL", "unit/ml": "[iU]/mL", "units/ml": "[iU]/mL", "mg/actuat": "mg/{actuat}",
}

_KNOWN_CODES = frozenset(_UCUM_CODES.values())


def ucum_code(unit: str | None) -> str | None:
    """The UCUM code for a unit as written, or None when it is not a known unit."""
    if not unit:
        return None
    if unit.strip() in _KNOWN_CODES:  # already normalised by the extractor
        return unit.strip()
    return _UCUM_CODES.get(unit.strip().lower())


def normalise_unit(unit: str | None) -> str | None:
    """The UCUM code when known, else the unit as written (kept, never guessed)."""
    if not unit or not unit.strip():
        return None
    return ucum_code(unit) or unit.strip()
