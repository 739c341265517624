"""`medrec deidentify`: an output folder in, its research copy out (HIPAA Safe Harbor), with a report and a residual check.

Every patient gets one date offset and every id one pseudonym, both drawn from the site key,
so intervals, links between documents and re-runs all hold. Codes, values, units and
reference ranges pass unchanged; text passes through the scrubber; lineage that points at
the sources (paths, file hashes) is dropped.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fhir.resources.R4B import get_fhir_model_class
from presidio_anonymizer import AnonymizerEngine
from presidio_analyzer import RecognizerResult

from pipeline.config import DeidConfig, RenderConfig
from pipeline.deid.generalise import FHIR_DATE, ZIP, DatePolicy, is_over_age_cap, parse_reference_date, zip3
from pipeline.deid.identifiers import IdentifiedCopy, PatientIdentifiers, read_identified_copy
from pipeline.deid.keys import SiteKey
from pipeline.deid.residual import ResidualReport, check_residual
from pipeline.deid.scrub import Scrubber, build_analyzer, own_recognisers
from pipeline.store import output_table, table_parts

log = logging.getLogger(__name__)

AGE_CAP_EXTENSION = "urn:medrec:deid:age-over-cap"
TEXT_CACHE_SIZE = 100_000  # scrubbed strings kept: section names, list items and drug lines repeat
# Lineage that points back at the source files: never copied.
DROPPED_COLUMNS = {"source_uri": "file_names", "sha256": "other_unique_numbers", "mrn": "medical_record_numbers",
                   "image": "page_images"}
# id columns -> the pseudonym namespace.
ID_COLUMNS = {"document_id": "document", "patient_key": "patient", "entity_id": "entity", "facility_id": "facility"}
# Columns of codes, enumerations and numbers-as-text: carried unchanged (no patient text in them).
KEPT_COLUMNS = {
    "media_type", "text_source", "document_type", "document_type_predicted", "extract_source", "error_stage",
    "error_type", "stage", "resource_type", "kind", "assertion", "unit", "interpretation", "dose_unit", "route",
    "frequency", "attribute", "status", "relationship", "severity", "timing_period_unit", "timing_when",
    "duration_unit", "code", "code_system", "code_display", "ingredient_code", "candidates", "flags", "flag",
    "field", "state", "name", "reasons", "system", "display", "match", "label_line_ids",
}
DEMOGRAPHIC_REMOVED = {"name", "mrn", "nhs_number", "phone", "email"}
# FHIR string elements that carry codes or machine values, never patient text.
FHIR_KEPT_KEYS = {
    "resourceType", "system", "code", "unit", "url", "status", "intent", "gender", "use", "contentType", "language",
    "version", "comparator", "periodUnit", "durationUnit", "when", "dayOfWeek", "mode", "priority", "criticality",
    "clinicalStatus", "verificationStatus", "category", "severity", "valueCode", "policy", "profile", "div",
}
# Dates of the run, not of the patient: shifting them would hand out the patient's offset
# (the fixed Provenance.recorded would show it exactly).
FHIR_RUN_DATES = {"recorded", "lastUpdated", "transactionTime"}
PATIENT_FIELDS_REMOVED = ("identifier", "name", "telecom", "photo", "contact", "link", "generalPractitioner",
                          "managingOrganization", "text")


@dataclass
class DeidReport:
    """What changed, per Safe Harbor identifier type, and the residual check's result."""

    changes: Counter[str] = field(default_factory=Counter)
    files_written: list[str] = field(default_factory=list)
    fhir_resources: Counter[str] = field(default_factory=Counter)
    fhir_invalid: Counter[str] = field(default_factory=Counter)
    patients: int = 0
    documents: int = 0
    key_fingerprint: str = ""
    date_mode: str = ""
    images: str = ""
    images_written: dict[str, int] = field(default_factory=dict)  # images=redacted: written, skipped by reason
    names_harvested: int = 0  # names and record numbers found on a patient's pages, added to their terms
    residual: ResidualReport | None = None

    @property
    def passed(self) -> bool:
        return not self.fhir_invalid and (self.residual is None or self.residual.left_total == 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "patients": self.patients, "documents": self.documents,
            "key_fingerprint": self.key_fingerprint, "date_mode": self.date_mode, "images": self.images,
            "images_written": self.images_written, "names_harvested": self.names_harvested,
            "changes_by_identifier_type": dict(sorted(self.changes.items())),
            "fhir_resources_by_type": dict(sorted(self.fhir_resources.items())),
            "fhir_invalid_by_type": dict(sorted(self.fhir_invalid.items())),
            "files": sorted(self.files_written),
            "residual_check": self.residual.as_json() if self.residual else None,
        }

    def render_markdown(self) -> str:
        lines = ["# De-identification report", "",
                 f"- result: {'PASSED' if self.passed else 'FAILED'}",
                 f"- patients {self.patients}, documents {self.documents}, date mode {self.date_mode}, images {self.images}",
                 f"- key fingerprint {self.key_fingerprint}", "", "| identifier type | changed |", "|---|---:|"]
        lines += [f"| {kind} | {count} |" for kind, count in sorted(self.changes.items())]
        if self.residual:
            lines += ["", "Residual check (identifier strings of the identified copy searched in the research copy):", "",
                      "| identifier type | searched | found in identified copy | left in research copy |", "|---|---:|---:|---:|"]
            for kind in sorted(self.residual.searched):
                lines.append(f"| {kind} | {self.residual.searched[kind]} | {self.residual.found_identified[kind]} "
                             f"| {self.residual.left[kind]} |")
        if self.fhir_invalid:
            lines += ["", f"FHIR resources invalid after de-identification: {dict(self.fhir_invalid)}"]
        return "\n".join(lines) + "\n"


class Deidentifier:
    """Turns one identified output folder into its research copy."""

    def __init__(self, cfg: DeidConfig, key: SiteKey, identified: IdentifiedCopy) -> None:
        self.cfg, self.key, self.identified = cfg, key, identified
        self.analyzer = build_analyzer()
        self.anonymizer = AnonymizerEngine()
        self.reference_date = parse_reference_date(cfg.reference_date)
        self.restricted = frozenset(cfg.restricted_zip3)
        self.report = DeidReport(key_fingerprint=key.fingerprint(), date_mode=cfg.dates.mode, images=cfg.images,
                                 patients=len(identified.patients), documents=len(identified.documents))
        self._scrubbers: dict[str, Scrubber] = {}
        # (document id, page) -> OCR boxes of lines the scrubber changed: blacked out on page images.
        self.redactions: dict[tuple[str, int], list[list[float]]] = {}
        self._text_cache: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------ per patient

    def policy(self, patient: str) -> DatePolicy:
        return DatePolicy(self.cfg.dates.mode, self.key.date_offset_days(patient, self.cfg.dates.max_shift_days),
                          self.cfg.dates.shift_year_only_dates)

    def scrubber(self, patient: str | None) -> Scrubber:
        """The scrubber of a patient (their own identifiers added); None: a document with no known patient."""
        patient = patient or ""
        if patient not in self._scrubbers:
            identifiers = self.identified.patients.get(patient, PatientIdentifiers())
            over_cap = any(is_over_age_cap(born, self.reference_date, self.cfg.age_cap) for born in identifiers.birth_dates)
            self._scrubbers[patient] = Scrubber(self.analyzer, self.anonymizer, self.policy(patient),
                                                own_recognisers(identifiers, self.cfg.scrub.min_identifier_chars),
                                                self.cfg.scrub.min_score, over_cap, self.reference_date,
                                                self.cfg.age_cap)
        return self._scrubbers[patient]

    def scrub_text(self, patient: str | None, text: str | None) -> str | None:
        if text is None or not text.strip():
            return text
        cache_key = (patient or "", text)
        if len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.clear()  # a cache, not a store: memory stays flat over an archive
        if cache_key not in self._text_cache:
            self._text_cache[cache_key] = self.scrubber(patient).scrub(text).text
        return self._text_cache[cache_key]

    def pseudonym(self, kind: str, value: str | None) -> str | None:
        if value is None:
            return None
        if kind == "facility" and self.cfg.keep_facility:
            return value
        self.report.changes["other_unique_numbers" if kind != "patient" else "medical_record_numbers"] += 1
        return self.key.pseudonym(kind, value)

    def shift(self, patient: str | None, value: str) -> str:
        shifted = self.policy(patient or "").apply(value)
        self.report.changes["dates"] += 1
        return shifted if shifted is not None else "[DATE]"

    def birth_date(self, patient: str | None, value: str) -> str | None:
        """A birth date shifted, or None when the person is over the age cap (Safe Harbor: 90+)."""
        if is_over_age_cap(value, self.reference_date, self.cfg.age_cap):
            self.report.changes["ages_over_89"] += 1
            return None
        return self.shift(patient, value)

    def zip_code(self, value: str) -> str | None:
        if self.cfg.zip_digits == 0:
            return None
        self.report.changes["geographic"] += 1
        return zip3(value, self.restricted)

    def harvest_names(self, pages: Path) -> int:
        """Adds to each patient's identifiers the names and record numbers their pages give as the patient's.

        The extractor may miss a name (a form's label row above its value row), while the name
        recogniser finds it ("Family, Given" before the birth date); as a term of the patient it
        is then removed where no pattern would find it ("Tyree is a 65 year-old ...").
        """
        added = 0
        batches = (b for part in table_parts(pages) for b in
                   pq.ParquetFile(part).iter_batches(batch_size=256, columns=["document_id", "lines"]))
        for batch in batches:
            for row in batch.to_pylist():
                patient = self.identified.patient_of_document(row["document_id"])
                if not patient or not row["lines"]:
                    continue
                text = "\n".join(line.get("text") or "" for line in row["lines"])
                identifiers = self.identified.patients[patient]
                for result in self.scrubber(patient).analyze(text):
                    found = text[result.start:result.end].strip()
                    terms = {"PATIENT_NAME": identifiers.names, "MEDICAL_RECORD_NUMBER": identifiers.numbers}.get(
                        result.entity_type)
                    if terms is not None and found not in terms:
                        terms.add(found)
                        added += 1
        self._scrubbers.clear()  # rebuilt with the names added
        return added

    # ------------------------------------------------------------ tables

    def table(self, source: Path, target: Path) -> None:
        """One Parquet table, batch by batch: ids pseudonymised, lineage dropped, text scrubbed, dates shifted."""
        parquet = pq.ParquetFile(source)
        schema = pa.schema([f for f in parquet.schema_arrow if f.name not in DROPPED_COLUMNS])
        dropped = [name for name in parquet.schema_arrow.names if name in DROPPED_COLUMNS]
        target.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(target, schema) as writer:
            for batch in parquet.iter_batches(batch_size=512):
                rows = [self._row(row) for row in batch.to_pylist()]
                for name in dropped:
                    self.report.changes[DROPPED_COLUMNS[name]] += batch.num_rows
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))

    def _row(self, row: dict[str, Any]) -> dict[str, Any]:
        patient = row.get("patient_key") or self.identified.patient_of_document(row.get("document_id"))
        out: dict[str, Any] = {}
        for name, value in row.items():
            if name in DROPPED_COLUMNS:
                continue
            if name in ID_COLUMNS:
                out[name] = self.pseudonym(ID_COLUMNS[name], value)
            elif name == "lines" and value:
                out[name] = self._page_lines(patient, value, (row.get("document_id"), row.get("page_index")))
            elif name == "checkboxes" and value:
                out[name] = [{**box, "label": self.scrub_text(patient, box.get("label"))} for box in value]
            elif name == "fields" and value:
                out[name] = [{**f, "value": self._value(patient, f.get("name"), f.get("value"))} for f in value]
            elif name == "value":  # entities name the attribute; the review queue names the field
                attribute = row.get("attribute") or row.get("field")
                out[name] = self._value(patient, attribute if row.get("kind") in ("demographic", "encounter") else None,
                                        value)
            elif name in KEPT_COLUMNS or not isinstance(value, str):
                out[name] = value
            else:
                out[name] = self.scrub_text(patient, value)
        return out

    def _value(self, patient: str | None, attribute: str | None, value: str | None) -> str | None:
        """An entity's normalised value: identifiers removed or generalised, dates shifted, the rest scrubbed."""
        if value is None:
            return None
        if attribute in DEMOGRAPHIC_REMOVED:
            self.report.changes["names" if attribute == "name" else
                                "phone_fax" if attribute == "phone" else "medical_record_numbers"] += 1
            return None
        if attribute == "birth_date":
            return self.birth_date(patient, value) if FHIR_DATE.fullmatch(value) else None
        if attribute == "address":
            match = ZIP.search(value)
            return self.zip_code(match["zip5"]) if match else None
        # "2024-03-02" is a date; "2019" only where the attribute says so (else it is a value, 2019 mg/dL).
        if FHIR_DATE.fullmatch(value) and ("-" in value or "date" in (attribute or "")):
            return self.shift(patient, value)
        return self.scrub_text(patient, value)

    def _page_lines(self, patient: str | None, lines: list[dict], page: tuple) -> list[dict]:
        """A page's lines scrubbed as one text (a name may run across two lines), spans cut back per line."""
        scrubber = self.scrubber(patient)
        texts = [line.get("text") or "" for line in lines]
        results = scrubber.analyze("\n".join(texts))
        out, start = [], 0
        for line, text in zip(lines, texts):
            end = start + len(text)
            clipped = [RecognizerResult(r.entity_type, max(r.start, start) - start, min(r.end, end) - start, r.score)
                       for r in results if r.start < end and r.end > start]
            scrubbed = scrubber.scrub(text, clipped) if clipped else None
            out.append({**line, "text": scrubbed.text if scrubbed else line.get("text")})
            if scrubbed and line.get("bbox"):
                self.redactions.setdefault(page, []).append(list(line["bbox"]))
            start = end + 1
        return out

    # ------------------------------------------------------------ FHIR

    def fhir_file(self, source: Path, target: Path, resource_patient: dict[str, str]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with source.open() as read, target.open("w") as write:
            for line in read:
                if not line.strip():
                    continue
                resource = json.loads(line)
                patient = resource_patient.get(f"{resource['resourceType']}/{resource.get('id')}")
                research = self.fhir_resource(resource, patient)
                try:
                    get_fhir_model_class(research["resourceType"]).model_validate(research)
                except Exception:  # noqa: BLE001 - counted; the message could quote patient text
                    self.report.fhir_invalid[research["resourceType"]] += 1
                    continue
                self.report.fhir_resources[research["resourceType"]] += 1
                write.write(json.dumps(research, separators=(",", ":")) + "\n")

    def fhir_resource(self, resource: dict[str, Any], patient: str | None) -> dict[str, Any]:
        resource = dict(resource)
        resource_type = resource["resourceType"]
        if resource_type == "Patient":
            for key in PATIENT_FIELDS_REMOVED:
                if key in resource:
                    self.report.changes["names" if key == "name" else "phone_fax" if key == "telecom"
                                        else "medical_record_numbers" if key == "identifier" else "other_unique_numbers"] += 1
                    resource.pop(key)
            if "birthDate" in resource:
                born = self.birth_date(patient, resource.pop("birthDate"))
                if born:
                    resource["birthDate"] = born
                else:
                    resource.setdefault("extension", []).append({"url": AGE_CAP_EXTENSION, "valueString": "90+"})
            if "address" in resource:
                resource["address"] = [a for a in (self._address(a) for a in resource["address"]) if a]
                if not resource["address"]:
                    resource.pop("address")
        if "identifier" in resource:  # document ids, MRNs: the pseudonymised id is the link that stays
            resource.pop("identifier")
            self.report.changes["other_unique_numbers"] += 1
        if "id" in resource:
            resource["id"] = self.key.pseudonym(resource_type, resource["id"])
        return self._walk(resource, patient, resource_type)

    def _address(self, address: dict[str, Any]) -> dict[str, Any] | None:
        self.report.changes["geographic"] += 1
        kept: dict[str, Any] = {}
        if self.cfg.keep_state and address.get("state"):
            kept["state"] = address["state"]
        if address.get("postalCode"):
            code = self.zip_code(address["postalCode"])
            if code:
                kept["postalCode"] = code
        if kept and address.get("country"):
            kept["country"] = address["country"]
        return kept or None

    def _walk(self, node: Any, patient: str | None, key: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for name, value in node.items():
                if name == "attachment" and isinstance(value, dict):  # the source file's path and name
                    self.report.changes["file_names"] += 1
                    out[name] = {k: v for k, v in value.items() if k in ("contentType", "language")}
                elif name == "reference" and isinstance(value, str) and "/" in value:
                    resource_type, _, resource_id = value.partition("/")
                    out[name] = f"{resource_type}/{self.key.pseudonym(resource_type, resource_id)}"
                elif name == "id" or name in FHIR_KEPT_KEYS and not isinstance(value, (dict, list)):
                    out[name] = value
                else:
                    out[name] = self._walk(value, patient, name)
            return out
        if isinstance(node, list):
            return [self._walk(item, patient, key) for item in node]
        if isinstance(node, str):
            if key in FHIR_RUN_DATES:
                return node
            if FHIR_DATE.fullmatch(node) and ("-" in node or key.lower().endswith(("date", "datetime", "start", "end"))):
                return self.shift(patient, node)
            return self.scrub_text(patient, node)
        return node


def _resource_patients(fhir_dir: Path, identified: IdentifiedCopy) -> dict[str, str]:
    """"Type/id" -> patient key, from each resource's subject or patient reference (Provenance: its targets')."""
    patient_of: dict[str, str] = {f"Patient/{pid}": key for pid, key in identified.fhir_patient.items()}
    provenance: list[tuple[str, list[str]]] = []
    for path in sorted(fhir_dir.glob("*.ndjson")):
        with path.open() as handle:
            for line in handle:
                if not line.strip():
                    continue
                resource = json.loads(line)
                ref = f"{resource['resourceType']}/{resource.get('id')}"
                subject = (resource.get("subject") or resource.get("patient") or {}).get("reference")
                if resource["resourceType"] == "Patient":
                    patient_of.setdefault(ref, f"fhir:{resource.get('id')}")
                elif subject:
                    patient_of[ref] = identified.fhir_patient.get(subject.removeprefix("Patient/"), f"fhir:{subject}")
                elif resource["resourceType"] == "Provenance":
                    provenance.append((ref, [t.get("reference", "") for t in resource.get("target", [])]))
    for ref, targets in provenance:
        keys = [patient_of[t] for t in targets if t in patient_of]
        if keys:
            patient_of[ref] = keys[0]
    return patient_of


def _scrub_json(deid: Deidentifier, node: Any) -> Any:
    """A run report: paths dropped (they name the identified folder), every other string scrubbed."""
    if isinstance(node, dict):
        return {k: v if k in FHIR_RUN_DATES else _scrub_json(deid, v) for k, v in node.items()
                if not (k in ("output", "input", "source_uri") and isinstance(v, str))}
    if isinstance(node, list):
        return [_scrub_json(deid, v) for v in node]
    return deid.scrub_text(None, node) if isinstance(node, str) else node


def deidentify(source: Path, target: Path, cfg: DeidConfig, key: SiteKey,
               render: RenderConfig | None = None) -> DeidReport:
    """Writes the research copy of `source` into `target` (which must not exist or be empty) and checks it."""
    if not (source / "fhir").is_dir() and not (source / "tables").is_dir():
        raise FileNotFoundError(f"{source} is not a medrec output folder (no fhir/ or tables/)")
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"the research copy goes into a fresh folder; {target} is not empty")
    if target.resolve().is_relative_to(source.resolve()):
        raise ValueError("the research copy must not be written inside the identified folder")
    identified = read_identified_copy(source)
    deid = Deidentifier(cfg, key, identified)
    target.mkdir(parents=True, exist_ok=True)
    pages = output_table(source / "tables", "pages")
    if cfg.scrub.harvest_names and table_parts(pages):
        deid.report.names_harvested = deid.harvest_names(pages)
    tables = [p for p in (source / "tables").iterdir() if p.suffix == ".parquet" or p.is_dir()] if (
        source / "tables").is_dir() else []
    for table in sorted([*tables, *source.glob("quarantine.parquet")]):
        if table.name.startswith("_"):
            continue  # staging files of a run
        for path in table_parts(table):  # a table folder keeps its parts (one per patient shard)
            relative = path.relative_to(source)
            deid.table(path, target / relative)
            deid.report.files_written.append(str(relative))
    fhir_dir = source / "fhir"
    if fhir_dir.is_dir():
        resource_patient = _resource_patients(fhir_dir, identified)
        for path in sorted(fhir_dir.glob("*.ndjson")):
            relative = path.relative_to(source)
            deid.fhir_file(path, target / relative, resource_patient)
            deid.report.files_written.append(str(relative))
        manifest = fhir_dir / "manifest.json"
        if manifest.is_file():
            research_manifest = _scrub_json(deid, json.loads(manifest.read_text()))
            _restate_counts(research_manifest, deid.report.fhir_resources)
            (target / "fhir" / "manifest.json").write_text(json.dumps(research_manifest, indent=1))
            deid.report.files_written.append("fhir/manifest.json")
    if (source / "report.json").is_file():
        (target / "run_report.json").write_text(json.dumps(_scrub_json(deid, json.loads((source / "report.json").read_text())), indent=1))
        deid.report.files_written.append("run_report.json")
    if cfg.images == "redacted":
        from pipeline.deid.images import write_redacted_images

        images = write_redacted_images(source, target / "images", deid, render or RenderConfig())
        deid.report.changes["page_images"] += images["boxes_blacked_out"]
        deid.report.images_written = dict(images)
        deid.report.files_written.append("images/")
    else:
        deid.report.changes["page_images"] += sum(pq.ParquetFile(p).metadata.num_rows for p in table_parts(pages))  # not copied
    for scrubber in deid._scrubbers.values():
        deid.report.changes.update(scrubber.counts)
    deid.report.residual = check_residual(source, target, identified, cfg.residual.min_chars)
    (target / "deid_report.json").write_text(json.dumps(deid.report.as_json(), indent=1))
    (target / "deid_report.md").write_text(deid.report.render_markdown())
    log.info("research copy: %d patients, %d documents, %d identifiers left", deid.report.patients,
             deid.report.documents, deid.report.residual.left_total)
    return deid.report


def _restate_counts(manifest: Any, counts: Counter[str]) -> None:
    """The manifest's per-type counts as written to the research copy (a resource that failed validation is not there)."""
    for entry in manifest.get("output", []):
        if isinstance(entry, dict) and "type" in entry and "count" in entry:
            entry["count"] = counts.get(entry["type"], 0)


def copy_key_guard(key_file: Path, target: Path) -> None:
    """Refuses a key file inside the research folder: the key must never travel with the copy."""
    if key_file.resolve().is_relative_to(target.resolve()):
        raise ValueError("the key file must not live inside the research copy")

