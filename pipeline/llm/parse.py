"""LLM output -> checked mentions -> entities merged with the lexicon result.

Output is rejected (and repaired once by the stage) when it was cut off, does not fit the
schema, cites a line that is not on the page, or picks a candidate that does not exist or
codes another kind. Rejection messages name what was wrong, never page text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pydantic import ValidationError

from pipeline.layout import union_bbox
from pipeline.lexicon import deterministic_entity_id
from pipeline.units import normalise_unit
from pipeline.llm.prompt import PageCandidate
from pipeline.llm.schema import LLM_KINDS, LlmMention, LlmPage
from pipeline.records import CodeCandidate, Entity, OcrLine

# Flags the merge sets; the validate stage turns any flag into requires_review.
FLAG_DISAGREE = "llm_lexicon_disagree"  # both found it, but assertion or code differ
FLAG_LLM_ONLY = "llm_only"
FLAG_LEXICON_ONLY = "lexicon_only"
FLAG_FALLBACK = "llm_fallback"  # the LLM output was rejected twice: lexicon result only

_WORD = re.compile(r"[a-z0-9]+")
_NUMBER = re.compile(r"[<>]?\s*(-?\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Completion:
    """What an engine returned for one conversation."""

    text: str
    finish_reason: str  # "stop", or "length" when the output token limit cut it off
    output_tokens: int


class OutputRejected(ValueError):
    """LLM output that cannot be used for this page; `problem` carries no page text."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


def parse_page_output(completion: Completion, lines: list[OcrLine], candidates: list[PageCandidate]) -> LlmPage:
    """The checked mentions of one page's completion; raises OutputRejected."""
    if completion.finish_reason == "length":
        raise OutputRejected("the output was cut off at the token limit")
    if completion.finish_reason.startswith("refused"):
        raise OutputRejected(f"the engine refused the request ({completion.finish_reason})")
    try:
        page = LlmPage.model_validate_json(completion.text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise OutputRejected(f"the JSON does not fit the schema ({exc.error_count()} errors, first: {first['type']} at {where})") from None
    line_ids = {line.line_id for line in lines}
    for position, mention in enumerate(page.e):
        unknown = sorted(set(mention.l) - line_ids)
        if unknown:
            raise OutputRejected(f"entity {position} cites line ids {unknown} that are not on the page")
        if mention.c is not None:
            if not 0 <= mention.c < len(candidates):
                raise OutputRejected(f"entity {position} picks candidate {mention.c}; there are {len(candidates)}")
            if candidates[mention.c].kind != mention.k:
                raise OutputRejected(f"entity {position} is a {mention.k} but candidate {mention.c} codes a {candidates[mention.c].kind}")
    return page


@dataclass(frozen=True)
class MergeSettings:
    """How far agreement raises confidence and how much an LLM-only mention is trusted."""

    llm_confidence: float = 0.8  # the weight of the LLM's word, combined with the lexicon's on agreement
    llm_only_confidence: float = 0.6  # an entity the lexicon did not see: below the review threshold


def merge_with_lexicon(document_id: str, page_index: int, lines: list[OcrLine], llm: LlmPage,
                       lexicon: list[Entity], candidates: list[PageCandidate],
                       settings: MergeSettings = MergeSettings()) -> list[Entity]:
    """One entity list from both extractors.

    A mention both found keeps the lexicon's normalised values; agreement on assertion and
    code raises its confidence, disagreement flags it. A mention one of them found alone
    is kept and flagged. Lexicon kinds the LLM does not extract pass through unchanged.
    """
    by_id = {line.line_id: line for line in lines}
    comparable = [e for e in lexicon if e.kind in LLM_KINDS]
    unmatched = list(range(len(comparable)))
    merged = [e for e in lexicon if e.kind not in LLM_KINDS]
    for mention in llm.e:
        chosen = candidates[mention.c].candidate if mention.c is not None else None
        match = _best_match(mention, [comparable[i] for i in unmatched])
        if match is None:
            merged.append(_llm_only_entity(document_id, page_index, mention, chosen, by_id, settings))
            continue
        merged.append(_combine(comparable[unmatched.pop(match)], mention, chosen, settings))
    for index in unmatched:
        entity = comparable[index]
        merged.append(replace(entity, flags=entity.flags + [FLAG_LEXICON_ONLY]))
    return merged


def mark_fallback(lexicon: list[Entity]) -> list[Entity]:
    """The lexicon result standing in for rejected LLM output, every entity flagged."""
    return [replace(entity, flags=entity.flags + [FLAG_FALLBACK]) for entity in lexicon]


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _overlap(mention: LlmMention, entity: Entity) -> float:
    """Word overlap of the two texts relative to the shorter one; 0 when kind or lines differ."""
    if mention.k != entity.kind or not set(mention.l) & set(entity.line_ids):
        return 0.0
    mention_words, entity_words = _words(mention.t), _words(entity.text)
    if not mention_words or not entity_words:
        return 0.0
    return len(mention_words & entity_words) / min(len(mention_words), len(entity_words))


def _best_match(mention: LlmMention, entities: list[Entity], min_overlap: float = 0.5) -> int | None:
    scores = [_overlap(mention, entity) for entity in entities]
    if not scores or max(scores) < min_overlap:
        return None
    return scores.index(max(scores))


def _combine(entity: Entity, mention: LlmMention, chosen: CodeCandidate | None, settings: MergeSettings) -> Entity:
    # A lexicon entity the index could not code leaves the LLM's pick undisputed.
    same_code = entity.code is None or (chosen is not None and chosen.code == entity.code)
    if mention.a == entity.assertion and same_code:
        combined = 1 - (1 - entity.confidence) * (1 - settings.llm_confidence)
        coded = _with_code(entity, chosen) if entity.code is None and chosen is not None else entity
        return replace(coded, confidence=round(combined, 4))
    return replace(entity, flags=entity.flags + [FLAG_DISAGREE])


def _with_code(entity: Entity, chosen: CodeCandidate) -> Entity:
    others = [c for c in entity.candidates if c.code != chosen.code]
    return replace(entity, code=chosen.code, code_system=chosen.system, code_display=chosen.display,
                   code_score=chosen.score, candidates=[chosen] + others)


def _llm_only_entity(document_id: str, page_index: int, mention: LlmMention, chosen: CodeCandidate | None,
                     by_id: dict[int, OcrLine], settings: MergeSettings) -> Entity:
    evidence = [by_id[line_id] for line_id in sorted(set(mention.l))]
    number = _NUMBER.match(mention.v or "")
    entity = Entity(
        entity_id="", kind=mention.k, text=mention.t, section="", assertion=mention.a,
        page_index=page_index, line_ids=[line.line_id for line in evidence], bbox=union_bbox(evidence),
        ocr_confidence=min(line.confidence for line in evidence),
        value=mention.v, value_num=float(number.group(1)) if number else None, unit=normalise_unit(mention.u),
        confidence=settings.llm_only_confidence, flags=[FLAG_LLM_ONLY],
    )
    if chosen is not None:
        entity = replace(_with_code(entity, chosen), confidence=round(settings.llm_only_confidence * chosen.score, 4))
    return replace(entity, entity_id=deterministic_entity_id(document_id, entity))
