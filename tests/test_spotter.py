"""The term spotter: ICD-10-CM-style terms found in free text despite word order, plurals,
punctuation, OCR slips, abbreviations and the classification's qualifiers."""

from __future__ import annotations

import pytest

from pipeline.spotter import SpottedConcept, TermSpotter, core_words, stem
from pipeline.terminology import TerminologyIndex
from terminology_index import ICD10CM

TERMS = {
    "E11.9": "Type 2 diabetes mellitus without complications",
    "I10": "Essential (primary) hypertension",
    "J18.9": "Pneumonia, unspecified organism",
    "N39.0": "Urinary tract infection, site not specified",
    "K26.9": "Duodenal ulcer, unspecified as acute or chronic, without hemorrhage or perforation",
    "K59.00": "Constipation, unspecified",
    "R52": "Pain, unspecified",
    "R10.9": "Unspecified abdominal pain",
    "I50.9": "Heart failure, unspecified",
    "I50.91": "Congestive heart failure",
    "N20.0": "Calculus of kidney",
    "R07.89": "Other chest pain",
    "R07.9": "Chest pain, unspecified",
    "K21.9": "Gastro-esophageal reflux disease without esophagitis",
    "A41.9": "Sepsis, unspecified organism",
    "J45.909": "Unspecified asthma, uncomplicated",
}


@pytest.fixture(scope="module")
def spotter() -> TermSpotter:
    terms = [*TERMS.items(), ("I10", "Hypertension (arterial) (benign) (essential) (malignant)")]  # an inclusion term
    return TermSpotter((term, SpottedConcept(ICD10CM, code, term, True, 0.0)) for code, term in terms)


def codes(spotter: TermSpotter, text: str) -> list[list[str]]:
    return [sorted(c.code for c in mention.concepts) for mention in spotter.spot(text)]


def test_qualifiers_are_not_required_in_text() -> None:
    assert core_words(TERMS["E11.9"])[0] == ("type", "2", "diabete", "mellitus")
    assert core_words(TERMS["J18.9"])[0] == ("pneumonia",)
    assert core_words(TERMS["N39.0"])[0] == ("urinary", "tract", "infection")
    assert core_words(TERMS["K26.9"])[0] == ("duodenal", "ulcer")
    assert core_words("Malignant neoplasm of unspecified kidney, except renal pelvis")[0] == (
        "malignant", "neoplasm", "kidney")
    assert core_words("Fracture of unspecified part of neck of right femur")[0] == ("fracture", "neck", "right", "femur")
    # "Other ..." terms are catch-alls: found, but ranked after the term that says no more.
    assert core_words(TERMS["R07.89"])[1] > core_words(TERMS["R07.9"])[1] == 0.0


def test_word_order_plurals_and_punctuation(spotter: TermSpotter) -> None:
    assert codes(spotter, "Diabetes mellitus, type 2, on diet") == [["E11.9"]]
    assert codes(spotter, "recurrent infections of the urinary tract") == [["N39.0"]]
    assert codes(spotter, "bilateral pneumonias") == [["J18.9"]]
    assert codes(spotter, "Gastroesophageal reflux disease") == [["K21.9"]]
    mention = spotter.spot("He had duodenal ulcers.")[0]
    assert mention.text == "duodenal ulcers" and mention.score == 1.0


def test_ocr_slips_on_long_words(spotter: TermSpotter) -> None:
    assert codes(spotter, "known hypertensoin") == [["I10"]]
    assert codes(spotter, "constipatoin for weeks") == [["K59.00"]]
    assert spotter.spot("known hypertensoin")[0].score < 1.0  # a corrected word is less sure
    assert codes(spotter, "sepsls") == []  # short words are not corrected: too many near neighbours
    assert codes(spotter, "pnuemonia") == []  # nor a shorter word standing alone as the whole term


def test_standard_abbreviations_expand(spotter: TermSpotter) -> None:
    assert codes(spotter, "PMH: HTN, CHF") == [["I10"], ["I50.91"]]
    assert codes(spotter, "T2DM since 2010") == [["E11.9"]]


def test_the_longest_match_wins_and_words_are_not_reused(spotter: TermSpotter) -> None:
    assert codes(spotter, "abdominal pain and constipation") == [["R10.9"], ["K59.00"]]
    assert codes(spotter, "chest pain") == [["R07.89", "R07.9"]]


def test_precision(spotter: TermSpotter) -> None:
    # Words of a term spread over other clauses or far apart are not a mention of it.
    assert codes(spotter, "Type of surgery: 2. Diabetes screen negative. Mellitus") == []
    assert codes(spotter, "urinary catheter placed after the infection of the tract wound had cleared") == []
    # Words shorter than a term's words, and stop words, never match alone.
    assert codes(spotter, "the other one is not specified") == []
    assert codes(spotter, "type 2") == []


def test_a_connective_must_join_the_words_around_it() -> None:
    spotter = TermSpotter((term, SpottedConcept(ICD10CM, code, term, True, 0.0)) for code, term in (
        ("E11.9", TERMS["E11.9"]), ("E11.8", "Type 2 diabetes mellitus with unspecified complications")))
    # "with" before the term's words belongs to the sentence ("Mother with ..."), not to the term.
    assert codes(spotter, "Mother with type 2 diabetes mellitus without complications") == [["E11.9"]]
    assert codes(spotter, "Type 2 diabetes mellitus with complications") == [["E11.8"]]
    assert codes(spotter, "Diabetes mellitus type 2 with complications") == [["E11.8"]]


def test_stem_folds_plurals_and_british_spelling() -> None:
    assert stem("infections") == stem("infection")
    assert stem("arteries") == "artery"
    assert stem("anaemia") == stem("anemia")
    assert stem("haemorrhage") == stem("hemorrhage")
    assert stem("tumour") == stem("tumor")
    assert stem("diagnosis") == "diagnosis"


def test_the_index_spotter_finds_inclusion_terms_and_synonyms(terminology_index: TerminologyIndex) -> None:
    spotter = TermSpotter(terminology_index.spotter_terms("diagnosis"))
    found = {c.code for mention in spotter.spot("Hypertension; type 2 diabetes; pneumonias; acute cholecystitis")
             for c in mention.concepts}
    assert {"I10", "E11.9", "J18.9", "K81.0"} <= found
    # Depression alone is F32.A in FY2026; anxiety alone is F41.9; "sugar" is not diabetes.
    assert "F32.A" in {c.code for m in spotter.spot("depression") for c in m.concepts}
    assert "F41.9" in {c.code for m in spotter.spot("anxiety") for c in m.concepts}
    assert not spotter.spot("no added sugar")


def test_either_word_of_a_coordinated_term_names_it(terminology_index: TerminologyIndex) -> None:
    spotter = TermSpotter(terminology_index.spotter_terms("diagnosis"))

    def found(text: str) -> dict[str, float]:
        return {c.code: c.penalty for mention in spotter.spot(text) for c in mention.concepts}

    assert "R42" in found("discontinued due to dizziness")  # "Dizziness and giddiness"
    assert "R55" in found("an episode of syncope")  # "Syncope and collapse"
    # A term naming the word alone still wins: nausea is R11.0, R11 ("Nausea and vomiting") ranks after it.
    nausea = found("nausea")
    assert nausea["R11.0"] < nausea.get("R11", 1.0)
    # A drug class in a poisoning code's short description is not a poisoning.
    assert not any(code.startswith("T40") for code in found("narcotics"))
