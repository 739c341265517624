"""Allergy lists: inline lists, reactions and severities, unknown substances, letter closings."""

from __future__ import annotations

from reader_pages import column, draw, of_kind


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


def test_items_after_a_short_right_column_stay_in_their_list(read) -> None:
    # A boxed header at the right (a title, a clinician box) ends above the list's third item,
    # which is wider than the first two: its section is still the list's, not the title's.
    lines = draw((100, [(100, "HILLTOP MEDICAL GROUP"), (700, "INTAKE SHEET FOR NEW PATIENTS")]),
                 (128, [(100, "PATIENT: Ada Brook"), (700, "SEEN BY: Dr Oak")]),
                 (170, [(100, "ALLERGIES")]), (194, [(120, "- Latex")]), (218, [(120, "- Cat hair")]),
                 (242, [(120, "- Sulfa drugs / reaction: rash over the chest, back and both arms (mild)")]),
                 (266, [(120, "- Wool")]))

    assert [(a.text, a.value) for a in of_kind(read(lines), "allergy")] == [
        ("Latex", None), ("Cat hair", None), ("Sulfa drugs", "rash over the chest, back and both arms"), ("Wool", None)]


def test_a_qualifier_in_brackets_with_a_labelled_reaction_and_in_a_comma_list(read) -> None:
    lines = column("ALLERGIES", "- Nuts (tree) / reaction: wheezing (mild)", "Latex, Nuts (tree), dust")

    assert [(a.text, a.value) for a in of_kind(read(lines), "allergy")] == [
        ("Nuts (tree)", "wheezing"), ("Latex", None), ("Nuts", "tree"), ("dust", None)]
