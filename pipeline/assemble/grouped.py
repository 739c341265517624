"""Assembly as a grouped Ray Data step: one call per patient, rows of resources or failures out."""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa

from pipeline.assemble.fhir import assemble_patient
from pipeline.records import DocumentBundle, Entity
from pipeline.schemas import ENTITY_FIELDS

ENTITY_COLUMNS = [f.name for f in ENTITY_FIELDS]

ASSEMBLY_OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("patient_key", pa.string()),
        pa.field("resource_type", pa.string()),
        pa.field("resource_id", pa.string()),
        pa.field("json", pa.string()),  # null for a failure
        pa.field("facility_id", pa.string()),
        pa.field("document_id", pa.string()),
        pa.field("page_index", pa.int32()),
        pa.field("error_type", pa.string()),
        pa.field("message", pa.string()),
        pa.field("skipped", pa.map_(pa.string(), pa.int64())),
    ]
)


def bundles_of(group: pa.Table) -> tuple[str, list[DocumentBundle]]:
    """The rows of one patient (entities with document context) -> its document bundles."""
    rows = group.to_pylist()
    patient_key = rows[0]["patient_key"]
    documents: dict[str, DocumentBundle] = {}
    entities: dict[str, list[Entity]] = defaultdict(list)
    for row in rows:
        documents.setdefault(row["document_id"], DocumentBundle(
            facility_id=row["facility_id"], document_id=row["document_id"], source_uri=row["source_uri"],
            media_type=row["media_type"], document_type=row["document_type"], page_count=row["page_count"],
            patient_key=patient_key))
        entities[row["document_id"]].append(Entity.from_row({c: row[c] for c in ENTITY_COLUMNS}))
    for document_id, bundle in documents.items():
        bundle.entities = entities[document_id]
    return patient_key, list(documents.values())


def assemble_group(group: pa.Table, pipeline_version: str, terminology_version: str, recorded: str) -> pa.Table:
    """map_groups function: FHIR resources and validation failures of one patient as rows."""
    patient_key, bundles = bundles_of(group)
    result = assemble_patient(patient_key, bundles, pipeline_version, terminology_version, recorded=recorded)
    rows = [
        {"patient_key": patient_key, "resource_type": r.resource_type, "resource_id": r.resource_id, "json": r.json}
        for r in result.resources
    ]
    rows += [
        {"patient_key": patient_key, "resource_type": f.resource_type, "facility_id": f.facility_id,
         "document_id": f.document_id, "page_index": f.page_index, "error_type": f.error_type,
         "message": f.message}
        for f in result.failures
    ]
    if result.skipped:
        rows.append({"patient_key": patient_key, "skipped": list(result.skipped.items())})
    return pa.Table.from_pylist(rows, schema=ASSEMBLY_OUTPUT_SCHEMA)
