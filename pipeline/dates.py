"""Dates as charts write them -> ISO 8601.

US order (month first) for numeric dates, as the records this reads are US charts, unless
only day first makes a date ("24.06.2004"); a
two-digit year takes the century that keeps it from lying in the future (more than
`future_years` ahead of today: 0 for birth dates).
"""

from __future__ import annotations

import re
from datetime import date

_MONTHS = {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_MONTH = r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_PATTERNS = (
    re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b"),  # 2024-03-02
    re.compile(r"\b(?P<m>\d{1,2})[/.-](?P<d>\d{1,2})[/.-](?P<y>\d{4}|\d{2})\b"),  # 03/02/2024, 3-2-24
    re.compile(rf"\b(?P<d>\d{{1,2}})[\s-]{_MONTH}[\s,-]+(?P<y>\d{{4}}|\d{{2}})\b", re.I),  # 2 Mar 2024, 02-Mar-24
    # March 2, 2024; "Mar 2. 2024" and "Mar 2 ,2024" as OCR reads the comma
    re.compile(rf"\b{_MONTH}\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?:\s*[,.]\s*|\s+)(?P<y>\d{{4}})\b", re.I),
    re.compile(r"\b(?P<y>(?:19|20)\d{2})(?P<m>\d{2})(?P<d>\d{2})\b"),  # 20240302
)


def full_year(year: str, today: date, future_years: int) -> int:
    """A four-digit year; two digits take the latest century not more than `future_years` ahead."""
    value = int(year)
    if len(year) == 4:
        return value
    candidate = today.year - today.year % 100 + value
    return candidate if candidate <= today.year + future_years else candidate - 100


def iso_date(text: str, *, today: date | None = None, future_years: int = 10) -> str | None:
    """The first date in `text` as ISO 8601, or None when there is none or it is impossible."""
    today = today or date.today()
    for pattern in _PATTERNS:
        match = pattern.search(text)
        if not match:
            continue
        groups = match.groupdict()
        month = int(groups["m"]) if groups.get("m") else _MONTHS[groups["mon"].lower()[:3]]
        day = int(groups["d"])
        if month > 12 >= day:  # "24.06.2004": only day first reads as a date
            month, day = day, month
        try:
            return date(full_year(groups["y"], today, future_years), month, day).isoformat()
        except ValueError:
            return None
    return None
