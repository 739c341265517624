"""Evaluator: per-field scores and the assertion confusion table on hand-made gold and predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.evaluate import MISSED, SPURIOUS, FieldScores, evaluate_fields, render_confusion

GOLD = {
    "document_id": "doc-1",
    "diagnoses": [
        {"text": "Hypertension", "code": "I10", "assertion": "present", "section": "assessment", "page_index": 0},
        {"text": "chest pain", "code": "R07.9", "assertion": "negated", "section": "subjective", "page_index": 0},
        {"text": "Asthma", "code": "J45.909", "assertion": "family", "section": "family history", "page_index": 0},
        {"text": "Gout", "code": "M10.9", "assertion": "present", "section": "assessment", "page_index": 0},
    ],
    "medications": [{"text": "Metformin 500 mg", "ingredient_rxcui": "6809", "dose_value": 500, "dose_unit": "mg",
                     "route": "PO", "frequency": "BID", "section": "plan"}],
    "labs": [{"name": "Glucose", "loinc": "2345-7", "value": 67, "unit": "mg/dL", "low": 70, "high": 99, "flag": "L"},
             {"name": "Potassium", "loinc": "2823-3", "value": 5.9, "unit": "mmol/L", "low": None, "high": None,
              "flag": "H"}],
}


def entity(kind: str, code: str | None, **fields) -> dict:
    row = {"kind": kind, "code": code, "ingredient_code": None, "text": fields.pop("text", code or ""),
           "assertion": "present", "value": None, "value_num": None, "unit": None, "reference_low": None,
           "reference_high": None, "interpretation": None, "dose_value": None, "dose_unit": None, "route": None,
           "frequency": None}
    row.update(fields)
    return row


PREDICTED = [
    entity("diagnosis", "I10"),
    entity("diagnosis", "R07.9", assertion="present"),  # negation missed
    entity("diagnosis", "J45.909", assertion="family"),
    entity("diagnosis", "E11.9", assertion="present"),  # not in the gold
    # Gout not found
    entity("medication", "861007", ingredient_code="6809", dose_value=500.0, dose_unit="mg", route="PO",
           frequency="TID"),  # frequency wrong
    entity("lab", "2345-7", value_num=67.0, unit="mg/dL", reference_low=70.0, reference_high=99.0,
           interpretation="N"),  # flag read from the wrong place
    entity("lab", "2823-3", value_num=5.9, unit="mmol/L", interpretation="H"),
]


@pytest.fixture()
def scores() -> FieldScores:
    scores = FieldScores()
    scores.add_document(GOLD, PREDICTED)
    return scores


def test_each_gold_field_is_scored_against_the_paired_entity(scores: FieldScores) -> None:
    s = scores.scores()

    assert s["medication.dose_value"] == {"gold": 1, "predicted": 1, "true_positives": 1, "precision": 1.0,
                                          "recall": 1.0, "f1": 1.0}
    assert s["medication.frequency"]["true_positives"] == 0 and s["medication.route"]["f1"] == 1.0
    assert s["lab.flag"] == {"gold": 2, "predicted": 2, "true_positives": 1, "precision": 0.5, "recall": 0.5,
                             "f1": 0.5}
    assert s["lab.low"]["gold"] == 1 and s["lab.low"]["true_positives"] == 1  # a gold None is not counted
    assert s["lab.value"]["f1"] == 1.0 and s["lab.unit"]["f1"] == 1.0
    # Assertion: 4 gold, 4 predicted diagnoses; I10 and the family asthma agree.
    assert s["diagnosis.assertion"] == {"gold": 4, "predicted": 4, "true_positives": 2, "precision": 0.5,
                                        "recall": 0.5, "f1": 0.5}
    assert not any(name.endswith((".text", ".code", ".section", ".loinc")) for name in s)


def test_assertion_confusion_counts_pairs_misses_and_spurious_mentions(scores: FieldScores) -> None:
    table = scores.confusion_table()

    assert table["present"]["present"] == 1 and table["present"][MISSED] == 1  # I10 found, gout missed
    assert table["negated"]["present"] == 1 and table["negated"]["negated"] == 0
    assert table["family"]["family"] == 1
    assert table[SPURIOUS]["present"] == 1
    assert list(table) == ["present", "negated", "family", SPURIOUS]
    markdown = render_confusion(table)
    assert "| negated | 1 | 0 | 0 | 0 | 0 | 0 |" in markdown


def test_a_field_the_gold_gains_later_is_scored_without_code_changes() -> None:
    gold = {"document_id": "doc-1", "medications": [{"text": "Metformin", "ingredient_rxcui": "6809", "route": "PO",
                                                     "dose_unit": "mg", "attribute": "Metformin"}]}
    scores = FieldScores()
    scores.add_document(gold, [entity("medication", None, ingredient_code="6809", route="PO", attribute="metformin")])

    assert scores.scores()["medication.attribute"]["f1"] == 1.0
    assert scores.scores()["medication.dose_unit"]["recall"] == 0.0


def test_evaluate_fields_reads_a_run_folder(tmp_path: Path) -> None:
    tables = tmp_path / "run" / "tables"
    tables.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"document_id": "doc-1", **e} for e in PREDICTED]), tables / "entities.parquet")
    pq.write_table(pa.Table.from_pylist([{"document_id": "doc-1"}]), tables / "pages.parquet")
    gold_dir = tmp_path / "gold"
    gold_dir.mkdir()
    (gold_dir / "doc-1.json").write_text(json.dumps(GOLD))
    (gold_dir / "doc-2.json").write_text(json.dumps({**GOLD, "document_id": "doc-2"}))  # not run

    scores = evaluate_fields(tmp_path / "run", gold_dir)

    assert scores.scores()["medication.dose_value"]["gold"] == 1
