"""Entity precision and recall of a run against the synthetic corpus gold, by kind and by
field, with the confusion table of assertions.

A mention counts as found when its key matches a gold fact of the same document: the
ICD-10-CM code for diagnoses (present ones; negated ones are scored as assertion), the
RxNorm ingredient for medications and allergies, LOINC + value for vitals and labs,
the name for procedures, and name/MRN/birth date for demographics.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

import pyarrow.parquet as pq

from pipeline.store import output_table

KINDS = ("demographic", "diagnosis", "medication", "allergy", "vital", "lab", "procedure")


def _value_key(value: float | None) -> str:
    return "" if value is None else f"{float(value):.2f}"


def gold_keys(gold: dict[str, Any]) -> dict[str, Counter]:
    """The facts of one gold document as comparable keys, by entity kind."""
    patient = gold["patient"]
    keys: dict[str, Counter] = {kind: Counter() for kind in KINDS}
    keys["demographic"].update({("name", f"{patient['given']} {patient['family']}"), ("mrn", patient["mrn"]),
                                ("birth_date", patient["birth_date"])})
    for dx in gold["diagnoses"]:
        if dx["assertion"] == "present":
            keys["diagnosis"][dx["code"]] += 1
        else:
            keys[f"diagnosis:{dx['assertion']}"] = keys.get(f"diagnosis:{dx['assertion']}", Counter())
            keys[f"diagnosis:{dx['assertion']}"][dx["code"]] += 1
    for med in gold["medications"]:
        keys["medication"][med["ingredient_rxcui"]] += 1
    for allergy in gold["allergies"]:
        keys["allergy"][allergy["rxcui"] or allergy["substance"].lower()] += 1
    for vital in gold["vitals"]:
        keys["vital"][(vital["loinc"], _value_key(vital["value"]), vital["unit"])] += 1
    for lab in gold["labs"]:
        keys["lab"][(lab["loinc"], _value_key(lab["value"]), lab["unit"])] += 1
    for procedure in gold["procedures"]:
        keys["procedure"][procedure["text"].lower()] += 1
    return keys


def predicted_keys(entities: Iterable[dict[str, Any]]) -> dict[str, Counter]:
    keys: dict[str, Counter] = defaultdict(Counter)
    demographics = set()
    for e in entities:
        kind = e["kind"]
        if kind == "demographic":
            if e["attribute"] in ("name", "mrn", "birth_date"):
                demographics.add((e["attribute"], e["value"]))
        elif kind == "diagnosis":
            if e["assertion"] in ("present", "historical"):
                keys["diagnosis"][e["code"] or f"uncoded:{e['text'].lower()}"] += 1
            else:
                keys[f"diagnosis:{e['assertion']}"][e["code"] or e["text"].lower()] += 1
        elif kind == "medication":
            keys["medication"][e["ingredient_code"] or e["code"] or e["text"].lower()] += 1
        elif kind == "allergy" and e["assertion"] != "negated":
            keys["allergy"][e["ingredient_code"] or e["code"] or e["text"].lower()] += 1
        elif kind in ("vital", "lab"):
            keys[kind][(e["code"], _value_key(e["value_num"]), e["unit"])] += 1
        elif kind == "procedure":
            keys["procedure"][e["text"].lower()] += 1
    keys["demographic"] = Counter(demographics)
    return keys


def evaluate_run(run_dir: Path, gold_dir: Path) -> dict[str, dict[str, float]]:
    """Micro precision/recall/F1 per kind over the documents the run processed."""
    by_document = _entities_by_document(run_dir)
    processed = _processed_documents(run_dir)
    totals: dict[str, Counter] = defaultdict(Counter)
    for gold_path in sorted(gold_dir.glob("*.json")):
        gold = json.loads(gold_path.read_text())
        if gold["document_id"] not in processed:
            continue
        expected = gold_keys(gold)
        found = predicted_keys(by_document.get(gold["document_id"], []))
        for kind in set(expected) | set(found):
            hits = sum((expected.get(kind, Counter()) & found.get(kind, Counter())).values())
            totals[kind]["tp"] += hits
            totals[kind]["gold"] += sum(expected.get(kind, Counter()).values())
            totals[kind]["predicted"] += sum(found.get(kind, Counter()).values())
    return {kind: _prf(t["gold"], t["predicted"], t["tp"]) for kind, t in sorted(totals.items())}


def _entities_by_document(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    by_document: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in pq.read_table(output_table(run_dir / "tables", "entities")).to_pylist():
        by_document[row["document_id"]].append(row)
    return by_document


def _processed_documents(run_dir: Path) -> set[str]:
    return set(pq.read_table(output_table(run_dir / "tables", "pages"), columns=["document_id"])
               .column("document_id").to_pylist())


def render_scores(scores: dict[str, dict[str, float]]) -> str:
    """A Markdown table of per-kind (or per-field) scores."""
    lines = ["| kind | gold | predicted | TP | precision | recall | F1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, s in scores.items():
        lines.append(f"| {kind} | {s['gold']} | {s['predicted']} | {s['true_positives']} | {s['precision']:.3f} | "
                     f"{s['recall']:.3f} | {s['f1']:.3f} |")
    return "\n".join(lines)


# Per-field scoring ---------------------------------------------------------------------

# Gold fact lists -> the entity kind they are extracted as.
GOLD_KINDS = {"diagnoses": "diagnosis", "medications": "medication", "allergies": "allergy", "vitals": "vital",
              "labs": "lab", "procedures": "procedure"}
# Gold field -> the entity field that carries it, where the names differ.
FIELD_ALIASES = {"value": "value_num", "low": "reference_low", "high": "reference_high", "flag": "interpretation",
                 "reaction": "value", "date": "value"}
# Gold fields that identify a fact (they pair gold with predictions) or describe the page.
IDENTITY_FIELDS = {"text", "name", "code", "loinc", "rxcui", "ingredient_rxcui", "scd_rxcui", "substance",
                   "page_index", "section", "checkbox"}
ASSERTIONS = ("present", "negated", "historical", "family", "hypothetical")
MISSED, SPURIOUS = "(missed)", "(spurious)"


def _gold_identity(kind: str, fact: dict[str, Any]) -> str:
    if kind == "diagnosis":
        return fact["code"]
    if kind == "medication":
        return fact["ingredient_rxcui"]
    if kind == "allergy":
        return fact["rxcui"] or fact["substance"].lower()
    if kind in ("vital", "lab"):
        return fact["loinc"]
    return fact["text"].lower()


def _predicted_identity(entity: dict[str, Any]) -> str:
    if entity["kind"] in ("medication", "allergy"):
        return entity["ingredient_code"] or entity["code"] or entity["text"].lower()
    if entity["kind"] == "procedure":
        return entity["text"].lower()
    return entity["code"] or entity["text"].lower()


def _same(gold: Any, predicted: Any) -> bool:
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        return predicted is not None and abs(float(gold) - float(predicted)) < 0.005
    return str(gold).strip().lower() == str(predicted).strip().lower()


def _pair(gold: list[dict[str, Any]], predicted: list[dict[str, Any]], kind: str
          ) -> tuple[list[tuple[dict, dict]], list[dict], list[dict]]:
    """(gold, predicted) pairs by identity in page order; unpaired gold; unpaired predictions."""
    waiting: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entity in predicted:
        waiting[_predicted_identity(entity)].append(entity)
    pairs, missed = [], []
    for fact in gold:
        candidates = waiting.get(_gold_identity(kind, fact))
        if candidates:
            pairs.append((fact, candidates.pop(0)))
        else:
            missed.append(fact)
    return pairs, missed, [e for entities in waiting.values() for e in entities]


class FieldScores:
    """Per (kind, field) counts and the assertion confusion, accumulated over documents.

    For a field, gold counts the facts that state it, predicted the extracted entities of
    that kind that state it, and a true positive is a gold fact paired (by code) with an
    entity carrying the same value. Fields are read from the gold, so any field a gold
    fact carries is scored once the entity has a field of that name (or alias).
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.confusion: dict[str, Counter] = defaultdict(Counter)

    def add_document(self, gold: dict[str, Any], entities: list[dict[str, Any]]) -> None:
        for gold_key, kind in GOLD_KINDS.items():
            facts = gold.get(gold_key) or []
            predicted = [e for e in entities if e["kind"] == kind]
            pairs, missed, spurious = _pair(facts, predicted, kind)
            fields = sorted({name for fact in facts for name in fact} - IDENTITY_FIELDS)
            for name in fields:
                entity_field = FIELD_ALIASES.get(name, name)
                counts = self.counts[(kind, name)]
                counts["gold"] += sum(1 for fact in facts if fact.get(name) is not None)
                counts["predicted"] += sum(1 for e in predicted if e.get(entity_field) is not None)
                counts["tp"] += sum(1 for fact, e in pairs if fact.get(name) is not None
                                    and e.get(entity_field) is not None and _same(fact[name], e[entity_field]))
            if kind == "diagnosis":
                for fact, entity in pairs:
                    self.confusion[fact["assertion"]][entity["assertion"]] += 1
                for fact in missed:
                    self.confusion[fact["assertion"]][MISSED] += 1
                for entity in spurious:
                    self.confusion[SPURIOUS][entity["assertion"]] += 1

    def scores(self) -> dict[str, dict[str, float]]:
        out = {}
        for (kind, name), c in sorted(self.counts.items()):
            out[f"{kind}.{name}"] = _prf(c["gold"], c["predicted"], c["tp"])
        return out

    def confusion_table(self) -> dict[str, dict[str, int]]:
        rows = [a for a in ASSERTIONS if a in self.confusion] + ([SPURIOUS] if SPURIOUS in self.confusion else [])
        columns = list(ASSERTIONS) + [MISSED]
        return {row: {column: self.confusion[row][column] for column in columns} for row in rows}


def _prf(gold: int, predicted: int, tp: int) -> dict[str, float]:
    precision = tp / predicted if predicted else 0.0
    recall = tp / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"gold": gold, "predicted": predicted, "true_positives": tp,
            "precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}


def evaluate_fields(run_dir: Path, gold_dir: Path) -> FieldScores:
    """Per-field scores and the assertion confusion of a run's entities against the gold."""
    by_document = _entities_by_document(run_dir)
    processed = _processed_documents(run_dir)
    scores = FieldScores()
    for gold_path in sorted(gold_dir.glob("*.json")):
        gold = json.loads(gold_path.read_text())
        if gold["document_id"] in processed:
            scores.add_document(gold, by_document.get(gold["document_id"], []))
    return scores


def render_confusion(table: dict[str, dict[str, int]]) -> str:
    columns = list(ASSERTIONS) + [MISSED]
    lines = ["| gold \\ predicted | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for row, counts in table.items():
        lines.append(f"| {row} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    return "\n".join(lines)
