"""Conditions: lists after a trigger in prose (wrapped over lines), problem lists under
compound headings, SNOMED CT semantic tags, conditions the dictionary does not know."""

from __future__ import annotations

from reader_pages import column, of_kind

from pipeline.readers.conditions import clean_condition


def test_a_history_list_wrapped_over_lines_gives_one_condition_per_item(read) -> None:
    lines = column("HISTORY OF PRESENT ILLNESS",
                   "A 58 year old teacher. She has a history of chronic sinus congestion (disorder), recurrent",
                   "ankle sprain, iron deficiency (finding) and mild seasonal hay fever. Denies fever.")

    conditions = of_kind(read(lines), "diagnosis")

    assert [c.text for c in conditions] == ["chronic sinus congestion", "recurrent ankle sprain",
                                            "iron deficiency", "seasonal hay fever"]
    assert {c.assertion for c in conditions} == {"historical"}
    # Provenance: an item wrapped over two lines points at both, one on one line at that line.
    assert conditions[1].line_ids == [1, 2] and conditions[2].line_ids == [2]


def test_presenting_with_and_negated_lists(read) -> None:
    lines = column("ASSESSMENT:", "Patient is presenting with acute otitis media (disorder).",
                   "SUBJECTIVE:", "She denies a history of asthma or gout.")

    conditions = of_kind(read(lines), "diagnosis")

    assert [(c.text, c.assertion) for c in conditions if c.assertion == "present"] == [
        ("acute otitis media", "present")]
    assert {(c.text, c.assertion) for c in conditions if c.text in ("asthma", "gout")} == {
        ("asthma", "negated"), ("gout", "negated")}


def test_problem_list_under_a_compound_heading_keeps_unknown_conditions(read) -> None:
    lines = column("DIAGNOSES / PROBLEM LIST", "1. Employed part time", "2. Essential hypertension",
                   "ASSESSMENT AND PROBLEM LIST", "- Chronic neck strain")

    conditions = of_kind(read(lines), "diagnosis")

    assert [c.text for c in conditions] == ["Employed part time", "Essential hypertension", "Chronic neck strain"]
    assert all(c.section in ("diagnoses", "assessment") for c in conditions)


def test_semantic_tags_and_clauses_are_not_part_of_the_name() -> None:
    assert clean_condition("Sprain of wrist (disorder)") == "Sprain of wrist"
    assert clean_condition("a cough that started last week") == "cough"
    assert clean_condition("Fracture of radius (left)") == "Fracture of radius (left)"


def test_a_history_list_under_a_heading_no_reader_knows_is_still_read(read) -> None:
    lines = column("INTAKE SUMMARY", "Mr Osei is a retired baker who has a history of plantar fasciitis and chronic",
                   "tinnitus. Seen today for review.")

    assert [c.text for c in of_kind(read(lines), "diagnosis")] == ["plantar fasciitis", "chronic tinnitus"]


def test_social_history_is_not_a_list_of_conditions(read) -> None:
    lines = column("SOCIAL HISTORY", "She is a current smoker with a history of heavy alcohol use and lives alone.",
                   "PROBLEM LIST", "Gout")

    assert [c.text for c in of_kind(read(lines), "diagnosis")] == ["Gout"]


def test_a_semantic_tag_wrapped_onto_its_own_line_is_no_condition(read) -> None:
    lines = column("ASSESSMENT AND PLAN", "- Chronic low back pain", "(finding).", "- Hyperlipidemia")

    assert [c.text for c in of_kind(read(lines), "diagnosis")] == ["Chronic low back pain", "Hyperlipidemia"]


def test_page_furniture_and_an_empty_list_are_no_conditions(read) -> None:
    lines = column("PROBLEM LIST", "None documented", "Attending: R. Mensah, MDSigned: 2021-02-06",
                   "St. Brigid Clinic   Page 1 of 2", "ASSESSMENT", "Gout", "PROVIDER SIGNATURE:   DATE:",
                   "Dr. R. Mensah   06/02/2021", "Mensah Clinic Form 7   Page 2 of 2")

    assert [c.text for c in of_kind(read(lines), "diagnosis")] == ["Gout"]
