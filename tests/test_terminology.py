"""TerminologyIndex lookups on the session index (bundled CDC ICD-10-CM XML + starter sets)."""

from __future__ import annotations

import pytest

from pipeline.terminology import TerminologyIndex, loinc_words, normalise_term
from terminology_index import ICD10CM, LOINC, RXNORM


def test_exact_preferred_term_ranks_first_with_full_score(terminology_index: TerminologyIndex) -> None:
    candidates = terminology_index.candidates("diagnosis", "Essential hypertension")

    top = candidates[0]
    assert (top.system, top.code, top.score) == (ICD10CM, "I10", 1.0)
    assert top.match.startswith("exact:")
    assert top.display == "Essential (primary) hypertension"
    assert all(c.score < 1.0 for c in candidates[1:])
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)


def test_billable_code_outranks_its_header(terminology_index: TerminologyIndex) -> None:
    candidates = terminology_index.candidates("diagnosis", "Type 2 diabetes mellitus")
    by_code = {c.code: c for c in candidates}

    assert candidates[0].code == "E11.9"
    assert terminology_index.concept(ICD10CM, "E11.9").billable is True
    assert terminology_index.concept(ICD10CM, "E11").billable is False
    if "E11" in by_code:  # the header may stay a candidate, never above the billable code
        assert by_code["E11"].score < by_code["E11.9"].score


def test_unspecified_code_of_a_named_category_outranks_another_disease(terminology_index: TerminologyIndex) -> None:
    # Token overlap alone ties "Anemia in chronic kidney disease" (D63.1) with N18.9.
    assert terminology_index.candidates("diagnosis", "Chronic kidney disease")[0].code == "N18.9"


@pytest.mark.parametrize("text, code", [("CHF", "I50.9"), ("htn", "I10"), ("COPD", "J44.9"),
                                        ("Community acquired pneumonia", "J18.9")])
def test_clinical_abbreviations_and_phrasings(terminology_index: TerminologyIndex, text: str, code: str) -> None:
    top = terminology_index.candidates("diagnosis", text)[0]

    assert (top.code, top.score) == (code, 1.0)


def test_lab_name_codes_to_loinc(terminology_index: TerminologyIndex) -> None:
    top = terminology_index.candidates("lab", "Hemoglobin A1c")[0]

    assert (top.system, top.code) == (LOINC, "4548-4")
    assert terminology_index.concept(LOINC, "4548-4").unit == "%"


def test_vital_name_codes_to_loinc(terminology_index: TerminologyIndex) -> None:
    assert terminology_index.candidates("vital", "heart rate")[0].code == "8867-4"


def test_medication_brand_name_codes_to_the_ingredient(terminology_index: TerminologyIndex) -> None:
    top = terminology_index.candidates("medication", "Glucophage")[0]

    assert (top.system, top.code) == (RXNORM, "6809")


@pytest.mark.parametrize("kind", ["diagnosis", "lab", "medication"])
def test_nonsense_has_no_confident_candidate(terminology_index: TerminologyIndex, kind: str) -> None:
    candidates = terminology_index.candidates(kind, "xqzvy blorfing tramzle")

    assert all(c.score < 0.5 for c in candidates)


def test_unknown_kind_and_empty_text_give_nothing(terminology_index: TerminologyIndex) -> None:
    assert terminology_index.candidates("procedure_xyz", "Essential hypertension") == []
    assert terminology_index.candidates("diagnosis", "") == []


def test_top_k_limits_the_candidates(terminology_index: TerminologyIndex) -> None:
    assert len(terminology_index.candidates("diagnosis", "diabetic kidney complications", k=3)) == 3


def test_an_exact_billable_match_skips_full_text_search(terminology_index: TerminologyIndex) -> None:
    assert [c.match for c in terminology_index.candidates("diagnosis", "diabetes mellitus", k=3)] == [
        "exact:abbreviation"]


def test_clinical_drug_picks_the_one_scd_at_that_strength(terminology_index: TerminologyIndex) -> None:
    drug = terminology_index.clinical_drug("6809", 500, "tablet")

    assert drug is not None
    assert (drug.code, drug.tty, drug.ingredient) == ("861007", "SCD", "6809")
    assert terminology_index.clinical_drug("6809", 1000, "tablet").code == "861004"
    assert terminology_index.clinical_drug("10582", 0.05, "tablet").code == "966221"  # 50 mcg levothyroxine


def test_clinical_drug_is_none_when_nothing_fits(terminology_index: TerminologyIndex) -> None:
    assert terminology_index.clinical_drug("6809", 750, "tablet") is None
    assert terminology_index.clinical_drug("6809", None, "tablet") is None
    assert terminology_index.clinical_drug("0000000", 500, "tablet") is None


def test_lexicon_holds_normalised_terms_of_one_kind(terminology_index: TerminologyIndex) -> None:
    diagnoses, labs = terminology_index.lexicon("diagnosis"), terminology_index.lexicon("lab")

    assert {"essential hypertension", "chf", "type 2 diabetes mellitus"} <= diagnoses
    assert {"hemoglobin a1c", "glucose"} <= labs
    assert "glucose" not in terminology_index.lexicon("vital")
    assert all(term == normalise_term(term) for term in labs)


def test_index_records_its_version(terminology_index: TerminologyIndex) -> None:
    assert terminology_index.version.startswith("tix-")
    assert terminology_index.record["terms"] > 50_000  # the bundled ICD-10-CM is in


def test_a_result_row_may_name_a_clinical_loinc_class(terminology_index: TerminologyIndex) -> None:
    # Lab-kind mentions search LOINC's clinical classes too (spirometry, growth, vital signs).
    assert terminology_index.candidates("lab", "Heart rate")[0].code == "8867-4"


def test_loinc_words_read_short_name_and_chart_abbreviations_alike() -> None:
    assert loinc_words("Head Circumf OFC") == {"head", "circumference", "occipital", "frontal"}
    assert loinc_words("Head circ.") == {"head", "circumference"}
    assert loinc_words("Wt-for-len Prctl") == loinc_words("Weight-for-length pctl") == {"weight", "length", "percentile"}


# Term maps kept beside the index ----------------------------------------------------------


def test_an_index_build_keeps_its_term_maps_beside_it_and_an_opened_index_loads_them(tmp_path) -> None:
    import pickle

    from pipeline.terminology import TERM_MAPS, IndexedConcept, TermMaps
    from terminology_index.build import IndexSources, build_index

    index = tmp_path / "index"
    build_index(IndexSources(icd10cm_xml=None), index)  # the starter sets alone: a small index
    kept = TERM_MAPS.path(index)
    assert kept.is_file()
    loaded, built = pickle.loads(kept.read_bytes()), TermMaps.from_index(index)
    assert (loaded.exact, loaded.by_code, loaded.icd_leaves) == (built.exact, built.by_code, built.icd_leaves)

    # An opened index reads the kept file (here replaced by a one-concept map), not the LanceDB rows.
    marker = IndexedConcept(LOINC, "99999-9", "Marker analyte", "preferred", "lab", True, None, None, None)
    kept.write_bytes(pickle.dumps(TermMaps({("lab", "marker analyte"): [marker]}, {}, {(LOINC, "99999-9"): marker},
                                           {}, [])))
    opened = TerminologyIndex(index)
    assert opened.concept(LOINC, "99999-9") == marker and opened.concept(LOINC, "2951-2") is None


def test_an_index_without_kept_term_maps_builds_them_in_memory_and_writes_nothing(tmp_path) -> None:
    from pipeline.terminology import TERM_MAPS
    from terminology_index.build import IndexSources, build_index

    index = tmp_path / "index"
    build_index(IndexSources(icd10cm_xml=None), index)
    TERM_MAPS.path(index).unlink()
    assert TerminologyIndex(index).concept(LOINC, "2951-2") is not None  # sodium, from the starter set
    assert not list(index.glob("term-maps-*.pickle"))  # an actor opening a shared index never writes into it
