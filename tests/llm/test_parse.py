"""Parsing LLM output against the page, and merging it with the lexicon result."""

from __future__ import annotations

import json

import pytest
from sample_page import mention

from pipeline.llm.parse import (FLAG_DISAGREE, FLAG_FALLBACK, FLAG_LEXICON_ONLY, FLAG_LLM_ONLY, Completion,
                                MergeSettings, OutputRejected, mark_fallback, merge_with_lexicon, parse_page_output)
from pipeline.llm.schema import LlmPage


def completion(entities: list[dict], finish_reason: str = "stop") -> Completion:
    return Completion(text=json.dumps({"e": entities}, separators=(",", ":")), finish_reason=finish_reason,
                      output_tokens=42)


def test_valid_output_parses(page_lines, page_candidates) -> None:
    page = parse_page_output(completion([mention("diagnosis", "Essential hypertension", [2], c=0)]),
                             page_lines, page_candidates)

    assert [(m.k, m.t, m.l, m.c) for m in page.e] == [("diagnosis", "Essential hypertension", [2], 0)]


@pytest.mark.parametrize(("output", "problem"), [
    (Completion('{"e":[{"k":"diagnosis","t":"Ess', "length", 2048), "cut off at the token limit"),
    (Completion("not json at all", "stop", 4), "does not fit the schema"),
    (Completion('{"e":[{"k":"diagnosis"}]}', "stop", 9), "does not fit the schema"),
    (Completion("", "refused: HTTP 400", 0), "refused the request (refused: HTTP 400)"),
    (completion([mention("diagnosis", "HTN", [2, 99])]), "line ids [99] that are not on the page"),
    (completion([mention("diagnosis", "HTN", [2], c=7)]), "picks candidate 7; there are 3"),
    (completion([mention("medication", "Metformin", [5], c=0)]), "is a medication but candidate 0 codes a diagnosis"),
])
def test_unusable_output_is_rejected_with_what_was_wrong(page_lines, page_candidates, output: Completion,
                                                         problem: str) -> None:
    with pytest.raises(OutputRejected) as rejected:
        parse_page_output(output, page_lines, page_candidates)

    assert problem in rejected.value.problem


def test_rejections_never_quote_the_page(page_lines, page_candidates) -> None:
    secret = "Jane Doe born 1950"
    with pytest.raises(OutputRejected) as rejected:
        parse_page_output(Completion(f'{{"e":[{{"k":"{secret}"}}]}}', "stop", 9), page_lines, page_candidates)

    assert "Jane" not in rejected.value.problem


def merged(page_lines, page_candidates, lexicon_entities, mentions: list[dict], **settings):
    page = LlmPage.model_validate({"e": mentions})
    entities = merge_with_lexicon("doc-1", 0, page_lines, page, lexicon_entities, page_candidates,
                                  MergeSettings(**settings))
    return {e.text: e for e in entities}


AGREEING = [mention("diagnosis", "Essential hypertension", [2], c=0),
            mention("diagnosis", "asthma", [3], a="negated", c=2),
            mention("medication", "Metformin 500 mg PO BID", [5], c=1, v="500", u="mg")]


def test_agreement_raises_confidence_and_keeps_the_lexicon_values(page_lines, page_candidates, lexicon_entities) -> None:
    out = merged(page_lines, page_candidates, lexicon_entities, AGREEING, llm_confidence=0.8)

    assert set(out) == {"3000002", "Essential hypertension", "asthma", "Metformin"}
    hypertension = out["Essential hypertension"]
    assert hypertension.confidence == pytest.approx(1 - (1 - 0.7) * (1 - 0.8))
    assert hypertension.flags == [] and hypertension.code == "I10"
    assert out["Metformin"].dose_value == 500.0 and out["Metformin"].section == "medications"
    # The demographic passes through untouched: the LLM does not extract that kind.
    assert out["3000002"].confidence == 0.7 and out["3000002"].flags == []


@pytest.mark.parametrize(("changed", "why"), [
    (mention("diagnosis", "asthma", [3], a="present", c=2), "assertion differs"),
    (mention("diagnosis", "asthma", [3], a="negated", c=0), "code differs"),
    (mention("diagnosis", "asthma", [3], a="negated", c=None), "the LLM finds no candidate fits"),
])
def test_disagreement_flags_the_field_and_keeps_its_confidence(page_lines, page_candidates, lexicon_entities,
                                                                changed: dict, why: str) -> None:
    out = merged(page_lines, page_candidates, lexicon_entities, [AGREEING[0], changed, AGREEING[2]])

    asthma = out["asthma"]
    assert asthma.flags == [FLAG_DISAGREE], why
    assert asthma.confidence == 0.7 and asthma.assertion == "negated" and asthma.code == "J45.909"


def test_a_mention_one_side_missed_is_kept_and_flagged(page_lines, page_candidates, lexicon_entities) -> None:
    mentions = [AGREEING[0], AGREEING[2], mention("procedure", "PAST MEDICAL HISTORY", [1])]

    out = merged(page_lines, page_candidates, lexicon_entities, mentions, llm_only_confidence=0.6)

    assert out["asthma"].flags == [FLAG_LEXICON_ONLY]
    extra = out["PAST MEDICAL HISTORY"]
    assert extra.flags == [FLAG_LLM_ONLY] and extra.confidence == 0.6 and extra.code is None
    # Evidence lines give the field its page and bounding box.
    assert (extra.page_index, extra.line_ids, extra.bbox) == (0, [1], page_lines[1].bbox)
    assert extra.ocr_confidence == page_lines[1].confidence and extra.entity_id.startswith("ent-")


def test_an_llm_only_mention_takes_its_chosen_candidate(page_lines, page_candidates, lexicon_entities) -> None:
    lexicon = [e for e in lexicon_entities if e.text != "Essential hypertension"]

    out = merged(page_lines, page_candidates, lexicon, [AGREEING[0]], llm_only_confidence=0.6)

    entity = out["Essential hypertension"]
    assert (entity.code, entity.code_system, entity.code_score) == ("I10", page_candidates[0].candidate.system, 0.98)
    assert entity.confidence == pytest.approx(0.6 * 0.98) and entity.flags == [FLAG_LLM_ONLY]


def test_the_fallback_is_the_lexicon_result_flagged(lexicon_entities) -> None:
    fallback = mark_fallback(lexicon_entities)

    assert [e.text for e in fallback] == [e.text for e in lexicon_entities]
    assert all(e.flags == [FLAG_FALLBACK] for e in fallback)
    assert all(e.flags == [] for e in lexicon_entities)  # the inputs are not changed
