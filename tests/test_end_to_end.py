"""The whole graph on local Ray: generated records in, FHIR compared with the gold out.

Runs the real OCR model on the scanned pages (tens of seconds on two cores).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fhir.resources.R4B import get_fhir_model_class

from pipeline.config import load_config
from pipeline.run import run_pipeline
from pipeline.synth.corpus import generate_corpus
from terminology_index import ICD10CM, LOINC, RXNORM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, terminology_index_path: Path):
    import ray

    root = tmp_path_factory.mktemp("e2e")
    # Seed 3: a born-digital discharge summary (2 pages, a procedure), a scanned 2-page
    # progress note (OCR), a born-digital lab report; plus the five kinds of bad file.
    corpus = generate_corpus(root / "corpus", n_documents=3, seed=3, born_digital_share=0.5,
                             document_types=("discharge_summary", "progress_note", "lab_report"),
                             include_bad_files=True)
    cfg = load_config([
        f"input={corpus['records']}", f"output={root / 'out'}",
        f"terminology.index_path={terminology_index_path}", "terminology.sources.embed_kinds=[]",
        f"ocr.model_dir={root / 'models'}",
        "writer.progress=false", "validate.today=2026-11-01",
    ])
    report = run_pipeline(cfg)
    yield report, root / "out", Path(corpus["gold"])
    ray.shutdown()


def _resources(out: Path, resource_type: str) -> list[dict]:
    # Part files per type, sharded by patient (`<Type>.part-NNNN.ndjson`).
    return [json.loads(line) for path in sorted((out / "fhir").glob(f"{resource_type}.*.ndjson"))
            for line in path.read_text().splitlines()]


def _golds(gold_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(gold_dir.glob("*.json"))]


def _codes(resource: dict, path: str, system: str) -> set[str]:
    concept = resource[path]
    return {c["code"] for c in concept.get("coding", []) if c["system"] == system}


def test_every_page_is_accounted_for(finished_run):
    report, out, _ = finished_run
    assert report.pages_in == 5 + 5  # five good pages, five bad files
    assert report.conserved and report.pages_processed == 5 and report.pages_quarantined == 5
    quarantine = pq.read_table(out / "quarantine.parquet").to_pylist()
    by_file = {Path(row["source_uri"]).name: row for row in quarantine}
    assert {name: (row["stage"], row["error_type"]) for name, row in by_file.items()} == {
        "corrupt.pdf": ("render", "corrupt_file"),
        "encrypted.pdf": ("render", "encrypted"),
        "empty.png": ("render", "empty_file"),
        "truncated.jpg": ("render", "corrupt_file"),
        "unsupported.docx": ("render", "unsupported_media_type"),
    }
    pages = pq.read_table(out / "tables" / "pages").to_pylist()
    assert {p["text_source"] for p in pages} == {"ocr", "text_layer"}  # both paths ran
    summary = json.loads((out / "report.json").read_text())
    assert summary["pages_in"] == summary["pages_processed"] + summary["pages_quarantined"]


def test_every_resource_validates_and_the_manifest_counts_them(finished_run):
    _, out, _ = finished_run
    manifest = json.loads((out / "fhir" / "manifest.json").read_text())
    assert manifest["output"]
    for entry in manifest["output"]:
        lines = (out / "fhir" / entry["url"]).read_text().splitlines()
        assert len(lines) == entry["count"]
        model = get_fhir_model_class(entry["type"])
        for line in lines:
            model.model_validate_json(line)


def test_patients_are_joined_across_documents(finished_run):
    _, out, gold_dir = finished_run
    golds = _golds(gold_dir)
    patients = _resources(out, "Patient")
    assert len(patients) == len({g["patient"]["mrn"] for g in golds})
    by_mrn = {p["identifier"][0]["value"]: p for p in patients}
    for gold in golds:
        patient = by_mrn[gold["patient"]["mrn"]]
        assert patient["birthDate"] == gold["patient"]["birth_date"]
        assert patient["name"][0]["family"] == gold["patient"]["family"]


def _patient_ids(out: Path) -> dict[str, str]:
    return {p["identifier"][0]["value"]: f"Patient/{p['id']}" for p in _resources(out, "Patient")}


def test_diagnoses_carry_their_icd10cm_codes_and_negations_are_not_conditions(finished_run):
    _, out, gold_dir = finished_run
    patient_ref = _patient_ids(out)
    conditions = defaultdict(set)
    for condition in _resources(out, "Condition"):
        conditions[condition["subject"]["reference"]] |= _codes(condition, "code", ICD10CM)
    checked = 0
    for gold in _golds(gold_dir):
        coded = conditions[patient_ref[gold["patient"]["mrn"]]]
        for dx in gold["diagnoses"]:
            if dx["assertion"] == "present":
                assert dx["code"] in coded, f"{gold['file']}: {dx['code']} missing"
                checked += 1
            elif dx["assertion"] == "negated":
                present_elsewhere = any(d["code"] == dx["code"] and d["assertion"] == "present"
                                        for g in _golds(gold_dir) for d in g["diagnoses"])
                if not present_elsewhere:
                    assert dx["code"] not in coded, f"negated {dx['code']} written as a Condition"
    assert checked >= 4


def test_vital_values_and_units_match_the_gold(finished_run):
    _, out, gold_dir = finished_run
    observed = set()
    for observation in _resources(out, "Observation"):
        if observation.get("valueQuantity"):
            for code in _codes(observation, "code", LOINC):
                q = observation["valueQuantity"]
                observed.add((code, round(float(q["value"]), 2), q["code"], q["system"]))
        for component in observation.get("component", []):
            for code in _codes(component, "code", LOINC):
                q = component["valueQuantity"]
                observed.add((code, round(float(q["value"]), 2), q["code"], q["system"]))
    vitals = [v for g in _golds(gold_dir) for v in g["vitals"]]
    labs = [lab for g in _golds(gold_dir) for lab in g["labs"]]
    assert vitals and labs
    for fact in vitals + labs:
        assert (fact["loinc"], round(float(fact["value"]), 2), fact["unit"], "http://unitsofmeasure.org") in observed, fact


def test_medications_carry_rxnorm_codes(finished_run):
    _, out, gold_dir = finished_run
    patient_ref = _patient_ids(out)
    coded = defaultdict(set)
    for request in _resources(out, "MedicationRequest"):
        assert request["intent"] == "plan"
        coded[request["subject"]["reference"]] |= _codes(request, "medicationCodeableConcept", RXNORM)
    for gold in _golds(gold_dir):
        for medication in gold["medications"]:
            assert medication["scd_rxcui"] in coded[patient_ref[gold["patient"]["mrn"]]], medication


def test_provenance_traces_resources_to_page_and_box(finished_run):
    _, out, _ = finished_run
    provenances = _resources(out, "Provenance")
    documents = {f"DocumentReference/{d['id']}" for d in _resources(out, "DocumentReference")}
    assert provenances and {p["entity"][0]["what"]["reference"] for p in provenances} <= documents
    extensions = [ext["url"] for p in provenances for target in p["target"] for ext in target.get("extension", [])]
    assert "urn:medrec:fhir:extension:source-page" in extensions
    assert "urn:medrec:fhir:extension:source-bbox" in extensions


def test_family_history_is_written_as_family_member_history(finished_run):
    _, out, gold_dir = finished_run
    patient_ref = _patient_ids(out)
    histories = defaultdict(set)
    for history in _resources(out, "FamilyMemberHistory"):
        assert history["relationship"]["coding"][0]["code"] == "MTH"  # the corpus writes "Mother with ..."
        for condition in history["condition"]:
            histories[history["patient"]["reference"]] |= _codes(condition, "code", ICD10CM)
    family = [(gold, dx) for gold in _golds(gold_dir) for dx in gold["diagnoses"] if dx["assertion"] == "family"]
    assert family
    for gold, dx in family:
        assert dx["code"] in histories[patient_ref[gold["patient"]["mrn"]]], f"{gold['file']}: family {dx['code']}"


def test_review_queue_lists_every_flagged_entity_worst_first(finished_run):
    report, out, _ = finished_run
    queue = pq.read_table(out / "tables" / "review_queue").to_pylist()
    entities = pq.read_table(out / "tables" / "entities").to_pylist()
    flagged = {e["entity_id"] for e in entities if e["requires_review"]}
    assert {row["entity_id"] for row in queue} == flagged
    for part in (out / "tables" / "review_queue").glob("part-*.parquet"):  # worst first in each part
        priorities = pq.read_table(part, columns=["priority"]).column("priority").to_pylist()
        assert priorities == sorted(priorities, reverse=True)
    assert all(len(row["bbox"]) == 4 and row["reason"] for row in queue)
    assert report.review_queue_fields == len(queue)
