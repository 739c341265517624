"""Every code the synthetic corpus writes into its gold exists in the official extracts (../shared)."""

from __future__ import annotations

from pipeline.synth import catalogue as cat
from pipeline.synth.documents import INTAKE_CHECKLIST

MG_PER_UNIT = {"mg": 1.0, "mcg": 0.001, "g": 1000.0}


def test_every_diagnosis_code_is_billable_icd10cm(shared_icd10cm: dict[str, dict[str, str]]) -> None:
    codes = {dx.icd10cm for dx in cat.DIAGNOSES + cat.NEGATABLE_FINDINGS}
    codes |= {code for _, code in INTAKE_CHECKLIST if code}

    assert sorted(c for c in codes if c not in shared_icd10cm) == []
    assert sorted(c for c in codes if shared_icd10cm[c]["billable"] != "1") == []


def test_every_medication_ingredient_and_clinical_drug_exists(
        shared_rxnorm_concepts: dict[str, dict[str, str]]) -> None:
    wrong = []
    for drug in cat.MEDICATIONS:
        ingredient = shared_rxnorm_concepts.get(drug.ingredient_rxcui)
        scd = shared_rxnorm_concepts.get(drug.scd_rxcui)
        if ingredient is None or ingredient["tty"] != "IN":
            wrong.append(f"{drug.name}: ingredient {drug.ingredient_rxcui} is {ingredient}")
        if scd is None or scd["tty"] != "SCD":
            wrong.append(f"{drug.name}: clinical drug {drug.scd_rxcui} is {scd}")
            continue
        # The SCD is the strength and form the page prints.
        strength = f" {drug.dose_value * MG_PER_UNIT[drug.dose_unit]:g} MG "
        if strength not in f" {scd['name']} " or drug.form not in scd["name"].lower():
            wrong.append(f"{drug.name} {drug.dose_value:g} {drug.dose_unit} {drug.form}: SCD is {scd['name']!r}")
    assert wrong == []


def test_every_clinical_drug_has_the_catalogue_ingredient(shared_rxnorm_ingredients: dict[str, set[str]]) -> None:
    wrong = []
    for drug in cat.MEDICATIONS:
        linked = shared_rxnorm_ingredients.get(drug.scd_rxcui, set())
        if drug.ingredient_rxcui not in linked:
            wrong.append(f"{drug.scd_rxcui} ({drug.name}): has_ingredient {sorted(linked)}, "
                         f"catalogue says {drug.ingredient_rxcui}")
    assert wrong == []


def test_every_drug_allergen_is_an_rxnorm_ingredient(shared_rxnorm_concepts: dict[str, dict[str, str]]) -> None:
    drug_allergens = [a for a in cat.ALLERGENS if a.rxcui is not None]
    assert drug_allergens

    wrong = [
        f"{a.name}: {a.rxcui} is {shared_rxnorm_concepts.get(a.rxcui)}"
        for a in drug_allergens
        if shared_rxnorm_concepts.get(a.rxcui, {}).get("tty") != "IN"
        or shared_rxnorm_concepts[a.rxcui]["name"].lower() != a.name.lower()
    ]
    assert wrong == []


def test_every_lab_is_an_active_laboratory_loinc_code(shared_loinc: dict[str, dict[str, str]]) -> None:
    wrong = []
    for lab in cat.LABS:
        official = shared_loinc.get(lab.loinc)
        if official is None:
            wrong.append(f"{lab.name}: {lab.loinc} not in LOINC 2.78")
        elif (official["status"], official["classtype"]) != ("ACTIVE", "1"):
            wrong.append(f"{lab.name}: {lab.loinc} status {official['status']} classtype {official['classtype']}")
        elif not lab.low < lab.high:
            wrong.append(f"{lab.name}: reference range {lab.low}-{lab.high}")
    assert wrong == []
