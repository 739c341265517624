"""Procedure lists: items after a lead-in sentence, SNOMED CT semantic tags, dates, lost bullets."""

from __future__ import annotations

from reader_pages import column, draw, of_kind


def test_a_semantic_tag_closes_a_name_that_holds_commas(read) -> None:
    lines = column("PROCEDURES", "- Counselling about diet, exercise and sleep (procedure)",
                   "- Excision of skin lesion, left forearm 2019")

    assert [(p.text, p.value) for p in of_kind(read(lines), "procedure")] == [
        ("Counselling about diet, exercise and sleep", None), ("Excision of skin lesion", "2019")]


def test_two_tagged_terms_run_together_are_two_procedures(read) -> None:
    lines = column("PROCEDURES", "- Hearing test (procedure) vision screening (procedure)")

    assert [p.text for p in of_kind(read(lines), "procedure")] == ["Hearing test", "vision screening"]


def test_indented_items_after_a_lead_in_are_items_though_their_bullets_were_lost(read) -> None:
    # A scan lost the small dashes of three items; each row ends short, so the next is not the
    # wrapped rest of it. The list ends at the first row back at the lead-in's margin.
    lines = draw((100, [(80, "Today the nurse saw her and these procedures were carried out:")]),
                 (128, [(116, "hearing test")]), (156, [(98, "- eye examination")]),
                 (184, [(116, "blood pressure check")]),
                 (212, [(80, "She will return in a year for a review with her family doctor.")]))

    assert [p.text for p in of_kind(read(lines), "procedure")] == ["hearing test", "eye examination",
                                                                   "blood pressure check"]


def test_an_indented_item_wrapped_at_the_margin_stays_one_item(read) -> None:
    lines = draw((100, [(80, "The following procedures were performed:")]),
                 (128, [(98, "- counselling on the use of the inhaler spacer device and peak flow meter at")]),
                 (156, [(116, "home")]), (184, [(98, "- spirometry")]))

    assert [p.text for p in of_kind(read(lines), "procedure")] == [
        "counselling on the use of the inhaler spacer device and peak flow meter at home", "spirometry"]


def test_a_lead_in_sentence_wrapped_over_two_rows_still_opens_its_list(read) -> None:
    lines = column("PLAN", "Reviewed her diary with her. Then these procedures", "were carried out:",
                   "- Ear irrigation (procedure)", "- Wound dressing")

    assert [p.text for p in of_kind(read(lines), "procedure")] == ["Ear irrigation", "Wound dressing"]
