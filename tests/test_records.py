"""Typed records and their row form."""

from __future__ import annotations

from dataclasses import asdict

from pipeline.records import CodeCandidate, Entity, FieldScore


def _entity() -> Entity:
    return Entity(entity_id="e1", kind="medication", text="metformin 500 mg", section="medications",
                  assertion="present", page_index=0, line_ids=[3, 4], bbox=[1.0, 2.0, 3.0, 4.0], ocr_confidence=0.9,
                  dose_value=500.0, dose_unit="mg", code="860975", code_system="rxnorm",
                  candidates=[CodeCandidate("rxnorm", "860975", "metformin 500 MG Oral Tablet", 0.91, "exact")],
                  fields=[FieldScore("dose", "500 mg", 0.8, reasons=["low_confidence"])], flags=["uncoded"])


def test_an_entity_row_is_its_asdict_and_shares_no_list_with_it() -> None:
    entity = _entity()
    row = entity.to_row()

    assert row == asdict(entity)
    assert Entity.from_row(row) == entity
    row["line_ids"].append(9)
    row["candidates"][0]["code"] = "other"
    row["fields"][0]["reasons"].append("changed")
    assert entity.line_ids == [3, 4] and entity.candidates[0].code == "860975"
    assert entity.fields[0].reasons == ["low_confidence"]
