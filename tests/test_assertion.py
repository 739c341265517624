"""ConText-style assertion: triggers before and after a mention, scopes, terminators, pseudo-triggers."""

from __future__ import annotations

import pytest

from pipeline.assertion import assertion_of, relationship_of


@pytest.mark.parametrize("before, after, expected", [
    ("patient denies", "", "negated"),
    ("no evidence of", "", "negated"),
    ("negative for", "", "negated"),
    ("", "was ruled out.", "negated"),
    ("history of", "", "historical"),
    ("s/p", "", "historical"),
    ("status post", "", "historical"),
    ("mother had", "", "family"),
    ("family history of", "", "family"),
    ("", "in her mother.", "family"),
    ("if", "", "hypothetical"),
    ("return if", "", "hypothetical"),
    ("rule out", "", "hypothetical"),
    ("possible", "", "hypothetical"),
    ("concern for", "", "hypothetical"),
    ("patient admitted with", "", "present"),
])
def test_triggers(before: str, after: str, expected: str) -> None:
    assert assertion_of(before, "narrative", after) == expected


@pytest.mark.parametrize("before, expected", [
    ("denies fever; reports", "present"),  # terminator: the negation ended at the semicolon
    ("no fever but", "present"),
    ("no cough, with a history of", "historical"),
    ("no one two three four five six seven eight nine words later", "present"),  # out of the window
    ("history of present illness: admitted with", "present"),  # pseudo-trigger
    ("no change in", "present"),
])
def test_scope_and_pseudo_triggers(before: str, expected: str) -> None:
    assert assertion_of(before, "narrative") == expected


def test_negation_outranks_family_and_the_family_section_makes_family() -> None:
    assert assertion_of("no family history of", "narrative") == "negated"
    assert assertion_of("", "family") == "family"
    assert assertion_of("denies", "family") == "negated"


@pytest.mark.parametrize("text, code", [("Mother had asthma", "MTH"), ("father's MI", "FTH"),
                                        ("maternal aunt with diabetes", "MAUNT"), ("paternal grandfather had gout", "PGRFTH"), ("family history of gout", "FAMMEMB")])
def test_relationship(text: str, code: str) -> None:
    assert relationship_of(text)[0] == code
