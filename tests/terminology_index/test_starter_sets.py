"""The starter sets in terminology_index/data agree with the official extracts in ../shared/terminology.

Skipped (with the path looked at) when the checkout has no `../shared` beside it.
"""

from __future__ import annotations

import csv
from importlib import resources

import pytest


def starter_rows(name: str) -> list[dict[str, str]]:
    with (resources.files("terminology_index") / "data" / name).open("r", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


LOINC_STARTER = starter_rows("loinc_starter.tsv")
RXNORM_STARTER = starter_rows("rxnorm_starter.tsv")
ICD10CM_SYNONYMS = starter_rows("icd10cm_synonyms.tsv")
LOINC_CLASSTYPE_OF_KIND = {"lab": "1", "vital": "2", "survey": "4"}  # 1 laboratory, 2 clinical, 4 survey


def test_starter_sets_are_not_empty() -> None:
    assert len(LOINC_STARTER) >= 30 and len(RXNORM_STARTER) >= 60 and len(ICD10CM_SYNONYMS) >= 30


def test_every_starter_loinc_code_exists_with_its_long_common_name(shared_loinc: dict[str, dict[str, str]]) -> None:
    wrong = []
    for row in LOINC_STARTER:
        official = shared_loinc.get(row["loinc_num"])
        if official is None and row["kind"] == "survey":
            continue  # the shared Core extract drops terms under a third-party copyright, most of them surveys
        if official is None:
            wrong.append(f"{row['loinc_num']}: not in LOINC 2.78")
        elif official["long_common_name"] != row["display"]:
            wrong.append(f"{row['loinc_num']}: {row['display']!r} != LCN {official['long_common_name']!r}")
        elif official["status"] != "ACTIVE":
            wrong.append(f"{row['loinc_num']}: status {official['status']}")
        elif official["classtype"] != LOINC_CLASSTYPE_OF_KIND[row["kind"]]:
            wrong.append(f"{row['loinc_num']}: kind {row['kind']} but classtype {official['classtype']}")
    assert wrong == []


def test_every_starter_rxnorm_concept_exists_with_its_tty_and_name(
        shared_rxnorm_concepts: dict[str, dict[str, str]]) -> None:
    wrong = []
    for row in RXNORM_STARTER:
        official = shared_rxnorm_concepts.get(row["rxcui"])
        if official is None:
            wrong.append(f"{row['rxcui']}: not in rxnorm_concepts")
        elif (official["tty"], official["name"]) != (row["tty"], row["name"]):
            wrong.append(f"{row['rxcui']}: {row['tty']} {row['name']!r} != {official['tty']} {official['name']!r}")
    assert wrong == []


def test_every_starter_clinical_drug_has_its_ingredient(shared_rxnorm_ingredients: dict[str, set[str]]) -> None:
    drugs = [row for row in RXNORM_STARTER if row["tty"] == "SCD"]
    assert drugs, "the starter set lists clinical drugs"
    wrong = [
        f"{row['rxcui']} ({row['name']}): ingredient {row['ingredient_rxcui']} not in "
        f"{sorted(shared_rxnorm_ingredients.get(row['rxcui'], set()))}"
        for row in drugs
        if row["ingredient_rxcui"] not in shared_rxnorm_ingredients.get(row["rxcui"], set())
    ]
    assert wrong == []


def test_every_starter_ingredient_is_its_own_ingredient() -> None:
    ingredients = [row for row in RXNORM_STARTER if row["tty"] == "IN"]
    assert [row["rxcui"] for row in ingredients if row["ingredient_rxcui"] != row["rxcui"]] == []


def test_every_clinical_synonym_names_a_billable_icd10cm_code(shared_icd10cm: dict[str, dict[str, str]]) -> None:
    wrong = []
    for row in ICD10CM_SYNONYMS:
        official = shared_icd10cm.get(row["code"])
        if official is None:
            wrong.append(f"{row['code']}: not in ICD-10-CM FY2026")
        elif official["billable"] != "1":
            wrong.append(f"{row['code']}: a header, not billable")
    assert wrong == []


@pytest.mark.parametrize("rows, key", [(LOINC_STARTER, "loinc_num"), (RXNORM_STARTER, "rxcui"),
                                       (ICD10CM_SYNONYMS, "code")])
def test_starter_codes_are_listed_once(rows: list[dict[str, str]], key: str) -> None:
    codes = [row[key] for row in rows]
    assert len(codes) == len(set(codes))


def test_every_clinical_synonym_names_its_source() -> None:
    assert [row["code"] for row in ICD10CM_SYNONYMS if not row["source"].strip()] == []


def test_clinical_synonyms_take_the_fy2026_codes() -> None:
    code_of = {phrase: row["code"] for row in ICD10CM_SYNONYMS for phrase in row["phrase"].split("|")}
    assert code_of["depression"] == "F32.A"  # F32.9 is a major depressive disorder, single episode
    assert code_of["anxiety"] == "F41.9"  # F41.1 is generalized anxiety disorder
    assert code_of["dyspnea"] == "R06.00"  # R06.02 is shortness of breath
    assert "sugar" not in code_of  # sugar alone is not diabetes
