"""Procedure list items with their dates at the precision written."""

from __future__ import annotations

import re

from pipeline.assertion import assertion_of
from pipeline.dates import iso_date
from pipeline.readers.common import LEADING_TRIGGER, SEMANTIC_TAG, STRENGTH, ReadContext, new_entity, score_field
from pipeline.records import Entity

_YEAR = re.compile(r"\b((?:19|20)\d{2})\b")
_MONTH_YEAR = re.compile(r"\b(\d{1,2})/((?:19|20)\d{2})\b")
# Where an untagged item's name ends: at its date ("on 03/2019", "in March 2019", "2019"), a
# bracket, a comma or a spaced dash; "counselling on the use of ..." keeps its "on".
_NAME_END = re.compile(r"\s+(?:on|performed|in)\s+(?=\d|[A-Z][a-z]{2,8}\.?,?\s+\d)|\s*[(,]\s*|\s+-\s+|\s+\d")


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
        # A SNOMED CT semantic tag closes a term, commas and all ("assessment using X, Y and Z
        # screening test (procedure)"); two tagged terms run together are two items.
        tagged = [part.strip(" ,;.") for part in SEMANTIC_TAG.split(ctx.text)]
        if len(tagged) > 1:
            names = [part for part in tagged[:-1] if part]
            return [entity for name in names if (entity := self._procedure(name, ctx, whole=True))]
        entity = self._procedure(ctx.text, ctx, whole=False)
        return [entity] if entity else []

    def _procedure(self, item: str, ctx: ReadContext, whole: bool) -> Entity | None:
        when = procedure_date(item)
        name = item if whole else _NAME_END.split(item, maxsplit=1)[0].strip()
        trigger = LEADING_TRIGGER.match(name)
        prefix = trigger.group("trigger") if trigger else ""
        name = name[len(prefix):]
        if not name or not re.search(r"[A-Za-z]{3}", name):
            return None
        entity = new_entity("procedure", name, ctx, assertion_of(prefix, ctx.role))
        entity.value = when
        score_field(entity, "text", name, STRENGTH["procedure_item"])
        if when:
            score_field(entity, "date", when, STRENGTH["pattern"])
        return entity
