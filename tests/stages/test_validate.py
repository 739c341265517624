"""ValidateStage rules and the LOINC check digit."""

from __future__ import annotations

import csv
from importlib import resources

import pytest

from pipeline.records import Entity, FieldScore
from pipeline.schemas import page_rows_to_table
from pipeline.config import ValidateConfig
from pipeline.stages.validate import (
    RuleEngine,
    ValidateStage,
    load_rules,
    loinc_check_digit_ok,
    luhn_ok,
    nhs_number_ok,
    review_rows,
)
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


# The rules file: every rule fires on a bad value and stays quiet on a good one ------------

RULES = load_rules()
ENTITY_CHECKS = ("range", "not_future", "min_year", "code_format", "check_digit")


def entity_for(make_entity, rule, bad: bool) -> Entity:
    """An entity the rule judges, with a value that breaks it (`bad`) or keeps it."""
    kind = "lab" if rule.kind == "*" else rule.kind
    where = rule.where
    fields: dict = {"attribute": where.attribute, "unit": where.unit}
    text = where.text_contains or where.attribute or kind
    if rule.check == "range":
        low, high = rule.params["min"], rule.params["max"]
        value = high * 3 + 1 if bad else (low + high) / 2
        if rule.field == "dose":
            fields.update(dose_value=value, dose_unit=rule.params.get("unit", "mg"))
        else:
            fields.update(value_num=value)
    elif rule.check in ("not_future", "min_year"):
        fields["attribute"] = where.attribute or "visit_date"
        fields["value"] = {"not_future": ("2030-01-01", "2020-01-01"),
                           "min_year": ("1850-01-01", "1950-01-01")}[rule.check][0 if bad else 1]
    elif rule.check == "code_format":
        fields.update(code="4548-5" if bad else "4548-4", code_system=LOINC)
    elif rule.check == "check_digit":
        good = {"nhs_mod11": "9434765919", "luhn": "79927398713"}[rule.params["algorithm"]]
        fields["value"] = good[:-1] + str((int(good[-1]) + 1) % 10) if bad else good
    return make_entity(kind, text, **fields)


@pytest.mark.parametrize("rule", [r for r in RULES if r.check in ENTITY_CHECKS], ids=lambda r: r.id)
def test_each_entity_rule_fires_and_does_not_fire(make_entity, make_page_row, rule) -> None:
    enable = {} if rule.enabled else {"enable_rules": {"fac-1": [rule.id]}}

    bad = validated(make_page_row, entity_for(make_entity, rule, bad=True), **enable)
    good = validated(make_page_row, entity_for(make_entity, rule, bad=False), **enable)

    (bad_entity,), (good_entity,) = bad.values(), good.values()
    assert rule.flag in bad_entity.flags
    assert rule.id in {reason for f in bad_entity.fields for reason in f.reasons}
    assert rule.flag not in good_entity.flags


@pytest.mark.parametrize("rule", [r for r in RULES if not r.enabled], ids=lambda r: r.id)
def test_rules_shipped_off_run_only_for_the_facilities_that_enable_them(make_entity, make_page_row, rule) -> None:
    bad = entity_for(make_entity, rule, bad=True)

    off = validated(make_page_row, bad)
    elsewhere = validated(make_page_row, bad, enable_rules={"fac-2": [rule.id]})
    here = validated(make_page_row, bad, enable_rules={"fac-1": [rule.id]})

    assert rule.flag not in next(iter(off.values())).flags
    assert rule.flag not in next(iter(elsewhere.values())).flags
    assert rule.flag in next(iter(here.values())).flags


def test_discharge_before_admission_fires_and_in_order_does_not(make_entity, make_page_row) -> None:
    wrong = validated(make_page_row,
                      make_entity("encounter", "Admitted", 0, attribute="admission_date", value="2024-03-05"),
                      make_entity("encounter", "Discharged", 1, attribute="discharge_date", value="2024-03-01"))
    right = validated(make_page_row,
                      make_entity("encounter", "Admitted", 0, attribute="admission_date", value="2024-03-01"),
                      make_entity("encounter", "Discharged", 1, attribute="discharge_date", value="2024-03-05"))

    assert wrong["ent-encounter-1"].flags == ["discharge_before_admission"]
    assert wrong["ent-encounter-0"].flags == []
    assert all(e.flags == [] for e in right.values())


def test_duplicates_across_pages_of_a_document_fire_and_within_a_page_or_across_documents_do_not(
        make_entity, make_page_row) -> None:
    def gout(line: int, page: int) -> Entity:
        entity = make_entity("diagnosis", "Gout", line, page_index=page)
        entity.entity_id = f"ent-gout-{page}-{line}"
        return entity

    rows = validate([
        make_page_row([gout(0, 0), gout(1, 0)], page_index=0),
        make_page_row([gout(0, 1)], page_index=1),
        make_page_row([gout(0, 1)], page_index=1, document_id="doc-2"),
    ])

    flags = [[e["flags"] for e in row["entities"]] for row in rows]
    assert flags == [[[], []], [["duplicate_across_pages"]], [[]]]


@pytest.mark.parametrize("number, ok", [("9434765919", True), ("943 476 5919", True), ("9434765918", False),
                                        ("943476591", False), ("abcdefghij", False)])
def test_nhs_number_mod11(number: str, ok: bool) -> None:
    assert nhs_number_ok(number) is ok


@pytest.mark.parametrize("number, ok", [("79927398713", True), ("79927398710", False), ("7", False)])
def test_luhn(number: str, ok: bool) -> None:
    assert luhn_ok(number) is ok


def test_a_bad_rules_file_fails_naming_the_rule(tmp_path) -> None:
    bad_check = tmp_path / "bad.yaml"
    bad_check.write_text("- {id: r1, flag: f, kind: vital, field: value, check: telepathy, severity: error, "
                         "message: m}\n")
    repeated = tmp_path / "repeated.yaml"
    repeated.write_text("- {id: r1, flag: f, kind: vital, field: value, check: range, params: {min: 1, max: 2}, "
                        "severity: error, message: m}\n" * 2)

    with pytest.raises(ValueError, match=r"rule 0 \(r1\)"):
        load_rules(str(bad_check))
    with pytest.raises(ValueError, match="repeat"):
        load_rules(str(repeated))
    with pytest.raises(ValueError, match="unknown rules"):
        RuleEngine(RULES, ValidateConfig(enable_rules={"fac-1": ["no-such-rule"]}))


def test_a_site_rules_file_replaces_the_packaged_one(tmp_path, make_entity, make_page_row) -> None:
    site = tmp_path / "rules.yaml"
    site.write_text("- {id: pulse-strict, flag: implausible_vital, kind: vital, field: value, check: range, "
                    "where: {attribute: pulse}, params: {min: 40, max: 150}, severity: error, message: strict}\n")
    pulse = make_entity("vital", "HR 160", attribute="pulse", value_num=160.0, unit="/min")

    assert next(iter(validated(make_page_row, pulse).values())).flags == []
    assert next(iter(validated(make_page_row, pulse, rules_path=str(site)).values())).flags == ["implausible_vital"]


def test_low_confidence_fields_and_review_rows_worst_first(make_entity, make_page_row) -> None:
    dose = make_entity("medication", "Warfarin 50", 0, attribute="Warfarin", dose_value=50.0, dose_unit="mg",
                       fields=[FieldScore("name", "Warfarin", 0.93), FieldScore("dose", "50", 0.52)])
    shaky_dx = make_entity("diagnosis", "Gout", 1, fields=[FieldScore("text", "Gout", 0.6)])

    out = validated(make_page_row, dose, shaky_dx)
    warfarin, gout = out["ent-medication-0"], out["ent-diagnosis-1"]

    assert warfarin.flags == ["dose_out_of_range", "low_confidence"] and warfarin.confidence == pytest.approx(0.52)
    dose_field = next(f for f in warfarin.fields if f.name == "dose")
    assert dose_field.reasons == ["dose-warfarin", "low_confidence"]
    assert next(f for f in warfarin.fields if f.name == "name").reasons == []
    by_id = {rule.id: rule for rule in RULES}
    (warfarin_row,) = review_rows(warfarin, by_id, 0.75)
    (gout_row,) = review_rows(gout, by_id, 0.75)
    assert warfarin_row["field"] == "dose" and "dose-warfarin: Warfarin dose outside" in warfarin_row["reason"]
    assert warfarin_row["priority"] > gout_row["priority"] > 0
    assert review_rows(make_entity("diagnosis", "Asthma"), by_id, 0.75) == []


def test_every_check_in_the_rules_file_has_a_fire_and_no_fire_test() -> None:
    # Entity checks run through the parametrized test above; the document checks have their own tests:
    # discharge-before-admission, encounter-before-birth and duplicates-across-pages.
    assert {rule.check for rule in RULES} <= set(ENTITY_CHECKS) | {"date_order", "date_after_birth", "duplicate"}
