"""ValidateStage rules and the LOINC check digit."""

from __future__ import annotations

import csv
from importlib import resources

import pytest

from pipeline.records import Entity
from pipeline.schemas import page_rows_to_table
from pipeline.config import ValidateConfig
from pipeline.stages.validate import ValidateStage, loinc_check_digit_ok
from pipeline.synth.catalogue import LABS
from terminology_index import ICD10CM, LOINC, RXNORM

TODAY = "2025-06-01"


def validate(rows: list[dict], **config) -> list[dict]:
    stage = ValidateStage(ValidateConfig(today=TODAY, **config))
    return stage.process_batch(page_rows_to_table(rows)).to_pylist()


def validated(make_page_row, *entities: Entity, **config) -> dict[str, Entity]:
    (row,) = validate([make_page_row(list(entities))], **config)
    return {e["entity_id"]: Entity.from_row(e) for e in row["entities"]}


def starter_loinc_codes() -> list[str]:
    with (resources.files("terminology_index") / "data" / "loinc_starter.tsv").open(encoding="utf-8") as handle:
        return [row["loinc_num"] for row in csv.DictReader(handle, delimiter="\t")]


@pytest.mark.parametrize("code", ["4548-4", "8480-6", "2345-7"])
def test_loinc_check_digit_accepts_real_codes(code: str) -> None:
    assert loinc_check_digit_ok(code)


@pytest.mark.parametrize("code", sorted(set(starter_loinc_codes()) | {lab.loinc for lab in LABS}))
def test_loinc_check_digit_accepts_every_code_the_pipeline_uses(code: str) -> None:
    assert loinc_check_digit_ok(code)


@pytest.mark.parametrize("code", ["4548-5", "8480-0", "2345-1", "4548", "45484", "abcd-4", "", "4548-44"])
def test_loinc_check_digit_rejects_wrong_or_malformed_codes(code: str) -> None:
    assert not loinc_check_digit_ok(code)


def test_future_birth_date_is_flagged(make_entity, make_page_row) -> None:
    out = validated(make_page_row, make_entity("demographic", "DOB: 01/01/2030", attribute="birth_date",
                                               value="2030-01-01"))

    (dob,) = out.values()
    assert dob.flags == ["future_date"] and dob.requires_review


def test_birth_date_before_the_earliest_year_is_flagged(make_entity, make_page_row) -> None:
    out = validated(make_page_row, make_entity("demographic", "DOB: 1850", attribute="birth_date", value="1850-03-01"))

    assert next(iter(out.values())).flags == ["implausible_birth_date"]


def test_encounter_before_birth_is_flagged(make_entity, make_page_row) -> None:
    out = validated(make_page_row,
                    make_entity("demographic", "DOB", 0, attribute="birth_date", value="1975-12-20"),
                    make_entity("encounter", "Admission", 1, attribute="admission_date", value="1970-01-05"),
                    make_entity("encounter", "Discharge", 2, attribute="discharge_date", value="2024-03-05"))

    assert out["ent-encounter-1"].flags == ["date_before_birth"]
    assert out["ent-encounter-2"].flags == [] and out["ent-demographic-0"].flags == []


@pytest.mark.parametrize(
    "attribute, value, unit, implausible",
    [
        ("systolic", 400.0, "mm[Hg]", True),
        ("systolic", 128.0, "mm[Hg]", False),
        ("diastolic", 10.0, "mm[Hg]", True),
        ("pulse", 78.0, "/min", False),
        ("spo2", 197.0, "%", True),
        ("temperature", 36.8, "Cel", False),
        ("temperature", 98.6, "Cel", True),  # a Fahrenheit reading under a Celsius unit
        ("temperature", 98.6, "[degF]", False),
        ("weight", 82.5, "kg", False),
        ("weight", 825.0, "kg", True),
    ],
)
def test_implausible_vitals_are_flagged(make_entity, make_page_row, attribute: str, value: float, unit: str,
                                        implausible: bool) -> None:
    out = validated(make_page_row, make_entity("vital", f"{attribute} {value}", attribute=attribute, value_num=value,
                                               unit=unit))

    assert next(iter(out.values())).flags == (["implausible_vital"] if implausible else [])


def test_low_confidence_is_flagged_at_the_configured_threshold(make_entity, make_page_row) -> None:
    low = make_entity("diagnosis", "Asthma", 0, confidence=0.5)
    high = make_entity("diagnosis", "Gout", 1, confidence=0.9)

    out = validated(make_page_row, low, high)
    strict = validated(make_page_row, low, high, min_confidence=0.95)

    assert (out["ent-diagnosis-0"].flags, out["ent-diagnosis-1"].flags) == (["low_confidence"], [])
    assert strict["ent-diagnosis-1"].flags == ["low_confidence"]


@pytest.mark.parametrize(
    "system, code, unknown",
    [(LOINC, "4548-5", True), (LOINC, "4548-4", False), (ICD10CM, "I10", False), (ICD10CM, "E11.9", False),
     (ICD10CM, "hypertension", True), (RXNORM, "861007", False), (RXNORM, "RX861007", True)],
)
def test_malformed_codes_are_flagged_unknown(make_entity, make_page_row, system: str, code: str,
                                              unknown: bool) -> None:
    out = validated(make_page_row, make_entity("lab", "a coded entity", code=code, code_system=system))

    assert next(iter(out.values())).flags == (["unknown_code"] if unknown else [])


def test_requires_review_is_set_iff_there_are_flags(make_entity, make_page_row) -> None:
    clean = make_entity("diagnosis", "Essential hypertension", 0, code="I10", code_system=ICD10CM)
    uncoded = make_entity("diagnosis", "Quexilar flombosis", 1, flags=["uncoded"])  # flagged by the code stage
    shaky = make_entity("vital", "BP 400/76", 2, attribute="systolic", value_num=400.0, confidence=0.4)

    out = validated(make_page_row, clean, uncoded, shaky)

    assert (out["ent-diagnosis-0"].flags, out["ent-diagnosis-0"].requires_review) == ([], False)
    assert (out["ent-diagnosis-1"].flags, out["ent-diagnosis-1"].requires_review) == (["uncoded"], True)
    assert (out["ent-vital-2"].flags, out["ent-vital-2"].requires_review) == (
        ["implausible_vital", "low_confidence"], True)


def test_validating_twice_changes_nothing(make_entity, make_page_row) -> None:
    rows = validate([make_page_row([make_entity("vital", "BP 400/76", attribute="systolic", value_num=400.0)])])

    assert [r["entities"] for r in validate(rows)] == [r["entities"] for r in rows]
    assert rows[0]["entities"][0]["flags"] == ["implausible_vital"]


def test_rows_failed_upstream_pass_through_untouched(make_entity, make_page_row) -> None:
    failed = make_page_row([make_entity("vital", "BP 400/76", attribute="systolic", value_num=400.0,
                                        confidence=0.1)],
                           error_stage="code", error_type="index_missing", error_message="no index")
    batch = page_rows_to_table([failed])

    out = ValidateStage(ValidateConfig(today=TODAY)).process_batch(batch).to_pylist()

    assert out == batch.to_pylist()
    assert out[0]["entities"][0]["flags"] == []


def test_min_confidence_out_of_bounds_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_confidence"):
        ValidateStage(ValidateConfig(min_confidence=1.5))
