"""`apply-review`: decisions into the entities table and the FHIR NDJSON, idempotently."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.assemble.fhir import resource_id
from pipeline.records import Entity
from pipeline.review.apply import apply_review, correct_field
from pipeline.review.queue import QueueFilter, ReviewQueue
from pipeline.review.store import DecisionLog
from terminology_index import ICD10CM


def queue_item(output: Path, field: str) -> dict:
    rows = ReviewQueue([output]).page(QueueFilter(status=None), 0, 100)
    return next(r for r in rows if r["field"] == field)


def decide(output: Path, item: dict, action: str, reviewer: str = "rita", **after) -> dict:
    return DecisionLog(output).append({
        "reviewer": reviewer, "role": "reviewer", "item_id": item["item_id"], "facility_id": item["facility_id"],
        "document_id": item["document_id"], "page_index": item["page_index"], "entity_id": item["entity_id"],
        "kind": item["kind"], "field": item["field"], "action": action, "value_before": item["value"], **after})


def resources(output: Path, kind: str) -> list[dict]:
    path = output / "fhir" / f"{kind}.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def entity_row(output: Path, entity_id: str) -> dict | None:
    rows = [r for r in pq.read_table(output / "tables" / "entities.parquet").to_pylist() if r["entity_id"] == entity_id]
    return rows[0] if rows else None


def made_from(output: Path, item: dict, kind: str) -> list[dict]:
    """The resources of `kind` the item's entity became (the assembler's deterministic ids)."""
    patient_key = pq.read_table(output / "review" / "entities.before-review.parquet", filters=[
        ("entity_id", "=", item["entity_id"])])["patient_key"][0].as_py()
    wanted = resource_id(patient_key, kind, item["facility_id"], item["document_id"], item["entity_id"])
    return [r for r in resources(output, kind) if r["id"] == wanted]


def fhir_bytes(output: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((output / "fhir").iterdir())}


def test_a_corrected_dose_reaches_the_entity_table_and_the_fhir(output: Path):
    item = queue_item(output, "dose")
    decide(output, item, "correct", value_after="500 mg")
    result = apply_review(output)
    assert result.entities_corrected == 1 and result.review_provenance == 1 and result.changed
    row = entity_row(output, item["entity_id"])
    assert row["dose_value"] == 500 and row["dose_unit"] == "mg"
    assert row["requires_review"] is False and "reviewed" in row["flags"]
    [request] = made_from(output, item, "MedicationRequest")
    assert request["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 500
    tags = {t["code"] for t in request["meta"]["tag"]}
    assert "reviewed" in tags and "requires-review" not in tags
    [review] = [p for p in resources(output, "Provenance") if p["agent"][0]["type"]["coding"][0]["code"] == "verifier"]
    assert review["target"] == [{"reference": f"MedicationRequest/{request['id']}"}]
    assert review["agent"][0]["who"]["identifier"]["value"] == "rita"
    assert review["activity"]["coding"][0]["code"] == "UPDATE"
    manifest = json.loads((output / "fhir" / "manifest.json").read_text())
    for entry in manifest["output"]:
        assert entry["count"] == len((output / "fhir" / entry["url"]).read_text().splitlines())


def test_applying_the_same_decisions_again_changes_nothing(output: Path):
    decide(output, queue_item(output, "dose"), "correct", value_after="500 mg")
    decide(output, queue_item(output, "discharge_date"), "accept")
    first = apply_review(output)
    after_first = fhir_bytes(output), (output / "tables" / "entities.parquet").read_bytes()
    second = apply_review(output)
    assert first.changed and not second.changed
    assert (fhir_bytes(output), (output / "tables" / "entities.parquet").read_bytes()) == after_first


def test_a_picked_code_is_written_and_the_condition_confirmed(output: Path):
    item = queue_item(output, "code")
    decide(output, item, "correct", code_system_after=ICD10CM, code_after="E11.9",
           code_display_after="Type 2 diabetes mellitus without complications")
    apply_review(output)
    row = entity_row(output, item["entity_id"])
    assert (row["code"], row["code_system"], row["code_score"]) == ("E11.9", ICD10CM, 1.0)
    assert "uncoded" not in row["flags"]
    [condition] = made_from(output, item, "Condition")
    assert condition["code"]["coding"][0]["code"] == "E11.9"
    assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"


def test_a_rejected_fact_leaves_the_outputs(output: Path):
    item = queue_item(output, "code")
    before = len(resources(output, "Condition"))
    decide(output, item, "reject")
    result = apply_review(output)
    assert result.entities_rejected == 1
    assert entity_row(output, item["entity_id"]) is None
    assert len(resources(output, "Condition")) == before - 1
    assert made_from(output, item, "Condition") == []


def test_an_undone_decision_is_taken_back_on_the_next_apply(output: Path):
    original = fhir_bytes(output)
    item = queue_item(output, "code")
    rejected = decide(output, item, "reject")
    apply_review(output)
    assert fhir_bytes(output) != original
    decide(output, item, "undo", reviewer="sam", undoes=rejected["decision_id"])
    apply_review(output)
    restored = {name: sorted(data.splitlines()) for name, data in fhir_bytes(output).items()}
    assert restored == {name: sorted(data.splitlines()) for name, data in original.items()}


def test_skips_and_decisions_on_other_fields_leave_the_entity_for_review(output: Path):
    item = queue_item(output, "dose")
    decide(output, item, "skip")
    result = apply_review(output)
    assert result.decisions_in_force == 0 and entity_row(output, item["entity_id"])["requires_review"] is True


def test_a_new_run_of_the_entities_table_becomes_the_new_baseline(output: Path):
    decide(output, queue_item(output, "dose"), "correct", value_after="500 mg")
    apply_review(output)
    snapshot = output / "review" / "entities.before-review.parquet"
    # A later run rewrites the table (here: the run's rows again); the next apply starts from it.
    (output / "tables" / "entities.parquet").write_bytes(snapshot.read_bytes())
    snapshot.write_bytes(b"stale")
    apply_review(output)
    assert pq.read_table(snapshot).num_rows == pq.read_table(output / "tables" / "entities.parquet").num_rows


@pytest.mark.parametrize("field_name, value, column, expected", [
    ("value", "4.5 mmol/L", "value_num", 4.5),
    ("unit", "mg/dL", "unit", "mg/dL"),
    ("reference_range", "3.5 - 5.0", "reference_high", 5.0),
    ("assertion", "negated", "assertion", "negated"),
])
def test_field_corrections_set_the_entity_columns(field_name: str, value: str, column: str, expected):
    entity = Entity("e", "lab", "Potassium", "", "present", 0, [1], [0, 0, 1, 1], 0.9)
    correct_field(entity, field_name, value)
    assert getattr(entity, column) == expected
    assert [f for f in entity.fields if f.name == field_name][0].confidence == 1.0


def test_unknown_fields_and_bad_values_are_refused():
    entity = Entity("e", "medication", "Metformin", "", "present", 0, [1], [0, 0, 1, 1], 0.9)
    with pytest.raises(ValueError):
        correct_field(entity, "dose", "a lot")
    with pytest.raises(ValueError):
        correct_field(entity, "assertion", "maybe")
    with pytest.raises(ValueError):
        correct_field(entity, "colour", "blue")
