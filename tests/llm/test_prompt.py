"""Prompt building: numbered lines and candidates in, the repair turn echoing the rejected answer."""

from __future__ import annotations

from pipeline.llm.prompt import SYSTEM_PROMPT, page_messages, repair_messages
from pipeline.llm.schema import KEY_LEGEND


def test_the_page_prompt_numbers_lines_and_candidates(page_lines, page_candidates) -> None:
    system, user = page_messages("discharge_summary", page_lines, page_candidates)

    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert KEY_LEGEND in system["content"]
    assert user["role"] == "user"
    content = user["content"]
    assert "Document type: discharge_summary" in content
    assert "[2] - Essential hypertension" in content and "[5] - Metformin 500 mg PO BID" in content
    # The candidate index the model answers with, the kind it codes, the system's short name, the code.
    assert "0 diagnosis icd-10-cm I10 Essential (primary) hypertension" in content
    assert "1 medication rxnorm 6809 metformin" in content


def test_a_page_without_candidates_says_so(page_lines) -> None:
    _, user = page_messages(None, page_lines, [])

    assert "Document type: unknown" in user["content"]
    assert user["content"].endswith("Candidate codes:\n(none)")


def test_the_repair_turn_keeps_the_conversation_and_names_the_problem(page_lines, page_candidates) -> None:
    original = page_messages("lab_report", page_lines, page_candidates)

    repair = repair_messages(original, "x" * 5000, "the output was cut off at the token limit", max_echo_chars=100)

    assert repair[:2] == original
    assert repair[2] == {"role": "assistant", "content": "x" * 100}
    assert repair[3]["role"] == "user" and "cut off at the token limit" in repair[3]["content"]
    assert len(repair) == 4
