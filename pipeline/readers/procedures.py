"""Procedure list items with their dates at the precision written."""

from __future__ import annotations

import re

from pipeline.assertion import assertion_of
from pipeline.dates import iso_date
from pipeline.readers.common import LEADING_TRIGGER, STRENGTH, ReadContext, new_entity, score_field
from pipeline.records import Entity

_YEAR = re.compile(r"\b((?:19|20)\d{2})\b")
_MONTH_YEAR = re.compile(r"\b(\d{1,2})/((?:19|20)\d{2})\b")


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


class ProcedureReader:
    """Each item of a procedure list (past surgical history, procedures performed)."""

    def read(self, ctx: ReadContext) -> list[Entity]:
        if ctx.role != "procedures" or not ctx.text:
            return []
        ctx.claimed = True
        item = ctx.text
        when = procedure_date(item)
        name = re.split(r"\s+(?:on|performed|in)\s+|\s*[(,]\s*|\s+-\s+|\s+\d", item, maxsplit=1)[0].strip()
        trigger = LEADING_TRIGGER.match(name)
        prefix = trigger.group("trigger") if trigger else ""
        name = name[len(prefix):]
        if not name or not re.search(r"[A-Za-z]{3}", name):
            return []
        entity = new_entity("procedure", name, ctx, assertion_of(prefix, ctx.role))
        entity.value = when
        score_field(entity, "text", name, STRENGTH["procedure_item"])
        if when:
            score_field(entity, "date", when, STRENGTH["pattern"])
        return [entity]
