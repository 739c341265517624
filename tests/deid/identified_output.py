"""A small identified output folder drawn in code: two patients, three documents, through the real
FHIR assembler and the output table schemas (what `medrec run` writes, without OCR)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.assemble import assemble_patient
from pipeline.records import DocumentBundle, Entity
from pipeline.schemas import ENTITIES_TABLE_SCHEMA, PAGES_TABLE_SCHEMA, QUARANTINE_SCHEMA

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"


@dataclass(frozen=True)
class DrawnPatient:
    """The identifiers a test then looks for in the research copy."""

    given: str
    family: str
    mrn: str
    birth_date: str  # ISO
    birth_date_us: str  # as printed
    phone: str
    street: str
    city: str
    zip5: str
    facility: str

    @property
    def key(self) -> str:
        return f"{self.facility}|mrn:{self.mrn}"

    @property
    def address(self) -> str:
        return f"{self.street}, {self.city}, IL {self.zip5}"


ALICE = DrawnPatient("Rosalind", "Quennell", "MRN448812", "1961-04-17", "04/17/1961", "(312) 555-0187",
                     "42 Larkspur Lane", "Evanston", "60201", "fac-north")
BERT = DrawnPatient("Thaddeus", "Okonkwo-Brant", "MRN902211", "1930-02-03", "02/03/1930", "(217) 555-0123",
                    "9 Mill Road", "Dalton", "69201", "fac-south")  # born 1930: over 89; 692 is a restricted ZIP3


def _entity(document_id: str, n: int, kind: str, text: str, line: int, **fields: Any) -> Entity:
    values: dict[str, Any] = {"section": "", "assertion": "present", "page_index": 0, "line_ids": [line],
                              "bbox": [10.0, 20.0 * line, 400.0, 20.0 * line + 14], "ocr_confidence": 0.99,
                              "confidence": 0.95}
    values.update(fields)
    return Entity(entity_id=f"{document_id}-e{n}", kind=kind, text=text, **values)


def _demographics(document_id: str, patient: DrawnPatient) -> list[Entity]:
    return [
        _entity(document_id, 1, "demographic", f"{patient.family}, {patient.given}", 1, attribute="name",
                value=f"{patient.given} {patient.family}"),
        _entity(document_id, 2, "demographic", patient.mrn, 2, attribute="mrn", value=patient.mrn),
        _entity(document_id, 3, "demographic", patient.birth_date_us, 3, attribute="birth_date", value=patient.birth_date),
        _entity(document_id, 4, "demographic", patient.address, 4, attribute="address", value=patient.address),
        _entity(document_id, 5, "demographic", patient.phone, 5, attribute="phone", value=patient.phone),
        _entity(document_id, 6, "demographic", "F", 6, attribute="sex", value="female"),
    ]


def _page_lines(patient: DrawnPatient, visit_us: str, extra: list[str]) -> list[str]:
    return [
        "DISCHARGE SUMMARY",
        f"Patient: {patient.family}, {patient.given}",
        f"MRN: {patient.mrn}",
        f"DOB: {patient.birth_date_us}",
        f"Address: {patient.address}",
        f"Phone: {patient.phone}",
        f"Admission date: {visit_us}",
        *extra,
    ]


def _lines_rows(texts: list[str]) -> list[dict]:
    return [{"line_id": i, "text": t, "confidence": 0.99, "polygon": [[10.0, 20.0 * i], [400.0, 20.0 * i]],
             "bbox": [10.0, 20.0 * i, 400.0, 20.0 * i + 14]} for i, t in enumerate(texts)]


def _documents() -> list[tuple[DrawnPatient, DocumentBundle, list[str]]]:
    drawn = []
    # Alice: two documents, visit 2024-03-02 and a lab report 2024-03-09 (an interval of 7 days).
    doc = "doc-alice-discharge"
    entities = _demographics(doc, ALICE) + [
        _entity(doc, 7, "encounter", "03/02/2024", 7, attribute="admission_date", value="2024-03-02"),
        _entity(doc, 8, "encounter", "03/05/2024", 8, attribute="discharge_date", value="2024-03-05"),
        _entity(doc, 9, "diagnosis", "Hypertension", 9, code="I10", code_system=ICD10CM,
                code_display="Essential (primary) hypertension", status="active"),
    ]
    lines = _page_lines(ALICE, "03/02/2024", ["Discharge date: 03/05/2024",
                                              f"{ALICE.given} is a 62 year-old woman seen by Dr. Imogen Farquhar.",
                                              "Diagnoses: Hypertension", "Contact: rq@example.org"])
    drawn.append((ALICE, DocumentBundle(ALICE.facility, doc, f"/archive/{ALICE.facility}/{ALICE.family}_{ALICE.mrn}.pdf",
                                        "application/pdf", "discharge_summary", 1, ALICE.key, entities), lines))
    doc = "doc-alice-lab"
    entities = _demographics(doc, ALICE) + [
        _entity(doc, 7, "encounter", "03/09/2024", 7, attribute="visit_date", value="2024-03-09"),
        _entity(doc, 8, "lab", "Potassium 5.6 mmol/L (3.5-5.0) H", 8, attribute="Potassium", value="5.6",
                value_num=5.6, unit="mmol/L", reference_low=3.5, reference_high=5.0, reference_text="3.5-5.0",
                interpretation="H", code="2823-3", code_system=LOINC,
                code_display="Potassium [Moles/volume] in Serum or Plasma"),
    ]
    lines = _page_lines(ALICE, "03/09/2024", ["Potassium 5.6 mmol/L (3.5-5.0) H"])
    drawn.append((ALICE, DocumentBundle(ALICE.facility, doc, f"/archive/{ALICE.facility}/lab-{ALICE.mrn}.png",
                                        "image/png", "lab_report", 1, ALICE.key, entities), lines))
    doc = "doc-bert-discharge"
    entities = _demographics(doc, BERT) + [
        _entity(doc, 7, "encounter", "01/10/2023", 7, attribute="admission_date", value="2023-01-10"),
        _entity(doc, 8, "diagnosis", "Atrial fibrillation", 8, code="I48.91", code_system=ICD10CM,
                code_display="Unspecified atrial fibrillation", status="active"),
    ]
    lines = _page_lines(BERT, "01/10/2023", [f"Mr. {BERT.family} is a 92 year old man.", "Atrial fibrillation"])
    drawn.append((BERT, DocumentBundle(BERT.facility, doc, f"/archive/{BERT.facility}/{BERT.family}.pdf",
                                       "application/pdf", "discharge_summary", 1, BERT.key, entities), lines))
    return drawn


PAGE_SIZE = (1275, 1650)  # letter at 150 DPI


def write_identified_output(out: Path, sources: Path | None = None) -> dict[str, Any]:
    """Writes tables/, quarantine.parquet, fhir/ and report.json as a run would; returns what was written.

    With `sources`, each document's page is also a white PNG there (named as the archive named it),
    and `source_uri` points at it, so the page can be rendered again.
    """
    from PIL import Image

    (out / "tables").mkdir(parents=True)
    (out / "fhir").mkdir()
    documents = _documents()
    page_rows, entity_rows = [], []
    for patient, bundle, lines in documents:
        if sources is not None:
            path = sources / Path(bundle.source_uri).relative_to("/archive").with_suffix(".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", PAGE_SIZE, 255).save(path)
            bundle.source_uri, bundle.media_type = str(path), "image/png"
        page_rows.append({"facility_id": bundle.facility_id, "document_id": bundle.document_id, "page_index": 0,
                          "source_uri": bundle.source_uri, "sha256": f"{abs(hash(bundle.document_id)):064d}"[:64],
                          "media_type": bundle.media_type, "mrn": patient.mrn, "text_source": "text_layer",
                          "lines": _lines_rows(lines), "dpi": 150, "image_width": PAGE_SIZE[0],
                          "image_height": PAGE_SIZE[1]})
        for entity in bundle.entities:
            row = asdict(entity)
            entity_rows.append({"facility_id": bundle.facility_id, "document_id": bundle.document_id,
                                "patient_key": bundle.patient_key, **row})
    pq.write_table(pa.Table.from_pylist(page_rows, schema=PAGES_TABLE_SCHEMA), out / "tables" / "pages.parquet")
    pq.write_table(pa.Table.from_pylist(entity_rows, schema=ENTITIES_TABLE_SCHEMA), out / "tables" / "entities.parquet")
    quarantine = [{"facility_id": ALICE.facility, "document_id": "doc-alice-broken", "page_index": 0,
                   "source_uri": f"/archive/{ALICE.facility}/{ALICE.family}-scan.tif", "stage": "render",
                   "error_type": "corrupt", "message": "cannot identify image file"}]
    pq.write_table(pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA), out / "quarantine.parquet")
    counts: Counter[str] = Counter()
    by_type: dict[str, list[str]] = {}
    for patient in (ALICE, BERT):
        bundles = [bundle for p, bundle, _ in documents if p is patient]
        result = assemble_patient(patient.key, bundles, "0.1.0", "test-terminology")
        assert not result.failures, [f.message for f in result.failures]
        for resource in result.resources:
            by_type.setdefault(resource.resource_type, []).append(resource.json)
            counts[resource.resource_type] += 1
    for resource_type, lines in by_type.items():
        (out / "fhir" / f"{resource_type}.ndjson").write_text("\n".join(lines) + "\n")
    (out / "fhir" / "manifest.json").write_text(json.dumps({
        "transactionTime": "1970-01-01T00:00:00Z", "terminology_version": "test-terminology", "pipeline_version": "0.1.0",
        "output": [{"type": t, "url": f"{t}.ndjson", "count": c} for t, c in sorted(counts.items())]}))
    (out / "report.json").write_text(json.dumps({"pages_in": 4, "output": str(out), "resources_by_type": dict(counts)}))
    return {"patients": (ALICE, BERT), "resources": dict(counts)}
