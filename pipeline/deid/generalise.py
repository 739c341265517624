"""Safe Harbor generalisations: dates shifted or cut to the year, ZIP codes to three digits, ages over 89."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

# FHIR date / dateTime / instant: YYYY, YYYY-MM, YYYY-MM-DD, then an optional time and zone.
FHIR_DATE = re.compile(r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})(?P<time>T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)?)?")
ZIP = re.compile(r"\b(?P<zip5>\d{5})(?:-\d{4})?\b")


@dataclass(frozen=True)
class DatePolicy:
    """How one patient's dates are changed: one offset for all of them, or only the year kept."""

    mode: str  # "shift" | "year"
    offset_days: int
    shift_year_only_dates: bool  # a date written as a year alone: shifted (True) or kept (Safe Harbor keeps years)

    def apply(self, value: str) -> str | None:
        """The research value of a FHIR date string; None when it is not a date (the caller scrubs it)."""
        match = FHIR_DATE.fullmatch(value.strip())
        if not match:
            return None
        year, month, day, time = match["year"], match["month"], match["day"], match["time"]
        if self.mode == "year":
            return year
        if month is None:
            if not self.shift_year_only_dates:
                return year
            return str((date(int(year), 7, 2) + timedelta(days=self.offset_days)).year)
        if day is None:  # month precision: shift the middle of the month, keep the precision
            shifted = date(int(year), int(month), 15) + timedelta(days=self.offset_days)
            return f"{shifted.year:04d}-{shifted.month:02d}"
        shifted = date(int(year), int(month), int(day)) + timedelta(days=self.offset_days)
        return shifted.isoformat() + (time or "")

    def apply_date(self, value: date) -> str:
        return self.apply(value.isoformat()) or ""


def zip3(value: str, restricted: frozenset[str]) -> str:
    """A US ZIP code cut to its first three digits; 000 for the small-population prefixes Safe Harbor lists."""
    digits = value.strip()[:3]
    return "000" if digits in restricted else digits


def age_in_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def is_over_age_cap(birth_date: str, on: date, age_cap: int) -> bool:
    """True when the (possibly partial) birth date makes the person older than `age_cap` on `on`.

    A year alone is read as the 31st of December, the youngest the person can be.
    """
    match = FHIR_DATE.fullmatch(birth_date.strip())
    if not match:
        return False
    born = date(int(match["year"]), int(match["month"] or 12), int(match["day"] or (31 if not match["month"] else 28)))
    return age_in_years(born, on) > age_cap


def parse_reference_date(value: str | None) -> date:
    """The date ages are reckoned at: the configured one, else today."""
    return date.fromisoformat(value) if value else datetime.now().date()
