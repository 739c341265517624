"""Diagnoses: items of diagnosis lists, and dictionary mentions in narrative text with their assertion."""

from __future__ import annotations

import re

from pipeline.assertion import assertion_of, relationship_of
from pipeline.readers.common import LEADING_TRIGGER, STRENGTH, Lexicons, ReadContext, new_entity, score_field
from pipeline.records import CodeCandidate, Entity
from pipeline.spotter import SPOTTED

_DIAGNOSIS_STATUS = re.compile(r"\s*[(\[,-]?\s*\b(resolved|in remission|remote|inactive|active|chronic|controlled|"
                               r"stable)\b\s*[)\]]?\s*$", re.I)


def diagnosis_status(assertion: str, stated: str | None) -> str:
    """active | resolved | history, from a stated status word, else from the assertion."""
    if stated in ("resolved", "in remission", "inactive"):
        return "resolved"
    if stated == "remote" or assertion == "historical":
        return "history"
    return "active"


class ConditionReader:
    """Every item of a diagnosis list; in narrative, the longest known diagnosis names."""

    def __init__(self, lexicons: Lexicons):
        self.lexicons = lexicons

    def read(self, ctx: ReadContext) -> list[Entity]:
        if not ctx.text:
            return []
        if ctx.role == "diagnoses":
            ctx.claimed = True
            return self._listed(ctx.text, ctx)
        if ctx.role in ("narrative", "family"):
            return self._spot(ctx.text, ctx)
        return []

    def _listed(self, item: str, ctx: ReadContext) -> list[Entity]:
        """A diagnosis-list item: its status ("resolved"), and a leading trigger ("h/o")."""
        status_match = _DIAGNOSIS_STATUS.search(item)
        name = item[:status_match.start()].strip() if status_match and status_match.start() > 0 else item
        trigger = LEADING_TRIGGER.match(name)
        prefix = trigger.group("trigger") if trigger else ""
        name = name[len(prefix):].strip()
        assertion = assertion_of(prefix, ctx.role)
        entity = new_entity("diagnosis", name, ctx, assertion)
        stated = status_match.group(1).lower() if status_match and status_match.start() > 0 else None
        entity.status = diagnosis_status(assertion, stated)
        if assertion == "family":
            entity.relationship = relationship_of(item)[0]
        score_field(entity, "text", name, STRENGTH["exact_list_item"])
        score_field(entity, "assertion", assertion, STRENGTH["pattern"])
        return [entity]

    def _spot(self, item: str, ctx: ReadContext) -> list[Entity]:
        """Diagnosis terms found approximately in free text (`pipeline.spotter`), each with its
        ConText assertion and the concepts its words name as candidates for the code stage."""
        found = []
        for mention in self.lexicons.diagnosis_terms().spot(item):
            before, after = item[:mention.start], item[mention.end:]
            if after[:1] in (".", ";", ":"):
                after = "."  # the mention ends its clause: nothing after it is in scope
            assertion = assertion_of(before, ctx.role, after)
            entity = new_entity("diagnosis", mention.text, ctx, assertion)
            entity.status = diagnosis_status(assertion, None)
            if assertion == "family":
                entity.relationship = relationship_of(f"{before} {after}")[0]
            entity.candidates = [CodeCandidate(c.system, c.code, c.display, round(mention.score - c.penalty, 4),
                                               SPOTTED) for c in mention.concepts if c.system]
            score_field(entity, "text", mention.text, STRENGTH["dictionary_in_text"])
            score_field(entity, "assertion", assertion, STRENGTH["dictionary_in_text"])
            found.append(entity)
        return found
