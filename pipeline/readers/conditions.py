"""Diagnoses: items of diagnosis lists, and dictionary mentions in narrative text with their assertion."""

from __future__ import annotations

import re
from dataclasses import replace

from pipeline.assertion import assertion_of, relationship_of
from pipeline.readers.common import (LEADING_TRIGGER, SEMANTIC_TAG, STRENGTH, Lexicons, ReadContext, new_entity,
                                     score_field)
from pipeline.records import CodeCandidate, Entity
from pipeline.spotter import SPOTTED, Mention
from pipeline.terminology import normalise_term

# Phrases that open a list of the patient's conditions in prose ("has a history of A, B and C",
# "presents with", "diagnosed with"): each item of the list is a condition, known to the
# dictionary or not.
_LIST_TRIGGER = re.compile(
    r"\b(?:(?:a |an |significant |known )?(?:past |prior )?(?:medical )?history of|h/o|hx of|"
    r"presents? with|presenting with|diagnosed with|diagnoses? of|positive for|suffers? from|suffering from|"
    r"treated for|admitted with|known case of|complains? of|complaining of)\s+", re.I)
_SENTENCE = re.compile(r"[^.;!?]+(?:[.;!?]|$)")
# List items are separated by commas, semicolons and a final "and"/"or" (outside parentheses).
_ITEM_SEPARATOR = re.compile(r",\s*(?:and\s+|or\s+)?|;\s*|\s+(?:and|or)\s+")
# Words that end a list item and start a clause about it ("pain that started ...").
_ITEM_END = re.compile(r"\s+(?:that|which|who|since|starting|beginning|for the past|over the past)\b.*$", re.I)
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the|some|mild|new)\s+", re.I)
MAX_ITEM_WORDS = 10
# An item that says the list is empty ("None", "None documented", "No active problems").
_NOTHING_LISTED = re.compile(r"^(?:none|nil|n/?a|no (?:active |known |current )?(?:problems?|diagnos[ie]s|conditions?))"
                             r"(?: (?:documented|recorded|known|reported))?\W*$", re.I)

_DIAGNOSIS_STATUS = re.compile(r"\s*[(\[,-]?\s*\b(resolved|in remission|remote|inactive|active|chronic|controlled|"
                               r"stable)\b\s*[)\]]?\s*$", re.I)


def diagnosis_status(assertion: str, stated: str | None) -> str:
    """active | resolved | history, from a stated status word, else from the assertion."""
    if stated in ("resolved", "in remission", "inactive"):
        return "resolved"
    if stated == "remote" or assertion == "historical":
        return "history"
    return "active"


def clean_condition(text: str) -> str:
    """A condition's name without its SNOMED CT semantic tag, a leading article or list punctuation."""
    text = SEMANTIC_TAG.sub("", text)
    text = _ITEM_END.sub("", text).strip(" .,;:-")
    return _LEADING_ARTICLE.sub("", text).strip()


def _items(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each item of a list in text[start:end], split outside parentheses."""
    spans, depth, item_start, i = [], 0, start, start
    while i < end:
        char = text[i]
        depth += (char in "([") - (char in ")]")
        if depth <= 0:
            depth = 0
            separator = _ITEM_SEPARATOR.match(text, i, end)
            if separator and separator.end() > i:
                spans.append((item_start, i))
                item_start = i = separator.end()
                continue
        i += 1
    spans.append((item_start, end))
    return [(a, b) for a, b in spans if text[a:b].strip(" .;,")]


class ConditionReader:
    """Every item of a diagnosis list; in narrative, the longest known diagnosis names."""

    def __init__(self, lexicons: Lexicons):
        self.lexicons = lexicons

    def read(self, ctx: ReadContext) -> list[Entity]:
        if not ctx.text:
            return []
        trigger = _LIST_TRIGGER.search(ctx.text)
        prose = (trigger is not None and trigger.start() > 0) or len(ctx.text.split()) > MAX_ITEM_WORDS
        if ctx.role == "diagnoses" and not prose:  # a list item, perhaps led by "h/o"
            ctx.claimed = True
            return self._listed(ctx.text, ctx)
        if ctx.role == "diagnoses":  # prose in an assessment: "Patient is presenting with ..."
            listed, rest = self._narrative_lists(ctx)
            return listed + self._spot(rest, ctx)
        if ctx.role in ("narrative", "family"):
            listed, rest = self._narrative_lists(ctx)
            return listed + self._spot(rest, ctx)
        if ctx.role in ("other", "preamble") and prose:
            # A sentence that lists conditions after a trigger ("has a history of A, B and C")
            # says what they are under any heading, or none.
            return self._narrative_lists(ctx)[0]
        return []

    def _narrative_lists(self, ctx: ReadContext) -> tuple[list[Entity], str]:
        """Conditions listed after a trigger in prose; returns them and the text with their
        lists blanked out (for dictionary spotting of the rest)."""
        found: list[Entity] = []
        rest = list(ctx.text)
        for sentence in _SENTENCE.finditer(ctx.text):
            trigger = _LIST_TRIGGER.search(sentence.group(0))
            if trigger is None:
                continue
            start = sentence.start() + trigger.end()
            end = sentence.end()
            assertion = assertion_of(ctx.text[sentence.start():start], ctx.role)
            for item_start, item_end in _items(ctx.text, start, end):
                name = clean_condition(ctx.text[item_start:item_end])
                if not name or len(name.split()) > MAX_ITEM_WORDS or not re.search(r"[A-Za-z]{3}", name):
                    continue
                entity = new_entity("diagnosis", name, replace(ctx, row=ctx.rows_of(item_start, item_end)), assertion)
                entity.status = diagnosis_status(assertion, None)
                if assertion == "family":
                    entity.relationship = relationship_of(ctx.text[sentence.start():end])[0]
                known = normalise_term(name) in self.lexicons.diagnoses
                mentions = self.lexicons.diagnosis_terms().spot(name)
                best = max(mentions, key=lambda m: (m.words, m.score), default=None)
                entity.candidates = _candidates(best) if best else []  # what the code stage starts from
                score_field(entity, "text", name, STRENGTH["dictionary_in_text" if known else "narrative_list_item"])
                score_field(entity, "assertion", assertion, STRENGTH["pattern"])
                found.append(entity)
                for other in mentions:  # the item names more than its main condition ("pain ... with colic")
                    if other is not best:
                        also = new_entity("diagnosis", other.text, replace(ctx, row=ctx.rows_of(item_start, item_end)),
                                          assertion)
                        also.status, also.relationship = entity.status, entity.relationship
                        also.candidates = _candidates(other)
                        score_field(also, "text", other.text, STRENGTH["dictionary_in_text"])
                        score_field(also, "assertion", assertion, STRENGTH["pattern"])
                        found.append(also)
            rest[start:end] = " " * (end - start)
        return found, "".join(rest)

    def _listed(self, item: str, ctx: ReadContext) -> list[Entity]:
        """A diagnosis-list item: its status ("resolved"), and a leading trigger ("h/o")."""
        status_match = _DIAGNOSIS_STATUS.search(item)
        name = item[:status_match.start()].strip() if status_match and status_match.start() > 0 else item
        trigger = LEADING_TRIGGER.match(name)
        prefix = trigger.group("trigger") if trigger else ""
        name = clean_condition(name[len(prefix):])
        # A semantic tag wrapped onto a line of its own ("(finding).") names nothing.
        if _NOTHING_LISTED.match(name) or not re.search(r"[A-Za-z]{2}", name):
            return []
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
            entity.candidates = _candidates(mention)
            score_field(entity, "text", mention.text, STRENGTH["dictionary_in_text"])
            score_field(entity, "assertion", assertion, STRENGTH["dictionary_in_text"])
            found.append(entity)
        return found


def _candidates(mention: Mention) -> list[CodeCandidate]:
    """A mention's concepts as `spotted` candidates (the code stage merges them with its lookup)."""
    return [CodeCandidate(c.system, c.code, c.display, round(mention.score - c.penalty, 4), SPOTTED)
            for c in mention.concepts if c.system]
