"""`medrec apply-review OUT`: the decisions in force written into the output folder.

What it does, as a function of (the entities the run wrote, the decision log) only, so
applying the same decisions again writes the same bytes:
- The first apply keeps the run's entities table as `review/entities.before-review.parquet`;
  every apply starts from that copy (a later run that rewrites the table starts a new one).
- Per entity, in log order: a correction sets the field's value (or the chosen code), an
  accept confirms it, a reject removes the entity. An entity all of whose queue items are
  decided no longer requires review and carries the flag `reviewed`.
- `tables/entities.parquet` is rewritten from the copy with those changes.
- Every patient an entity with a decision belongs to is assembled again, before and after
  the changes, with the pipeline's own assembler and the run's versions; the before ids,
  the after ids and every review Provenance id of that patient leave the NDJSON files,
  the after resources go in. Resources made from reviewed entities carry the meta tag
  `reviewed` and verificationStatus `confirmed` where their type has one; each accept or
  correction gets a Provenance with the reviewer as agent (type verifier).
- `fhir/manifest.json` counts are updated; resources a correction made invalid go to
  `review/quarantine.parquet` (rewritten by each apply), never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fhir.resources.R4B import get_fhir_model_class

from pipeline.assemble import vocabulary as vocab
from pipeline.assemble.fhir import TAG_REVIEW_SYSTEM, AssembledResource, assemble_patient, resource_id
from pipeline.records import CodeCandidate, DocumentBundle, Entity, FieldScore
from pipeline.review.store import REVIEW_DIR, DecisionLog, item_id_of, item_states
from pipeline.schemas import ENTITIES_TABLE_SCHEMA, ENTITY_FIELDS, QUARANTINE_SCHEMA

SNAPSHOT_FILE = "entities.before-review.parquet"
STATE_FILE = "applied.json"
REVIEW_QUARANTINE_FILE = "quarantine.parquet"
REVIEWED_FLAG = "reviewed"
ASSERTIONS = ("present", "negated", "historical", "family", "hypothetical")
# Entity kinds and the resource types an entity of that kind becomes (ids from its own id).
RESOURCE_TYPES = {
    "diagnosis": ("Condition", "FamilyMemberHistory"),
    "medication": ("MedicationRequest",),
    "allergy": ("AllergyIntolerance",),
    "vital": ("Observation",),
    "lab": ("Observation",),
    "procedure": ("Procedure",),
}
VERIFIED_TYPES = {"Condition": vocab.CONDITION_VERIFICATION, "AllergyIntolerance": vocab.ALLERGY_VERIFICATION}
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
REVIEWER_SYSTEM = "urn:medrec:reviewer"
_ENTITY_COLUMNS = [f.name for f in ENTITY_FIELDS]
_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(.*?)\s*$")
_RANGE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(?:-|–|to)\s*([-+]?\d+(?:\.\d+)?)\s*$")


@dataclass
class ApplyResult:
    """What one apply did; `changed` is False when the outputs already held the decisions."""

    decisions_in_force: int
    entities_confirmed: int
    entities_corrected: int
    entities_rejected: int
    patients_reassembled: int
    resources_written: int
    review_provenance: int
    resources_failed: int
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def correct_field(entity: Entity, field_name: str, value: str) -> None:
    """Set a reviewed value on the entity column(s) the field stands for; an unknown field raises."""
    value = value.strip()
    if entity.kind in ("demographic", "encounter") and field_name in (entity.attribute, "date", "value"):
        entity.value = value
    elif field_name in ("text", "name", "substance", "entity"):
        entity.text = value
    elif field_name == "value":
        entity.value = value
        if entity.kind in ("lab", "vital"):
            number = _NUMBER.match(value)
            entity.value_num = float(number.group(1)) if number else None
    elif field_name in ("unit", "route", "frequency", "severity"):
        setattr(entity, field_name, value or None)
    elif field_name in ("reaction", "date"):
        entity.value = value or None
    elif field_name in ("dose", "duration"):
        number = _NUMBER.match(value)
        if not number:
            raise ValueError(f"{field_name} needs a number and a unit")
        amount, unit = float(number.group(1)), number.group(2) or None
        if field_name == "dose":
            entity.dose_value, entity.dose_unit = amount, unit
        else:
            entity.duration_value, entity.duration_unit = amount, unit
    elif field_name == "reference_range":
        entity.reference_text = value or None
        bounds = _RANGE.match(value)
        entity.reference_low, entity.reference_high = (float(bounds.group(1)), float(bounds.group(2))) if bounds else (None, None)
    elif field_name == "assertion":
        if value not in ASSERTIONS:
            raise ValueError(f"assertion must be one of {ASSERTIONS}")
        entity.assertion = value
    else:
        raise ValueError(f"field {field_name!r} cannot be corrected as a value")
    _settle_field(entity, field_name, value)


def correct_code(entity: Entity, system: str, code: str, display: str | None) -> None:
    """The reviewer's code becomes the chosen one (score 1: a person chose it)."""
    entity.code, entity.code_system, entity.code_display, entity.code_score = code, system, display, 1.0
    if not any(c.system == system and c.code == code for c in entity.candidates):
        entity.candidates = [CodeCandidate(system, code, display or "", 1.0, "reviewer"), *entity.candidates]
    entity.flags = [f for f in entity.flags if f != "uncoded"]
    _settle_field(entity, "code", code)


def _settle_field(entity: Entity, field_name: str, value: str | None) -> None:
    """A reviewed field is certain and has nothing left to explain."""
    for f in entity.fields:
        if f.name == field_name:
            f.value, f.confidence, f.reasons = value, 1.0, []
            return
    entity.fields.append(FieldScore(field_name, value, 1.0, [], base=1.0))


def apply_review(output: Path) -> ApplyResult:
    """Write the decisions in force into `output` (see the module docstring)."""
    output = Path(output).resolve()
    review_dir, tables = output / REVIEW_DIR, output / "tables"
    entities_path = tables / "entities.parquet"
    if entities_path.is_dir():
        # A store output keeps its tables and FHIR as patient-shard parts, which a later run
        # rewrites; applying decisions there is not built yet (README, Output).
        raise NotImplementedError("apply-review writes single-file outputs only; this output keeps its tables "
                                  "as patient-shard part folders")
    snapshot = review_dir / SNAPSHOT_FILE
    state_path = review_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    previously_written = set(state.get("written_ids", []))
    if not snapshot.is_file() or state.get("entities_sha256") != _sha256(entities_path):
        # First apply, or a run rewrote the table (and the FHIR) since: its rows are the new baseline.
        review_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entities_path, snapshot.with_suffix(".tmp"))
        os.replace(snapshot.with_suffix(".tmp"), snapshot)
        previously_written = set()

    decisions = DecisionLog(output).rows()
    states = item_states(decisions)
    in_force = sorted((s.decision for s in states.values() if s.decision and s.decision["action"] != "skip"),
                      key=lambda d: (d["decided_at"], d["decision_id"]))
    touched = {(d["facility_id"], d["document_id"], d["entity_id"]) for d in decisions if d.get("entity_id")}
    base = _entity_rows(snapshot, touched)
    entities: dict[tuple[str, str, str], Entity] = {
        key: Entity.from_row({c: row[c] for c in _ENTITY_COLUMNS}) for key, row in base.items()}
    pending = _undecided_items(tables / "review_queue.parquet", touched, states)

    rejected: set[tuple[str, str, str]] = set()
    corrected: set[tuple[str, str, str]] = set()
    by_entity: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for d in in_force:
        key = (d["facility_id"], d["document_id"], d["entity_id"])
        entity = entities.get(key)
        if entity is None:
            continue  # the entity left the table in a later run: nothing to apply it to
        by_entity[key].append(d)
        if d["action"] == "reject":
            rejected.add(key)
        elif d["action"] == "correct":
            corrected.add(key)
            if d.get("code_after"):
                correct_code(entity, d["code_system_after"], d["code_after"], d.get("code_display_after"))
            else:
                correct_field(entity, d["field"], d.get("value_after") or "")
        else:
            _settle_field(entity, d["field"], next((f.value for f in entity.fields if f.name == d["field"]), d.get("value_before")))
    reviewed = {key for key in by_entity if key not in rejected and not pending.get(key)}
    for key in reviewed:
        entity = entities[key]
        entity.requires_review = False
        if REVIEWED_FLAG not in entity.flags:
            entity.flags.append(REVIEWED_FLAG)

    changed_rows = {key: {**base[key], **entities[key].to_row()} for key in by_entity if key not in rejected}
    _rewrite_entities(snapshot, entities_path, changed_rows, rejected)

    fhir = _reassemble(output, snapshot, base, entities, by_entity, rejected, reviewed, decisions, previously_written)
    result = ApplyResult(
        decisions_in_force=len(in_force), entities_confirmed=len(reviewed),
        entities_corrected=len(corrected - rejected), entities_rejected=len(rejected),
        patients_reassembled=fhir["patients"], resources_written=fhir["written"],
        review_provenance=fhir["provenance"], resources_failed=fhir["failed"], changed=False)
    new_state = {"entities_sha256": _sha256(entities_path), "fhir_sha256": fhir["sha256"],
                 "decisions": len(decisions), "written_ids": fhir["written_ids"], "result": {k: v for k, v in result.to_dict().items() if k != "changed"}}
    result.changed = new_state != state
    temp = state_path.with_suffix(".tmp")
    temp.write_text(json.dumps(new_state, indent=1, sort_keys=True))
    os.replace(temp, state_path)
    return result


# ---------------------------------------------------------------------- entities


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entity_rows(path: Path, keys: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Rows of the entities with decisions, by (facility, document, entity id)."""
    if not keys:
        return {}
    table = pq.read_table(path, filters=[("entity_id", "in", sorted({k[2] for k in keys}))])
    return {k: r for r in table.to_pylist() if (k := (r["facility_id"], r["document_id"], r["entity_id"])) in keys}


def _undecided_items(queue_path: Path, keys: set[tuple[str, str, str]], states: dict) -> dict[tuple[str, str, str], int]:
    """Per entity with decisions: its queue items still open or skipped."""
    if not keys or not queue_path.is_file():
        return {}
    table = pq.read_table(queue_path, columns=["facility_id", "document_id", "entity_id", "field", "reason"],
                          filters=[("entity_id", "in", sorted({k[2] for k in keys}))])
    pending: Counter[tuple[str, str, str]] = Counter()
    for row in table.to_pylist():
        key = (row["facility_id"], row["document_id"], row["entity_id"])
        item = item_id_of(row["facility_id"], row["document_id"], row["entity_id"], row["field"], row["reason"])
        state = states.get(item)
        if key in keys and (state is None or state.status != "done"):
            pending[key] += 1
    return pending


def _rewrite_entities(snapshot: Path, target: Path, changed: dict, rejected: set) -> None:
    """The snapshot with changed rows replaced and rejected rows left out, batch by batch."""
    temp = target.with_name(target.name + ".tmp")
    source = pq.ParquetFile(snapshot)
    with pq.ParquetWriter(temp, ENTITIES_TABLE_SCHEMA) as writer:
        for batch in source.iter_batches(batch_size=8192):
            if not changed and not rejected:
                writer.write_table(pa.Table.from_batches([batch]).cast(ENTITIES_TABLE_SCHEMA))
                continue
            rows = []
            for row in batch.to_pylist():
                key = (row["facility_id"], row["document_id"], row["entity_id"])
                if key in rejected:
                    continue
                rows.append(changed.get(key, row))
            writer.write_table(pa.Table.from_pylist(rows, schema=ENTITIES_TABLE_SCHEMA))
    os.replace(temp, target)


# ---------------------------------------------------------------------- FHIR


def _reassemble(output: Path, snapshot: Path, base: dict, entities: dict, by_entity: dict, rejected: set,
                reviewed: set, decisions: list[dict[str, Any]], previously_written: set[str]) -> dict[str, Any]:
    """Touched patients assembled before and after review; their resources replaced in the NDJSON.
    `previously_written`: ids the last apply wrote (a since-undone correction may have made one
    neither assembly makes now)."""
    fhir_dir = output / "fhir"
    manifest_path = fhir_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    touched_patients = sorted({row["patient_key"] for row in base.values()})
    decisions_by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in decisions:
        key = (d.get("facility_id"), d.get("document_id"), d.get("entity_id"))
        if key in base:
            decisions_by_patient[base[key]["patient_key"]].append(d)

    patient_rows = (pq.read_table(snapshot, filters=[("patient_key", "in", touched_patients)]).to_pylist()
                    if touched_patients else [])
    documents = _document_context(output, {(r["facility_id"], r["document_id"]) for r in patient_rows})
    versions = (manifest["pipeline_version"], manifest["terminology_version"], manifest["transactionTime"])
    remove: set[str] = set(previously_written)
    new: list[AssembledResource] = []
    failures: list[dict[str, Any]] = []
    provenance = 0
    for patient_key in touched_patients:
        rows = [r for r in patient_rows if r["patient_key"] == patient_key]
        before = assemble_patient(patient_key, _bundles(patient_key, rows, documents, None, set()), *versions[:2],
                                  recorded=versions[2])
        after = assemble_patient(patient_key, _bundles(patient_key, rows, documents, entities, rejected), *versions[:2],
                                 recorded=versions[2])
        remove |= {r.resource_id for r in before.resources} | {r.resource_id for r in after.resources}
        remove |= {resource_id(patient_key, "Provenance", "review", d["decision_id"]) for d in decisions_by_patient[patient_key]}
        written = {r.resource_id: r for r in after.resources}
        marked = _mark_reviewed(written, patient_key, entities,
                                [k for k in reviewed if base[k]["patient_key"] == patient_key], base, rows)
        new += marked.values()
        failures += [{"facility_id": f.facility_id, "document_id": f.document_id, "page_index": f.page_index,
                      "source_uri": None, "stage": "apply-review", "error_type": f.error_type, "message": f.message,
                      "resource_type": f.resource_type} for f in after.failures]
        for key, key_decisions in sorted(by_entity.items()):
            if base[key]["patient_key"] != patient_key or key in rejected:
                continue
            targets = _entity_resource_ids(patient_key, entities[key], key, base, rows) & set(marked)
            source = document_reference_id(patient_key, key)
            for d in key_decisions:
                if d["action"] in ("accept", "correct") and targets:
                    new.append(_review_provenance(patient_key, d, sorted(targets), marked,
                                                  source if source in marked else None))
                    provenance += 1

    counts = _rewrite_ndjson(fhir_dir, manifest, remove, new)
    manifest["output"] = [{**entry, "count": counts.get(entry["url"], 0)} for entry in manifest["output"]]
    known = {entry["url"] for entry in manifest["output"]}
    manifest["output"] += [{"type": url.removesuffix(".ndjson"), "url": url, "count": n}
                           for url, n in sorted(counts.items()) if url not in known]
    _write_text(manifest_path, json.dumps(manifest, indent=1))
    quarantine = output / REVIEW_DIR / REVIEW_QUARANTINE_FILE
    pq.write_table(pa.Table.from_pylist(failures, schema=QUARANTINE_SCHEMA), quarantine)
    digest = hashlib.sha256()
    for entry in manifest["output"]:
        digest.update(_sha256(fhir_dir / entry["url"]).encode())
    return {"patients": len(touched_patients), "written": len(new), "provenance": provenance,
            "failed": len(failures), "sha256": digest.hexdigest(), "written_ids": sorted(r.resource_id for r in new)}


def document_reference_id(patient_key: str, key: tuple[str, str, str]) -> str:
    """The id the assembler gives the DocumentReference of the entity's document."""
    return resource_id(patient_key, "DocumentReference", key[0], key[1], "")


def _document_context(output: Path, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per document: source, media type, document type and page count, as the run used them.
    The type is the manifest hint, else the classifier's confidence-weighted vote (as in
    `pipeline.tables.DocumentSummary`)."""
    if not keys:
        return {}
    pages = pq.read_table(output / "tables" / "pages.parquet",
                          columns=["facility_id", "document_id", "source_uri", "media_type", "document_type",
                                   "document_type_predicted", "document_type_confidence"],
                          filters=[("document_id", "in", sorted({k[1] for k in keys}))]).to_pylist()
    quarantine_path = output / "quarantine.parquet"
    failed: Counter[tuple[str, str]] = Counter()
    if quarantine_path.is_file():
        for row in pq.read_table(quarantine_path, columns=["facility_id", "document_id", "resource_type"]).to_pylist():
            if row["resource_type"] is None:
                failed[(row["facility_id"], row["document_id"])] += 1
    context: dict[tuple[str, str], dict[str, Any]] = {}
    votes: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in pages:
        key = (row["facility_id"], row["document_id"])
        if key not in keys:
            continue
        entry = context.setdefault(key, {"source_uri": row["source_uri"], "media_type": row["media_type"],
                                         "hint": row["document_type"], "pages": 0})
        entry["pages"] += 1
        if row["document_type_predicted"]:
            votes[key][row["document_type_predicted"]] += row["document_type_confidence"] or 0.01
    for key, entry in context.items():
        voted = votes[key].most_common(1)[0][0] if votes[key] else "other"
        entry["document_type"] = entry.pop("hint") or voted
        entry["page_count"] = entry.pop("pages") + failed[key]
    return context


def _bundles(patient_key: str, rows: list[dict[str, Any]], documents: dict, entities: dict | None,
             rejected: set) -> list[DocumentBundle]:
    """The patient's documents with their entities: as the run had them (`entities` None) or reviewed."""
    bundles: dict[tuple[str, str], DocumentBundle] = {}
    for row in rows:
        key = (row["facility_id"], row["document_id"], row["entity_id"])
        if key in rejected:
            continue
        doc_key = key[:2]
        if doc_key not in bundles:
            context = documents.get(doc_key)
            if context is None:
                raise LookupError(f"document {doc_key[1]} of facility {doc_key[0]} is not in the pages table")
            bundles[doc_key] = DocumentBundle(
                facility_id=doc_key[0], document_id=doc_key[1], source_uri=context["source_uri"],
                media_type=context["media_type"], document_type=context["document_type"],
                page_count=context["page_count"], patient_key=patient_key)
        entity = (entities or {}).get(key) or Entity.from_row({c: row[c] for c in _ENTITY_COLUMNS})
        bundles[doc_key].entities.append(entity)
    return list(bundles.values())


def _entity_resource_ids(patient_key: str, entity: Entity, key: tuple[str, str, str], base: dict,
                         rows: list[dict[str, Any]]) -> set[str]:
    """Ids the assembler gives the resources this entity can become."""
    facility_id, document_id, entity_id = key
    if entity.kind == "demographic":
        return {resource_id(patient_key, "Patient")}
    if entity.kind == "encounter":
        return {resource_id(patient_key, "Encounter", facility_id, document_id, "")}
    ids = {resource_id(patient_key, t, facility_id, document_id, entity_id) for t in RESOURCE_TYPES.get(entity.kind, ())}
    if entity.kind == "vital":  # a blood pressure pair is one Observation from two entities
        for other in rows:
            if other["kind"] == "vital" and other["document_id"] == document_id and other["entity_id"] != entity_id:
                for pair in ((entity_id, other["entity_id"]), (other["entity_id"], entity_id)):
                    ids.add(resource_id(patient_key, "Observation", facility_id, document_id, "+".join(pair)))
    return ids


def _mark_reviewed(written: dict[str, AssembledResource], patient_key: str, entities: dict, reviewed: list,
                   base: dict, rows: list[dict[str, Any]]) -> dict[str, AssembledResource]:
    """Tag the resources made from fully reviewed entities and confirm their verification status."""
    targets: set[str] = set()
    for key in reviewed:
        targets |= _entity_resource_ids(patient_key, entities[key], key, base, rows)
    out = dict(written)
    for rid in sorted(targets & set(written)):
        body = json.loads(written[rid].json)
        tags = body.setdefault("meta", {}).setdefault("tag", [])
        tags[:] = [t for t in tags if not (t.get("system") == TAG_REVIEW_SYSTEM and t.get("code") == "requires-review")]
        if not any(t.get("system") == TAG_REVIEW_SYSTEM and t.get("code") == REVIEWED_FLAG for t in tags):
            tags.append({"system": TAG_REVIEW_SYSTEM, "code": REVIEWED_FLAG, "display": "Reviewed by clinical staff"})
        if body["resourceType"] in VERIFIED_TYPES:
            body["verificationStatus"] = {"coding": [{"system": VERIFIED_TYPES[body["resourceType"]],
                                                      "code": "confirmed", "display": "Confirmed"}]}
        out[rid] = AssembledResource(body["resourceType"], rid, _validated_json(body))
    return out


def _review_provenance(patient_key: str, decision: dict[str, Any], targets: list[str],
                       written: dict[str, AssembledResource], source: str | None) -> AssembledResource:
    """Provenance of one accept or correction: the reviewer as verifier, the document as source."""
    rid = resource_id(patient_key, "Provenance", "review", decision["decision_id"])
    body: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": rid,
        "target": [{"reference": f"{written[t].resource_type}/{t}"} for t in targets],
        "recorded": decision["decided_at"],
        "agent": [{
            "type": {"coding": [{"system": vocab.PROVENANCE_PARTICIPANT_TYPE, "code": "verifier", "display": "Verifier"}]},
            "who": {"identifier": {"system": REVIEWER_SYSTEM, "value": decision["reviewer"]},
                    "display": decision["reviewer"]},
        }],
        "meta": {"tag": [{"system": TAG_REVIEW_SYSTEM, "code": decision["action"]}]},
    }
    if source:
        body["entity"] = [{"role": "source", "what": {"reference": f"DocumentReference/{source}"}}]
    if decision["action"] == "correct":
        body["activity"] = {"coding": [{"system": DATA_OPERATION, "code": "UPDATE", "display": "revise"}]}
    return AssembledResource("Provenance", rid, _validated_json(body))


def _validated_json(body: dict[str, Any]) -> str:
    return get_fhir_model_class(body["resourceType"]).model_validate(body).model_dump_json(exclude_none=True)


def _rewrite_ndjson(fhir_dir: Path, manifest: dict, remove: set[str], new: list[AssembledResource]) -> dict[str, int]:
    """Each listed file without the removed ids, then the new resources of its type (first file
    of the type; a type not listed yet gets `<Type>.ndjson`). Returns lines per file."""
    by_type: dict[str, list[AssembledResource]] = defaultdict(list)
    for resource in sorted(new, key=lambda r: (r.resource_type, r.resource_id)):
        by_type[resource.resource_type].append(resource)
    files = [(entry["type"], entry["url"]) for entry in manifest["output"]]
    files += [(kind, f"{kind}.ndjson") for kind in sorted(by_type) if kind not in {t for t, _ in files}]
    counts: dict[str, int] = {}
    appended: set[str] = set()
    for kind, url in files:
        path = fhir_dir / url
        temp = path.with_name(path.name + ".tmp")
        count = 0
        with temp.open("w", encoding="utf-8") as out:
            if path.is_file():
                with path.open(encoding="utf-8") as source:
                    for line in source:
                        if line.strip() and json.loads(line)["id"] not in remove:
                            out.write(line)
                            count += 1
            if kind not in appended:
                appended.add(kind)
                for resource in by_type.get(kind, []):
                    out.write(resource.json + "\n")
                    count += 1
        os.replace(temp, path)
        counts[url] = count
    return counts


def _write_text(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, path)

