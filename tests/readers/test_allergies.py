"""Allergy lists: inline lists, reactions and severities, unknown substances, letter closings."""

from __future__ import annotations

from reader_pages import column, of_kind


def test_inline_list_with_reactions_and_severities(read) -> None:
    lines = column("ALLERGIES", "Sulfa drugs (hives (moderate)); ragweed pollen; cat hair (sneezing (mild))")

    allergies = of_kind(read(lines), "allergy")

    assert [(a.text, a.value, a.severity) for a in allergies] == [
        ("Sulfa drugs", "hives", "moderate"), ("ragweed pollen", None, None), ("cat hair", "sneezing", "mild")]


def test_comma_list_of_substances_and_a_closing_that_is_no_allergy(read) -> None:
    lines = column("Allergies:", "Penicillin, strawberries, bee venom", "Best regards,")

    allergies = of_kind(read(lines), "allergy")

    assert [a.text for a in allergies] == ["Penicillin", "strawberries", "bee venom"]
    known, unknown = allergies[0], allergies[1]
    assert known.confidence > unknown.confidence  # a substance the dictionary knows is surer


def test_no_known_allergies_is_negated(read) -> None:
    allergies = of_kind(read(column("ALLERGIES", "No Known Allergies.")), "allergy")

    assert [(a.text, a.assertion) for a in allergies] == [("No Known Allergies", "negated")]


def test_a_labelled_reaction_after_a_slash(read) -> None:
    lines = column("ALLERGIES", "- Tree nuts / reaction: wheezing (severe)")

    assert [(a.text, a.value, a.severity) for a in of_kind(read(lines), "allergy")] == [
        ("Tree nuts", "wheezing", "severe")]
