"""Entity precision and recall of a run against the synthetic corpus gold, by kind.

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
    table = pq.read_table(run_dir / "tables" / "entities.parquet")
    by_document: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        by_document[row["document_id"]].append(row)
    processed = set(pq.read_table(run_dir / "tables" / "pages.parquet", columns=["document_id"])
                    .column("document_id").to_pylist())
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
    scores = {}
    for kind, t in sorted(totals.items()):
        precision = t["tp"] / t["predicted"] if t["predicted"] else 0.0
        recall = t["tp"] / t["gold"] if t["gold"] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[kind] = {"gold": t["gold"], "predicted": t["predicted"], "true_positives": t["tp"],
                        "precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}
    return scores


def render_scores(scores: dict[str, dict[str, float]]) -> str:
    lines = ["| kind | gold | predicted | TP | precision | recall | F1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, s in scores.items():
        lines.append(f"| {kind} | {s['gold']} | {s['predicted']} | {s['true_positives']} | {s['precision']:.3f} | "
                     f"{s['recall']:.3f} | {s['f1']:.3f} |")
    return "\n".join(lines)
