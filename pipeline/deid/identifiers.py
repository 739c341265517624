"""The identifiers an identified output folder holds, per patient and per document.

They come from what the pipeline extracted (demographic entities, the FHIR Patient) and
from the lineage columns (document ids, source paths, file hashes). The scrubber removes a
patient's own identifiers wherever they occur in that patient's text; the residual check
searches the research copy for every one of them.
"""

from __future__ import annotations

import json
import re
from calendar import month_abbr, month_name
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import pyarrow.parquet as pq

from pipeline.deid.generalise import FHIR_DATE
from pipeline.store import output_table, table_parts

_WORD_START, _WORD_END = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"
_DIGITS_START, _DIGITS_END = r"(?<!\d)", r"(?!\d)"


def _bounded(term: str) -> str:
    """A literal term on word bounds, any run of spaces, commas or hyphens matching any other."""
    parts = [re.escape(p) for p in re.split(r"[\s,]+", term.strip()) if p]
    return _WORD_START + r"[\s,]+".join(parts) + _WORD_END


def _digit_run(digits: str) -> str:
    """A number written with or without separators between its digits: 555-0142, (916) 555 0142."""
    return _DIGITS_START + r"[\s().\-+]*".join(digits) + _DIGITS_END


def date_forms(iso: str) -> list[str]:
    """Regexes for a full date as it may be written: ISO, US numeric (2- or 4-digit year), month names, compact."""
    match = FHIR_DATE.fullmatch(iso)
    if not match or not match["day"]:
        return []
    y, m, d = match["year"], int(match["month"]), int(match["day"])
    month = f"(?:{month_name[m]}|{month_abbr[m]}\\.?)"
    day = f"0?{d}"
    mm = f"0?{m}"
    return [
        _DIGITS_START + f"{y}[-/.]{m:02d}[-/.]{d:02d}" + _DIGITS_END,
        _DIGITS_START + f"{mm}[/\\-.]{day}[/\\-.](?:{y}|{y[2:]})" + _DIGITS_END,
        _DIGITS_START + f"{day}[/\\-.]{mm}[/\\-.](?:{y}|{y[2:]})" + _DIGITS_END,
        _WORD_START + f"{month}\\s+{day}(?:st|nd|rd|th)?,?\\s+{y}" + _DIGITS_END,
        _DIGITS_START + f"{day}(?:st|nd|rd|th)?\\s+{month},?\\s+{y}" + _DIGITS_END,
        _DIGITS_START + f"{y}{m:02d}{d:02d}" + _DIGITS_END,
    ]


@dataclass
class PatientIdentifiers:
    """What identifies one patient, as extracted: names, numbers, contact details, birth dates."""

    names: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)  # MRNs, NHS numbers
    phones: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)
    birth_dates: set[str] = field(default_factory=set)

    def add_demographic(self, attribute: str | None, value: str | None) -> None:
        if not value or not value.strip():
            return
        value = value.strip()
        target = {"name": self.names, "mrn": self.numbers, "nhs_number": self.numbers, "phone": self.phones,
                  "email": self.emails, "address": self.addresses, "birth_date": self.birth_dates}.get(attribute or "")
        if target is not None:
            target.add(value)

    def add_patient_resource(self, patient: dict) -> None:
        """Identifiers of a FHIR Patient (the identified copy's, before any change)."""
        for name in patient.get("name", []):
            for text in [name.get("text"), name.get("family"), *name.get("given", [])]:
                if text:
                    self.names.add(text)
        for identifier in patient.get("identifier", []):
            self.add_demographic("mrn", identifier.get("value"))
        for telecom in patient.get("telecom", []):
            self.add_demographic("email" if telecom.get("system") == "email" else "phone", telecom.get("value"))
        for address in patient.get("address", []):
            for text in [address.get("text"), *address.get("line", []), address.get("city")]:
                self.add_demographic("address", text)
        self.add_demographic("birth_date", patient.get("birthDate"))

    def name_terms(self, min_chars: int) -> list[str]:
        """Full names, "Family, Given", and every name part of at least `min_chars` letters."""
        terms: set[str] = set()
        for name in self.names:
            tokens = [t for t in re.split(r"[\s,]+", name) if t]
            terms.add(" ".join(tokens))
            if len(tokens) > 1:
                terms.add(f"{tokens[-1]} {' '.join(tokens[:-1])}")
            terms.update(t.strip(".'") for t in tokens if len(t.strip(".'")) >= min_chars)
        return sorted((_bounded(t) for t in terms if len(t) >= min_chars), key=len, reverse=True)

    def number_terms(self, min_chars: int) -> list[str]:
        terms = []
        for number in self.numbers:
            compact = re.sub(r"[\s\-]", "", number)
            if len(compact) < min_chars:
                continue
            terms.append(_digit_run(compact) if compact.isdigit() else _bounded(number))
        return sorted(set(terms))

    def phone_terms(self) -> list[str]:
        terms = []
        for phone in self.phones:
            digits = re.sub(r"\D", "", phone)
            if len(digits) >= 7:
                terms.append(_digit_run(digits))
                if len(digits) == 11 and digits.startswith("1"):
                    terms.append(_digit_run(digits[1:]))
        return sorted(set(terms))

    def address_terms(self, min_chars: int) -> list[str]:
        """The address as written, its street line and city (a part before the state and ZIP), and e-mails."""
        terms: set[str] = set()
        for address in self.addresses:
            terms.add(address)
            parts = [p.strip() for p in address.split(",") if p.strip()]
            terms.update(p for p in parts if not re.fullmatch(r"[A-Z]{2}\s*\d{5}(?:-\d{4})?|[A-Z]{2}", p))
        terms.update(self.emails)
        return sorted((_bounded(t) for t in terms if len(t) >= min_chars), key=len, reverse=True)

    def date_terms(self) -> list[str]:
        return sorted({form for iso in self.birth_dates for form in date_forms(iso)})

    def all_terms(self, min_chars: int) -> dict[str, list[str]]:
        """Every regex, by identifier type, that the residual check searches for."""
        return {"names": self.name_terms(min_chars), "record_numbers": self.number_terms(min_chars),
                "phones": self.phone_terms(), "addresses": self.address_terms(min_chars),
                "birth_dates": self.date_terms()}


@dataclass
class DocumentLineage:
    """Lineage of one document that identifies it: its id, source path and file hash."""

    facility_id: str
    source_uri: str | None = None
    sha256: str | None = None

    def terms(self, document_id: str, min_chars: int) -> list[str]:
        """Document id, source path, file name and its stem (file names often hold a name or MRN), file hash."""
        terms = {document_id}
        if self.source_uri:
            path = PurePath(self.source_uri.removeprefix("file://"))
            terms.update({self.source_uri, path.name, path.stem})
        if self.sha256:
            terms.add(self.sha256)
        return sorted(re.escape(t) for t in terms if len(t) >= min_chars)


@dataclass
class IdentifiedCopy:
    """What the identified output folder says about its patients and documents."""

    patients: dict[str, PatientIdentifiers]  # patient key -> identifiers
    document_patient: dict[str, str]  # document id -> patient key
    fhir_patient: dict[str, str]  # Patient resource id -> patient key
    documents: dict[str, DocumentLineage]  # document id -> lineage

    def patient_of_document(self, document_id: str | None) -> str | None:
        return self.document_patient.get(document_id or "")


def _ndjson(path: Path):
    if path.is_file():
        with path.open() as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


def read_identified_copy(out: Path) -> IdentifiedCopy:
    """Reads the identifiers of an output folder: entities, pages, quarantine and the FHIR Patient/DocumentReference."""
    patients: dict[str, PatientIdentifiers] = {}
    document_patient: dict[str, str] = {}
    documents: dict[str, DocumentLineage] = {}
    entities_path = output_table(out / "tables", "entities")
    if table_parts(entities_path):  # a file, or a folder of patient-shard parts
        table = pq.read_table(entities_path, columns=["document_id", "patient_key", "kind", "attribute", "value"])
        for row in table.to_pylist():
            key = row["patient_key"]
            document_patient.setdefault(row["document_id"], key)
            identifiers = patients.setdefault(key, PatientIdentifiers())
            if row["kind"] == "demographic":
                identifiers.add_demographic(row["attribute"], row["value"])
    for path in (output_table(out / "tables", "pages"), out / "quarantine.parquet"):
        parts = table_parts(path)
        if not parts:
            continue
        columns = [c for c in ("facility_id", "document_id", "source_uri", "sha256", "mrn") if c in pq.read_schema(parts[0]).names]
        for row in pq.read_table(path, columns=columns).to_pylist():
            if row.get("document_id") is None:
                continue
            lineage = documents.setdefault(row["document_id"], DocumentLineage(row["facility_id"] or ""))
            lineage.source_uri = lineage.source_uri or row.get("source_uri")
            lineage.sha256 = lineage.sha256 or row.get("sha256")
            key = document_patient.get(row["document_id"])
            if key and row.get("mrn"):
                patients[key].add_demographic("mrn", row["mrn"])
    fhir_patient: dict[str, str] = {}
    for reference in _ndjson(out / "fhir" / "DocumentReference.ndjson"):
        patient_id = reference.get("subject", {}).get("reference", "").removeprefix("Patient/")
        for identifier in reference.get("identifier", []):
            key = document_patient.get(identifier.get("value", ""))
            if key and patient_id:
                fhir_patient[patient_id] = key
    for patient in _ndjson(out / "fhir" / "Patient.ndjson"):
        key = fhir_patient.setdefault(patient["id"], f"fhir:{patient['id']}")
        patients.setdefault(key, PatientIdentifiers()).add_patient_resource(patient)
    return IdentifiedCopy(patients, document_patient, fhir_patient, documents)
