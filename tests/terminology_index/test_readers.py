"""Readers of the official release formats, on tiny hand-written files (see conftest.py)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from terminology_index import ICD10CM, LOINC, RXNORM
from terminology_index import readers as r
from terminology_index.concepts import Concept


def preferred(concepts: list[Concept]) -> dict[str, Concept]:
    return {c.code: c for c in concepts if c.term_type == "preferred"}


# ICD-10-CM tabular XML -------------------------------------------------------------------


def test_tabular_xml_marks_headers_not_billable_and_leaves_billable(release_files: dict[str, Path]) -> None:
    concepts = list(r.read_icd10cm_tabular_xml(release_files["xml"]))
    codes = preferred(concepts)

    assert all(c.system == ICD10CM and c.kind == "diagnosis" for c in concepts)
    assert codes["E11"].billable is False
    assert codes["E11.9"].billable is True
    assert codes["E11.9"].display == "Type 2 diabetes mellitus without complications"
    assert codes["I10"].billable is True


def test_tabular_xml_expands_seventh_characters_onto_leaves(release_files: dict[str, Path]) -> None:
    codes = preferred(list(r.read_icd10cm_tabular_xml(release_files["xml"])))

    # The category, its subcategory and the leaf the 7th character applies to are not codable.
    for header in ("S06", "S06.0", "S06.0X0", "T07"):
        assert codes[header].billable is False, header
    for char, meaning in (("A", "initial encounter"), ("D", "subsequent encounter"), ("S", "sequela")):
        full = codes[f"S06.0X0{char}"]
        assert full.billable is True
        assert full.display == f"Concussion without loss of consciousness, {meaning}"
    # A 3-character leaf is padded with X to six characters before the 7th.
    assert codes["T07.XXXA"].billable is True
    assert codes["T07.XXXA"].display == "Unspecified multiple injuries, initial encounter"
    assert "T07A" not in codes and "T07.A" not in codes
    # Only leaves expand: no 7th character on the header codes.
    assert not any(code.startswith(("S06A", "S06.0A", "S06.A")) for code in codes)


def test_tabular_xml_keeps_inclusion_terms_with_their_code(release_files: dict[str, Path]) -> None:
    concepts = list(r.read_icd10cm_tabular_xml(release_files["xml"]))
    inclusions = {(c.code, c.term) for c in concepts if c.term_type == "inclusion"}

    assert ("I10", "high blood pressure") in inclusions
    assert ("E11", "diabetes (mellitus) due to insulin secretory defect") in inclusions
    hbp = next(c for c in concepts if c.term == "high blood pressure")
    assert hbp.display == "Essential (primary) hypertension" and hbp.billable is True


# ICD-10-CM order file --------------------------------------------------------------------


def test_order_file_reads_fixed_width_columns(release_files: dict[str, Path]) -> None:
    concepts = list(r.read_icd10cm_order_file(release_files["order"]))
    codes = preferred(concepts)

    assert set(codes) == {"I10", "E11", "E11.9", "J44.9", "S06.0X0A"}
    assert codes["E11"].billable is False
    assert codes["E11.9"].billable is True
    assert codes["E11.9"].display == "Type 2 diabetes mellitus without complications"
    assert codes["S06.0X0A"].display == "Concussion without loss of consciousness, initial encounter"
    # A short description that differs from the long one is kept as a synonym of the same code.
    synonyms = {(c.code, c.term) for c in concepts if c.term_type == "synonym"}
    assert synonyms == {("S06.0X0A", "Concussion w/o loss of consciousness, init")}


def test_order_file_reads_gzipped_release(release_files: dict[str, Path], tmp_path: Path) -> None:
    gz = tmp_path / "icd10cm-order-2026.txt.gz"
    gz.write_bytes(gzip.compress(release_files["order"].read_bytes()))

    assert list(r.read_icd10cm_order_file(gz)) == list(r.read_icd10cm_order_file(release_files["order"]))


# RxNorm RRF ------------------------------------------------------------------------------


def test_rxnorm_rrf_keeps_only_rxnorm_unsuppressed_atoms(release_files: dict[str, Path]) -> None:
    concepts = list(r.read_rxnorm_rrf(release_files["rxnconso"], release_files["rxnrel"]))

    assert [(c.code, c.tty, c.term) for c in concepts] == [
        ("6809", "IN", "metformin"),
        ("861007", "SCD", "metformin hydrochloride 500 MG Oral Tablet"),
        ("1191", "IN", "aspirin"),
        ("243670", "SCD", "aspirin 81 MG Oral Tablet"),
    ]
    assert all(c.system == RXNORM and c.kind == "medication" for c in concepts)


def test_rxnorm_rrf_links_clinical_drugs_to_their_ingredient(release_files: dict[str, Path]) -> None:
    codes = preferred(list(r.read_rxnorm_rrf(release_files["rxnconso"], release_files["rxnrel"])))

    assert codes["861007"].ingredient == "6809"
    assert codes["243670"].ingredient == "1191"
    assert codes["6809"].ingredient == "6809"  # an ingredient is its own ingredient


def test_rxnorm_rrf_without_relations_leaves_drugs_unlinked(release_files: dict[str, Path]) -> None:
    codes = preferred(list(r.read_rxnorm_rrf(release_files["rxnconso"])))

    assert codes["861007"].ingredient is None
    assert codes["6809"].ingredient == "6809"


# LOINC -----------------------------------------------------------------------------------


def test_loinc_csv_reads_lab_clinical_and_survey_terms_and_skips_deprecated(release_files: dict[str, Path]) -> None:
    concepts = list(r.read_loinc_csv(release_files["loinc"]))
    codes = preferred(concepts)

    assert set(codes) == {"2345-7", "8867-4", "72133-2"}  # 2339-0 is DEPRECATED
    # A scored instrument (classtype 4) is looked up like a lab result.
    assert (codes["72133-2"].kind, codes["72133-2"].unit) == ("lab", "{score}")
    glucose = codes["2345-7"]
    assert (glucose.system, glucose.kind, glucose.unit) == (LOINC, "lab", "mg/dL")
    assert glucose.display == "Glucose [Mass/volume] in Serum or Plasma"
    assert (codes["8867-4"].kind, codes["8867-4"].unit) == ("vital", "/min")
    assert ("2345-7", "Glucose SerPl-mCnc") in {(c.code, c.term) for c in concepts if c.term_type == "synonym"}


# Missing files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reader",
    [r.read_icd10cm_tabular_xml, r.read_icd10cm_order_file, r.read_icd10cm_tsv, r.read_rxnorm_rrf,
     r.read_rxnorm_tsv, r.read_loinc_csv],
)
def test_missing_release_file_raises_naming_the_path(reader, tmp_path: Path) -> None:
    missing = tmp_path / "not-here" / "release.txt"

    with pytest.raises(FileNotFoundError, match=str(missing)):
        list(reader(missing))
