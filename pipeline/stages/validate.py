"""Validate stage: rule flags on each entity, and `requires_review` when any rule fires."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from pipeline.records import Entity
from pipeline.stages.base import Resources, Stage
from terminology_index import ICD10CM, LOINC, RXNORM

# Physiologically possible ranges (not normal ranges): outside them a value is a misread.
VITAL_LIMITS: dict[str, tuple[float, float]] = {
    "systolic": (50, 260), "diastolic": (20, 160), "pulse": (20, 250), "respiratory rate": (4, 70),
    "spo2": (50, 100), "bmi": (8, 90), "height": (30, 250),
}
UNIT_LIMITS: dict[tuple[str, str], tuple[float, float]] = {
    ("temperature", "Cel"): (30, 45), ("temperature", "[degF]"): (86, 113),
    ("weight", "kg"): (0.3, 350), ("weight", "[lb_av]"): (0.7, 770),
}
_ICD10CM_CODE = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
_RXCUI = re.compile(r"^[0-9]{1,8}$")


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC codes end in a mod-10 check digit over the part before the hyphen."""
    match = re.fullmatch(r"(\d{1,7})-(\d)", code)
    if not match:
        return False
    digits = match.group(1)
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10 == int(match.group(2))


CODE_FORMATS = {
    ICD10CM: lambda code: bool(_ICD10CM_CODE.match(code)),
    LOINC: loinc_check_digit_ok,
    RXNORM: lambda code: bool(_RXCUI.match(code)),
}


@dataclass(frozen=True)
class ValidationConfig:
    """Thresholds of the rules; each exists so a site can tune review volume."""

    min_confidence: float = 0.75  # below: a reviewer looks at the field
    earliest_birth_year: int = 1900  # older birth dates are misreads
    today: str | None = None  # ISO date the run treats as today; None: the real date


class ValidateStage(Stage):
    """Applies the rules to every entity of a page; the flags land in the flags table."""

    name: ClassVar[str] = "validate"
    required_columns = Stage.required_columns + ("entities",)

    def __init__(self, config: ValidationConfig | None = None, resources: Resources | None = None):
        super().__init__(resources or Resources(num_cpus=0.25, batch_size=32))
        self.config = config or ValidationConfig()
        if not 0.0 <= self.config.min_confidence <= 1.0:
            raise ValueError("min_confidence must be within [0, 1]")

    def process_page(self, row: dict[str, Any]) -> dict[str, Any]:
        today = date.fromisoformat(self.config.today) if self.config.today else date.today()
        entities = [Entity.from_row(e) for e in row["entities"] or []]
        birth = next((e.value for e in entities if e.kind == "demographic" and e.attribute == "birth_date"), None)
        for entity in entities:
            entity.flags = sorted(set(entity.flags) | set(self.rule_flags(entity, today, birth)))
            entity.requires_review = bool(entity.flags)
        row["entities"] = [entity.to_row() for entity in entities]
        return row

    def rule_flags(self, entity: Entity, today: date, birth_date: str | None) -> list[str]:
        flags = []
        if entity.confidence < self.config.min_confidence:
            flags.append("low_confidence")
        if entity.code and entity.code_system in CODE_FORMATS and not CODE_FORMATS[entity.code_system](entity.code):
            flags.append("unknown_code")
        if entity.kind == "vital" and entity.value_num is not None:
            limits = VITAL_LIMITS.get(entity.attribute or "") or UNIT_LIMITS.get((entity.attribute or "", entity.unit or ""))
            if limits and not limits[0] <= entity.value_num <= limits[1]:
                flags.append("implausible_vital")
        if entity.kind in ("demographic", "encounter", "procedure") and entity.value and _is_iso(entity.value):
            flags.extend(self._date_flags(entity, date.fromisoformat(entity.value), today, birth_date))
        return flags

    def _date_flags(self, entity: Entity, value: date, today: date, birth_date: str | None) -> list[str]:
        if value > today:
            return ["future_date"]
        if entity.attribute == "birth_date" and value.year < self.config.earliest_birth_year:
            return ["implausible_birth_date"]
        if entity.attribute != "birth_date" and birth_date and _is_iso(birth_date) and value < date.fromisoformat(birth_date):
            return ["date_before_birth"]
        return []


def _is_iso(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
