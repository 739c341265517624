"""Per-patient FHIR R4B assembly: coded entities -> validated resources, US Core style.

`assemble_patient` takes every document of one patient and returns compact JSON of
validated R4B resources plus typed failures for the quarantine table. One builder per
resource type turns entities into a plain JSON body (a `_Draft`); `_Output.emit` stamps
`meta`, validates the body with the fhir.resources R4B model and keeps the result or a
PHI-free failure.

Choices made here (DESIGN.md and the issue leave them open):
- Only entities asserted `present` or `historical` become the patient's resources.
  `negated` ones ("denies chest pain", "no known drug allergies") are omitted, not
  written as verificationStatus=refuted: a refuted Condition still reads as a diagnosis
  to most consumers, and a chart's "denies X" is not a clinician refuting X. `family`
  diagnoses become FamilyMemberHistory (relationship as a v3 RoleCode); `hypothetical`
  ones ("rule out ...", "return if ...") are not facts and are omitted. Each omission is
  counted in `AssemblyResult.skipped` so the run report can sum them.
- Condition.clinicalStatus from the diagnosis status the extractor read: active ->
  active, resolved -> resolved, history (or a `historical` assertion) -> inactive.
  MedicationRequest.status from the medication status: active and reported -> active
  (reported also sets reportedBoolean: a home list records what the patient takes, it
  does not prescribe it), stopped -> stopped, `historical` -> completed. A prescription
  document's requests are orders (intent=order); every other list is intent=plan.
- Provenance.recorded defaults to the fixed `RECORDED_DEFAULT` (the epoch), not now(),
  so a re-run writes byte-identical output; the run may pass its own fixed value.
- Provenance.target holds one entry per source entity, so a resource built from
  several entities (Patient, Encounter, blood pressure) keeps each page and bounding
  box paired. The DocumentReference is the Provenance's `entity` (the source), not a
  target.
- A reference is written only to a resource that validated (Encounter, lab results),
  except the Patient: every clinical resource needs a subject, and the Patient's id is
  deterministic, so a corrected re-run fills the reference its quarantined Patient left.
- Ids are uuid5 over the lineage (patient key, facility, document, entity, type).
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from pipeline.assemble import vocabulary as vocab
from pipeline.readers.conditions import clean_condition
from pipeline.readers.medications import read_product
from pipeline.readers.observations import SURVEY
from pipeline.records import DocumentBundle, Entity
from pipeline.sig import parse_sig
from pipeline.terminology import normalise_term

Json = dict[str, Any]

RECORDED_DEFAULT = "1970-01-01T00:00:00Z"
EXT_SOURCE_PAGE = "urn:medrec:fhir:extension:source-page"
EXT_SOURCE_BBOX = "urn:medrec:fhir:extension:source-bbox"
EXT_CONFIDENCE = "urn:medrec:fhir:extension:confidence"
TAG_TERMINOLOGY_SYSTEM = "urn:medrec:terminology-version"
TAG_REVIEW_SYSTEM = "urn:medrec:review"
MAX_MESSAGE_CHARS = 500

USABLE_ASSERTIONS = frozenset({"present", "historical"})
FAMILY_ASSERTION = "family"  # usable for diagnoses only: they become FamilyMemberHistory
ASSEMBLED_KINDS = frozenset(
    {"demographic", "encounter", "diagnosis", "medication", "allergy", "vital", "lab", "procedure"}
)
DEMOGRAPHIC_ATTRIBUTES = ("name", "birth_date", "sex", "mrn", "address", "phone")
ENCOUNTER_ATTRIBUTES = ("admission_date", "discharge_date", "visit_date")
GENDERS = frozenset({"male", "female", "other", "unknown"})
ALLERGY_SEVERITIES = frozenset({"mild", "moderate", "severe"})
# DESIGN.md's classifier says "lab", the assembly issue says "lab_report": accept both.
LAB_REPORT_TYPES = frozenset({"lab_report", "lab"})
PROBLEM_LIST_SECTIONS = ("past medical", "medical history", "pmh", "problem list")

# A fixed namespace: ids must not change between runs or machines.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medrec:fhir")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PARTIAL_DATE = re.compile(r"(19|20)\d{2}(-(0[1-9]|1[0-2]))?")
_US_ADDRESS = re.compile(
    r"(?P<line>.+?),\s*(?P<city>[^,]+?),\s*(?P<state>[A-Z]{2})\s+(?P<zip>\d{5}(?:-\d{4})?)"
)
# pydantic renders the offending input as `input_value=...`: patient text, never written.
# Up to its `input_type=` sibling, or the rest of the line when the repr hides that.
_INPUT_VALUE = re.compile(r",?\s*input_value=(?:.*?(?=, input_type=)|.*$)", re.MULTILINE)


@dataclass
class AssembledResource:
    """One validated resource: compact JSON of the R4B model."""

    resource_type: str
    resource_id: str
    json: str


@dataclass
class AssemblyFailure:
    """A resource that failed validation; lands in quarantine. `message` holds no PHI."""

    facility_id: str
    document_id: str
    page_index: int | None
    resource_type: str
    error_type: str
    message: str


@dataclass
class AssemblyResult:
    """Resources and failures of one patient, plus entities left out by design, by reason."""

    resources: list[AssembledResource]
    failures: list[AssemblyFailure]
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class _Source:
    """An entity a resource was built from, with its document (Patient spans documents)."""

    document: DocumentBundle
    entity: Entity


@dataclass
class _Draft:
    """A resource body before validation, with what it was made from."""

    resource_type: str
    resource_id: str
    body: Json
    document: DocumentBundle  # the document a failure is charged to
    sources: list[_Source] = field(default_factory=list)
    review: bool = False  # needs review for a reason beyond its entities' own flags

    @property
    def reference(self) -> Json:
        return {"reference": f"{self.resource_type}/{self.resource_id}"}


@dataclass(frozen=True)
class _Run:
    """What every builder needs from the call: the patient key and the versions."""

    patient_key: str
    pipeline_version: str
    terminology_version: str
    recorded: str

    def resource_id(self, resource_type: str, *lineage: str) -> str:
        return resource_id(self.patient_key, resource_type, *lineage)


def resource_id(patient_key: str, resource_type: str, *lineage: str) -> str:
    """Deterministic id: the same lineage gives the same id on every run (the review step
    finds the resources an entity became by it)."""
    name = "\x1f".join((patient_key, *lineage, resource_type))
    return str(uuid.uuid5(_ID_NAMESPACE, name))


@dataclass
class _DocumentContext:
    """A document as the clinical builders see it: refs to its patient and encounter."""

    document: DocumentBundle
    patient_ref: Json
    encounter_ref: Json | None = None
    encounter_date: str | None = None

    def resource_id(self, run: _Run, resource_type: str, *entity_ids: str) -> str:
        """Id of a resource made from this document (from `entity_ids` when given)."""
        return run.resource_id(
            resource_type,
            self.document.facility_id,
            self.document.document_id,
            "+".join(entity_ids),
        )

    def context_refs(self, key: str = "encounter") -> Json:
        return {key: self.encounter_ref} if self.encounter_ref else {}


@dataclass
class _EncounterFacts:
    """The encounter dates one document states, chosen by majority, with their entities."""

    dates: dict[str, str]
    sources: list[_Source]

    @property
    def effective_date(self) -> str | None:
        """The date clinical findings of the document are dated with, when one is valid."""
        for attribute in ("visit_date", "admission_date", "discharge_date"):
            if _is_iso_date(self.dates.get(attribute)):
                return self.dates[attribute]
        return None


class _Output:
    """Collects validated resources and failures; stamps meta before validating."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.resources: list[AssembledResource] = []
        self.failures: list[AssemblyFailure] = []
        self.skipped: Counter[str] = Counter()

    def emit(self, draft: _Draft) -> bool:
        """Validate and keep `draft`; returns whether it was written."""
        body = dict(draft.body)
        body["meta"] = {"tag": self._tags(draft)}
        if draft.sources:
            confidence = min(s.entity.confidence for s in draft.sources)
            body["extension"] = [{"url": EXT_CONFIDENCE, "valueDecimal": round(confidence, 3)}]
        model_class = get_fhir_model_class(draft.resource_type)
        try:
            model = model_class.model_validate(body)
        except ValidationError as error:
            self.failures.append(_failure(draft, "fhir_validation", _safe_message(error)))
            return False
        except (TypeError, ValueError) as error:
            # The message may quote the input; the class name is all that leaves.
            self.failures.append(_failure(draft, "fhir_validation", type(error).__name__))
            return False
        self.resources.append(
            AssembledResource(
                draft.resource_type, draft.resource_id, model.model_dump_json(exclude_none=True)
            )
        )
        return True

    def _tags(self, draft: _Draft) -> list[Json]:
        tags = [{"system": TAG_TERMINOLOGY_SYSTEM, "code": self.run.terminology_version}]
        if draft.review or any(s.entity.requires_review for s in draft.sources):
            tags.append(
                {"system": TAG_REVIEW_SYSTEM, "code": "requires-review", "display": "Requires review"}
            )
        return tags

    def result(self) -> AssemblyResult:
        return AssemblyResult(self.resources, self.failures, dict(sorted(self.skipped.items())))


def assemble_patient(
    patient_key: str,
    documents: list[DocumentBundle],
    pipeline_version: str,
    terminology_version: str,
    *,
    recorded: str = RECORDED_DEFAULT,
) -> AssemblyResult:
    """Build, validate and serialise every FHIR resource of one patient.

    `documents` all belong to the patient `patient_key`. Output order and ids depend only
    on the input's content, not on the order documents or entities arrive in, so re-runs
    and resumed runs write identical bytes. `recorded` is Provenance.recorded: a fixed
    instant (default the epoch) rather than the wall clock, for the same reason.
    """
    run = _Run(patient_key, pipeline_version, terminology_version, recorded)
    output = _Output(run)
    ordered = sorted(documents, key=lambda d: (d.facility_id, d.document_id))
    if not ordered:
        return output.result()
    usable = {id(doc): _usable_entities(doc, output.skipped) for doc in ordered}

    patient = _build_patient(run, ordered, usable, output.skipped)
    patient_written = output.emit(patient)
    for doc in ordered:
        _assemble_document(run, doc, usable[id(doc)], patient, patient_written, output)
    return output.result()


def _assemble_document(
    run: _Run,
    document: DocumentBundle,
    entities: list[Entity],
    patient: _Draft,
    patient_written: bool,
    output: _Output,
) -> None:
    """Every resource one document yields, then its Provenance over what was written."""
    ctx = _DocumentContext(document, patient.reference)
    written: list[_Draft] = []

    def emit(draft: _Draft) -> bool:
        ok = output.emit(draft)
        if ok:
            written.append(draft)
        return ok

    by_kind: dict[str, list[Entity]] = {}
    for entity in entities:
        by_kind.setdefault(entity.kind, []).append(entity)

    facts = _encounter_facts(document, by_kind.get("encounter", []), output.skipped)
    if facts.dates:
        encounter = _build_encounter(run, ctx, facts)
        if emit(encounter):
            ctx.encounter_ref = encounter.reference
        ctx.encounter_date = facts.effective_date
    document_reference = _build_document_reference(run, ctx)
    source = document_reference if output.emit(document_reference) else None

    for entity in by_kind.get("diagnosis", []):
        if entity.assertion == FAMILY_ASSERTION:
            emit(_build_family_member_history(run, ctx, entity, output.skipped))
        else:
            emit(_build_condition(run, ctx, entity, output.skipped))
    for entity in by_kind.get("medication", []):
        emit(_build_medication_request(run, ctx, entity, output.skipped))
    for entity in by_kind.get("allergy", []):
        emit(_build_allergy_intolerance(run, ctx, entity, output.skipped))
    for draft in _build_vital_observations(run, ctx, by_kind.get("vital", []), output.skipped):
        emit(draft)
    labs = []
    for entity in by_kind.get("lab", []):
        draft = _build_lab_observation(run, ctx, entity, output.skipped)
        if emit(draft):
            labs.append(draft)
    if document.document_type.lower() in LAB_REPORT_TYPES and labs:
        emit(_build_diagnostic_report(run, ctx, labs))
    for entity in by_kind.get("procedure", []):
        emit(_build_procedure(run, ctx, entity, output.skipped))
    for kind in sorted(by_kind.keys() - ASSEMBLED_KINDS):
        output.skipped[f"{kind}:unknown-kind"] += len(by_kind[kind])

    # The Patient is traced to this document only through demographics read from it.
    if patient_written and any(s.document is document for s in patient.sources):
        written.insert(0, patient)
    targets = _provenance_targets(document, written)
    if targets:
        output.emit(_build_provenance(run, ctx, source, targets))


def _usable_entities(document: DocumentBundle, skipped: Counter[str]) -> list[Entity]:
    """The document's entities that may become FHIR, in a stable order; counts the rest."""
    usable = []
    for entity in document.entities:
        family_diagnosis = entity.kind == "diagnosis" and entity.assertion == FAMILY_ASSERTION
        if entity.assertion not in USABLE_ASSERTIONS and not family_diagnosis:
            skipped[f"{entity.kind}:{entity.assertion}"] += 1
        else:
            usable.append(entity)
    # Upstream grouping does not promise an order; majority ties and BP pairing need one.
    ordered = sorted(usable, key=lambda e: (e.page_index, min(e.line_ids, default=-1), e.entity_id))
    return _one_per_fact(ordered, skipped)


# Kinds whose repeated mentions in one document are one fact: a drug in the medication list,
# the plan and the prescription, a condition in the history, the assessment and the problem list.
_ONE_PER_DOCUMENT = frozenset({"diagnosis", "medication", "allergy", "procedure"})
_SURE_CODE = 0.9  # a code this sure names the fact; a weaker one may have been chosen for a near miss


def _one_per_fact(entities: list[Entity], skipped: Counter[str]) -> list[Entity]:
    """One entity per fact of the document: mentions are the same fact when they carry the same
    sure code or the same words (for a drug: its name and strength). The kept mention is the one
    that says most (a prescription with its timing over a bare list line), then the most confident."""
    def keys(entity: Entity) -> set[tuple[str, ...]]:
        group = (entity.kind, "family" if entity.assertion == FAMILY_ASSERTION else "patient")
        found = {(*group, "text", _fact_words(entity))}
        if entity.code and (entity.code_score or 0.0) >= _SURE_CODE:
            found.add((*group, "code", entity.code))
        return found

    def says(entity: Entity) -> tuple:
        return (entity.timing_frequency is not None, entity.status == "active", entity.confidence)

    candidates = [e for e in entities if e.kind in _ONE_PER_DOCUMENT]
    kept: dict[str, Entity] = {}
    owner: dict[tuple[str, ...], str] = {}
    for entity in sorted(candidates, key=says, reverse=True):
        same = {owner[key] for key in keys(entity) if key in owner}
        if same:
            skipped[f"{entity.kind}:same-fact-in-document"] += 1
            for key in keys(entity):
                owner.setdefault(key, next(iter(same)))
            continue
        kept[entity.entity_id] = entity
        for key in keys(entity):
            owner[key] = entity.entity_id
    return [e for e in entities if e.kind not in _ONE_PER_DOCUMENT or e.entity_id in kept]


def _fact_words(entity: Entity) -> str:
    """The words that name a fact, without case, punctuation, SNOMED tags or dose form."""
    if entity.kind == "medication":
        product = read_product(entity.text)
        if product is not None:
            return f"{normalise_term(product.name)} {product.dose:g}"
    return normalise_term(clean_condition(entity.text))


# ---------------------------------------------------------------- Patient


def _build_patient(
    run: _Run,
    documents: list[DocumentBundle],
    usable: dict[int, list[Entity]],
    skipped: Counter[str],
) -> _Draft:
    """Patient from demographic entities of all documents; the majority wins per field.

    MRNs are voted per facility (each facility has its own MRN space). Documents that
    disagree mark the Patient for review; values are never logged.
    """
    votes: dict[str, Counter[str]] = {}
    mentions: list[tuple[str, str, _Source]] = []
    for doc in documents:
        for entity in usable[id(doc)]:
            if entity.kind != "demographic":
                continue
            if entity.attribute not in DEMOGRAPHIC_ATTRIBUTES or not entity.value:
                skipped["demographic:unusable"] += 1
                continue
            key = f"mrn:{doc.facility_id}" if entity.attribute == "mrn" else entity.attribute
            value = entity.value.strip()
            votes.setdefault(key, Counter())[value] += 1
            mentions.append((key, value, _Source(doc, entity)))
    # most_common keeps first-seen order on ties, and input order is sorted: deterministic.
    chosen = {key: counter.most_common(1)[0][0] for key, counter in votes.items()}

    body: Json = {"resourceType": "Patient", "id": run.resource_id("Patient")}
    identifiers = [
        _mrn_identifier(key.removeprefix("mrn:"), v)
        for key, v in sorted(chosen.items())
        if key.startswith("mrn:")
    ]
    if identifiers:
        body["identifier"] = identifiers
    if chosen.get("name", "").split():
        body["name"] = [_human_name(chosen["name"])]
    if "phone" in chosen:
        body["telecom"] = [{"system": "phone", "value": chosen["phone"]}]
    if "sex" in chosen:
        gender = chosen["sex"].lower()
        if gender in GENDERS:
            body["gender"] = gender
        else:
            skipped["demographic:sex-unrecognised"] += 1
    if "birth_date" in chosen:
        body["birthDate"] = chosen["birth_date"]
    if "address" in chosen:
        body["address"] = [_address(chosen["address"])]

    sources = [source for key, value, source in mentions if chosen[key] == value]
    return _Draft(
        "Patient",
        body["id"],
        body,
        document=sources[0].document if sources else documents[0],
        sources=sources,
        review=any(len(counter) > 1 for counter in votes.values()),
    )


def _mrn_identifier(facility_id: str, mrn: str) -> Json:
    return {
        "use": "usual",
        "type": {
            "coding": [{"system": vocab.IDENTIFIER_TYPE, "code": "MR", "display": "Medical record number"}]
        },
        "system": f"urn:medrec:facility:{_urn_part(facility_id)}:mrn",
        "value": mrn,
    }


def _human_name(name: str) -> Json:
    """ "Given Middle Family" (display order) -> HumanName; a single token is the family name."""
    tokens = name.split()
    human: Json = {"use": "official", "text": name, "family": tokens[-1]}
    if len(tokens) > 1:
        human["given"] = tokens[:-1]
    return human


def _address(text: str) -> Json:
    """ "street, city, ST 12345" -> structured Address; anything else stays text only."""
    address: Json = {"text": text}
    match = _US_ADDRESS.fullmatch(text)
    if match:
        address.update(
            line=[match["line"]],
            city=match["city"],
            state=match["state"],
            postalCode=match["zip"],
        )
    return address


# ---------------------------------------------------------------- Encounter


def _encounter_facts(
    document: DocumentBundle, entities: list[Entity], skipped: Counter[str]
) -> _EncounterFacts:
    """The document's encounter dates: per attribute, the value stated most often."""
    votes: dict[str, Counter[str]] = {}
    mentions: list[tuple[str, str, Entity]] = []
    for entity in entities:
        if entity.attribute not in ENCOUNTER_ATTRIBUTES or not entity.value:
            skipped["encounter:unusable"] += 1
            continue
        value = entity.value.strip()
        votes.setdefault(entity.attribute, Counter())[value] += 1
        mentions.append((entity.attribute, value, entity))
    dates = {attribute: counter.most_common(1)[0][0] for attribute, counter in votes.items()}
    sources = [_Source(document, e) for attribute, value, e in mentions if dates[attribute] == value]
    return _EncounterFacts(dates, sources)


def _build_encounter(run: _Run, ctx: _DocumentContext, facts: _EncounterFacts) -> _Draft:
    """Encounter: inpatient when admission/discharge dates are stated, else ambulatory."""
    dates = facts.dates
    inpatient = "admission_date" in dates or "discharge_date" in dates
    if inpatient:
        encounter_class = {"system": vocab.ACT_CODE, "code": "IMP", "display": "inpatient encounter"}
        period = {"start": dates.get("admission_date"), "end": dates.get("discharge_date")}
    else:
        encounter_class = {"system": vocab.ACT_CODE, "code": "AMB", "display": "ambulatory"}
        period = {"start": dates["visit_date"], "end": dates["visit_date"]}
    resource_id = ctx.resource_id(run, "Encounter")
    body: Json = {
        "resourceType": "Encounter",
        "id": resource_id,
        "status": "finished",
        "class": encounter_class,
        "subject": ctx.patient_ref,
        "period": {k: v for k, v in period.items() if v},
    }
    return _Draft("Encounter", resource_id, body, ctx.document, facts.sources)


# ---------------------------------------------------------------- Condition


def _build_condition(run: _Run, ctx: _DocumentContext, entity: Entity, skipped: Counter[str]) -> _Draft:
    """Condition: ICD-10-CM coded when the entity is; clinicalStatus from the status read."""
    clinical = _CLINICAL_STATUS.get(entity.status or "", "active")
    if entity.assertion == "historical" and clinical == "active":
        clinical = "inactive"
    category = _condition_category(ctx, entity)
    resource_id = ctx.resource_id(run, "Condition", entity.entity_id)
    body: Json = {
        "resourceType": "Condition",
        "id": resource_id,
        "clinicalStatus": _concept(vocab.CONDITION_CLINICAL, clinical, clinical.capitalize()),
        "verificationStatus": _concept(vocab.CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        "category": [_concept(vocab.CONDITION_CATEGORY, category, _CATEGORY_DISPLAY[category])],
        "code": _entity_concept(entity, vocab.ICD10CM, skipped),
        "subject": ctx.patient_ref,
        **ctx.context_refs(),
    }
    return _Draft("Condition", resource_id, body, ctx.document, [_Source(ctx.document, entity)])


_CATEGORY_DISPLAY = {"problem-list-item": "Problem List Item", "encounter-diagnosis": "Encounter Diagnosis"}
_CLINICAL_STATUS = {"active": "active", "resolved": "resolved", "history": "inactive"}


# ---------------------------------------------------------------- FamilyMemberHistory


def _build_family_member_history(
    run: _Run, ctx: _DocumentContext, entity: Entity, skipped: Counter[str]
) -> _Draft:
    """FamilyMemberHistory: who (v3 RoleCode; a generic family member when unnamed) had what."""
    code, display = vocab.family_relationship(entity.relationship)
    resource_id = ctx.resource_id(run, "FamilyMemberHistory", entity.entity_id)
    body: Json = {
        "resourceType": "FamilyMemberHistory",
        "id": resource_id,
        "status": "completed",
        "patient": ctx.patient_ref,
        "relationship": {"coding": [_coding(vocab.ROLE_CODE, code, display)], "text": display},
        "condition": [{"code": _entity_concept(entity, vocab.ICD10CM, skipped)}],
    }
    return _Draft("FamilyMemberHistory", resource_id, body, ctx.document, [_Source(ctx.document, entity)])


def _condition_category(ctx: _DocumentContext, entity: Entity) -> str:
    """History and problem-list sections are problems; diagnoses of a stay are encounter ones."""
    section = entity.section.lower()
    if any(marker in section for marker in PROBLEM_LIST_SECTIONS):
        return "problem-list-item"
    if "discharge" in ctx.document.document_type.lower() or ctx.encounter_ref:
        return "encounter-diagnosis"
    return "problem-list-item"


# ---------------------------------------------------------------- MedicationRequest


def _build_medication_request(
    run: _Run, ctx: _DocumentContext, entity: Entity, skipped: Counter[str]
) -> _Draft:
    """MedicationRequest (intent plan); a home medication list is reported, not prescribed here."""
    resource_id = ctx.resource_id(run, "MedicationRequest", entity.entity_id)
    status = "completed" if entity.assertion == "historical" else _MEDICATION_STATUS.get(entity.status or "", "active")
    body: Json = {
        "resourceType": "MedicationRequest",
        "id": resource_id,
        "status": status,
        "intent": "order" if ctx.document.document_type == "prescription" else "plan",
        "medicationCodeableConcept": _entity_concept(entity, vocab.RXNORM, skipped),
        "subject": ctx.patient_ref,
        **ctx.context_refs(),
        "dosageInstruction": [_dosage(entity)],
    }
    # Lists read before statuses existed say "home" only in their section name.
    if entity.status == "reported" or (entity.status is None and "home" in entity.section.lower()):
        body["reportedBoolean"] = True
    return _Draft("MedicationRequest", resource_id, body, ctx.document, [_Source(ctx.document, entity)])


_MEDICATION_STATUS = {"active": "active", "reported": "active", "stopped": "stopped", "completed": "completed"}


def _dosage(entity: Entity) -> Json:
    """Dosage: the sig as written, plus the structured dose, route, timing, PRN and duration."""
    dosage: Json = {"text": entity.text}
    timing = _timing(entity)
    if timing:
        dosage["timing"] = timing
    if entity.as_needed:
        if entity.as_needed_for:
            dosage["asNeededCodeableConcept"] = {"text": entity.as_needed_for}
        else:
            dosage["asNeededBoolean"] = True
    if entity.route:
        route: Json = {"text": entity.route}
        concept = vocab.route_concept(entity.route)
        if concept:
            route["coding"] = [_coding(concept.system, concept.code, concept.display)]
        dosage["route"] = route
    if entity.dose_value is not None:
        dosage["doseAndRate"] = [{"doseQuantity": _quantity(entity.dose_value, entity.dose_unit)}]
    return dosage


def _timing(entity: Entity) -> Json:
    """Timing: code as written; repeat from the extracted timing (or, for entities carrying
    only a frequency code, from reading that code); boundsDuration from "for 7 days"."""
    period_unit = entity.timing_period_unit
    frequency, period, period_max, when = (entity.timing_frequency, entity.timing_period, entity.timing_period_max,
                                           entity.timing_when)
    if period_unit is None and entity.frequency:
        parsed = parse_sig(entity.frequency).timing
        if parsed:
            frequency, period, period_max = parsed.frequency, parsed.period, parsed.period_max
            period_unit, when = parsed.period_unit, parsed.when
    repeat: Json = {}
    if period_unit and frequency and period:
        repeat = {"frequency": frequency, "period": period, "periodUnit": period_unit}
        if period_max:
            repeat["periodMax"] = period_max
        if when:
            repeat["when"] = [when]
    if entity.duration_value is not None and entity.duration_unit:
        repeat["boundsDuration"] = {"value": entity.duration_value, "unit": entity.duration_unit,
                                    "system": vocab.UCUM, "code": entity.duration_unit}
    timing: Json = {}
    if entity.frequency:
        timing["code"] = {"text": entity.frequency}
    if repeat:
        timing["repeat"] = repeat
    return timing


# ---------------------------------------------------------------- AllergyIntolerance


def _build_allergy_intolerance(
    run: _Run, ctx: _DocumentContext, entity: Entity, skipped: Counter[str]
) -> _Draft:
    """AllergyIntolerance: active and confirmed; the reaction as written when stated."""
    resource_id = ctx.resource_id(run, "AllergyIntolerance", entity.entity_id)
    body: Json = {
        "resourceType": "AllergyIntolerance",
        "id": resource_id,
        "clinicalStatus": _concept(vocab.ALLERGY_CLINICAL, "active", "Active"),
        "verificationStatus": _concept(vocab.ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
        "code": _entity_concept(entity, vocab.RXNORM, skipped),
        "patient": ctx.patient_ref,
        **ctx.context_refs(),
    }
    if entity.value:
        reaction: Json = {"manifestation": [{"text": entity.value}]}
        if entity.severity in ALLERGY_SEVERITIES:
            reaction["severity"] = entity.severity
        body["reaction"] = [reaction]
    elif entity.severity:
        skipped["allergy:severity-without-reaction"] += 1  # FHIR needs a manifestation to carry it
    return _Draft("AllergyIntolerance", resource_id, body, ctx.document, [_Source(ctx.document, entity)])


# ---------------------------------------------------------------- Observation: vital signs


def _build_vital_observations(
    run: _Run, ctx: _DocumentContext, vitals: list[Entity], skipped: Counter[str]
) -> list[_Draft]:
    """Vital-sign Observations; a systolic/diastolic pair on one line becomes one BP panel."""
    pairs = _pair_blood_pressures(vitals)
    diastolic_ids = {d.entity_id for d in pairs.values()}
    drafts = []
    for entity in vitals:
        if entity.entity_id in pairs:
            drafts.append(_build_blood_pressure(run, ctx, entity, pairs[entity.entity_id]))
        elif entity.entity_id not in diastolic_ids:
            drafts.append(_build_vital_observation(run, ctx, entity, skipped))
    return drafts


def _pair_blood_pressures(vitals: list[Entity]) -> dict[str, Entity]:
    """Systolic entity id -> the diastolic read from the same or an adjacent line."""
    systolics = [e for e in vitals if e.code == vocab.SYSTOLIC_BP.code]
    diastolics = [e for e in vitals if e.code == vocab.DIASTOLIC_BP.code]
    pairs: dict[str, Entity] = {}
    for systolic in systolics:
        for diastolic in diastolics:
            if diastolic not in pairs.values() and _same_or_adjacent_lines(systolic, diastolic):
                pairs[systolic.entity_id] = diastolic
                break
    return pairs


def _same_or_adjacent_lines(a: Entity, b: Entity) -> bool:
    """ "BP 142/88" is one line; some forms put the two readings on consecutive lines."""
    if a.page_index != b.page_index or not a.line_ids or not b.line_ids:
        return False
    return min(abs(x - y) for x in a.line_ids for y in b.line_ids) <= 1


def _build_vital_observation(
    run: _Run, ctx: _DocumentContext, entity: Entity, skipped: Counter[str]
) -> _Draft:
    """One vital sign: LOINC code, UCUM quantity, category vital-signs."""
    resource_id = ctx.resource_id(run, "Observation", entity.entity_id)
    body = _observation_body(
        resource_id, ctx, "vital-signs", "Vital Signs", _entity_concept(entity, vocab.LOINC, skipped)
    )
    body.update(_observation_value(entity))
    return _Draft("Observation", resource_id, body, ctx.document, [_Source(ctx.document, entity)])


def _build_blood_pressure(run: _Run, ctx: _DocumentContext, systolic: Entity, diastolic: Entity) -> _Draft:
    """US Core blood pressure: panel 85354-9 with systolic and diastolic components."""
    resource_id = ctx.resource_id(run, "Observation", systolic.entity_id, diastolic.entity_id)
    panel = vocab.BLOOD_PRESSURE_PANEL
    code = {"coding": [_coding(panel.system, panel.code, panel.display)], "text": "Blood pressure"}
    body = _observation_body(resource_id, ctx, "vital-signs", "Vital Signs", code)
    body["component"] = [
        {
            "code": {"coding": [_coding(concept.system, concept.code, concept.display)], "text": entity.text},
            **_observation_value(entity),
        }
        for concept, entity in ((vocab.SYSTOLIC_BP, systolic), (vocab.DIASTOLIC_BP, diastolic))
    ]
    sources = [_Source(ctx.document, systolic), _Source(ctx.document, diastolic)]
    return _Draft("Observation", resource_id, body, ctx.document, sources)


# ---------------------------------------------------------------- Observation: laboratory


def _build_lab_observation(run: _Run, ctx: _DocumentContext, entity: Entity, skipped: Counter[str]) -> _Draft:
    """One lab result (or a scored instrument, category survey): LOINC code, UCUM quantity,
    reference range and flag."""
    resource_id = ctx.resource_id(run, "Observation", entity.entity_id)
    category = ("survey", "Survey") if entity.attribute == SURVEY else ("laboratory", "Laboratory")
    body = _observation_body(resource_id, ctx, *category, _entity_concept(entity, vocab.LOINC, skipped))
    body.update(_observation_value(entity))
    if entity.interpretation:
        interpretation: Json = {"text": entity.interpretation}
        concept = vocab.interpretation_concept(entity.interpretation)
        if concept:
            interpretation["coding"] = [_coding(concept.system, concept.code, concept.display)]
        body["interpretation"] = [interpretation]
    reference_range: Json = {
        bound: _quantity(value, entity.unit)
        for bound, value in (("low", entity.reference_low), ("high", entity.reference_high))
        if value is not None
    }
    if entity.reference_text:
        reference_range["text"] = entity.reference_text  # "<200" says more than its one bound
    if reference_range:
        body["referenceRange"] = [reference_range]
    return _Draft("Observation", resource_id, body, ctx.document, [_Source(ctx.document, entity)])


def _observation_body(
    resource_id: str, ctx: _DocumentContext, category: str, display: str, code: Json
) -> Json:
    """The fields every Observation shares."""
    body: Json = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "category": [_concept(vocab.OBSERVATION_CATEGORY, category, display)],
        "code": code,
        "subject": ctx.patient_ref,
        **ctx.context_refs(),
    }
    if ctx.encounter_date:
        body["effectiveDateTime"] = ctx.encounter_date
    return body


def _observation_value(entity: Entity) -> Json:
    """valueQuantity for a number; a qualitative result ("negative") stays a string."""
    if entity.value_num is not None:
        return {"valueQuantity": _quantity(entity.value_num, entity.unit)}
    if entity.value:
        return {"valueString": entity.value}
    return {}


# ---------------------------------------------------------------- DiagnosticReport


def _build_diagnostic_report(run: _Run, ctx: _DocumentContext, results: list[_Draft]) -> _Draft:
    """DiagnosticReport of a lab report document over its written lab Observations."""
    resource_id = ctx.resource_id(run, "DiagnosticReport")
    report = vocab.LABORATORY_REPORT
    body: Json = {
        "resourceType": "DiagnosticReport",
        "id": resource_id,
        "status": "final",
        "category": [_concept(vocab.DIAGNOSTIC_SERVICE_SECTION, "LAB", "Laboratory")],
        "code": {"coding": [_coding(report.system, report.code, report.display)], "text": report.display},
        "subject": ctx.patient_ref,
        **ctx.context_refs(),
        "result": [draft.reference for draft in results],
    }
    if ctx.encounter_date:
        body["effectiveDateTime"] = ctx.encounter_date
    return _Draft("DiagnosticReport", resource_id, body, ctx.document)


# ---------------------------------------------------------------- Procedure


def _build_procedure(run: _Run, ctx: _DocumentContext, entity: Entity, skipped: Counter[str]) -> _Draft:
    """Procedure: completed; coded only in the system the code stage named."""
    resource_id = ctx.resource_id(run, "Procedure", entity.entity_id)
    body: Json = {
        "resourceType": "Procedure",
        "id": resource_id,
        "status": "completed",
        "code": _entity_concept(entity, None, skipped),
        "subject": ctx.patient_ref,
        **ctx.context_refs(),
    }
    if _is_iso_date(entity.value) or _PARTIAL_DATE.fullmatch(entity.value or ""):
        body["performedDateTime"] = entity.value  # "2019", "2019-05": the precision the page gave
    return _Draft("Procedure", resource_id, body, ctx.document, [_Source(ctx.document, entity)])


# ---------------------------------------------------------------- DocumentReference, Provenance


def _build_document_reference(run: _Run, ctx: _DocumentContext) -> _Draft:
    """DocumentReference to the scanned source document."""
    doc = ctx.document
    resource_id = ctx.resource_id(run, "DocumentReference")
    body: Json = {
        "resourceType": "DocumentReference",
        "id": resource_id,
        "identifier": [
            {"system": f"urn:medrec:facility:{_urn_part(doc.facility_id)}:document", "value": doc.document_id}
        ],
        "status": "current",
        "type": {"text": doc.document_type},
        "subject": ctx.patient_ref,
        "content": [
            {"attachment": {"contentType": doc.media_type, "url": doc.source_uri, "title": doc.document_id}}
        ],
    }
    if ctx.encounter_ref:
        body["context"] = {"encounter": [ctx.encounter_ref]}
    return _Draft("DocumentReference", resource_id, body, doc)


def _provenance_targets(document: DocumentBundle, written: list[_Draft]) -> list[Json]:
    """One target per (resource, source entity of this document), carrying page and bbox."""
    targets = []
    for draft in written:
        if not draft.sources:
            targets.append(draft.reference)  # made from the document as a whole
        for source in (s for s in draft.sources if s.document is document):
            targets.append({**draft.reference, "extension": _source_extensions(source.entity)})
    return targets


def _source_extensions(entity: Entity) -> list[Json]:
    extensions: list[Json] = [{"url": EXT_SOURCE_PAGE, "valueInteger": entity.page_index}]
    if len(entity.bbox) == 4:
        bbox = ",".join(f"{round(float(v), 2):g}" for v in entity.bbox)
        extensions.append({"url": EXT_SOURCE_BBOX, "valueString": bbox})
    return extensions


def _build_provenance(run: _Run, ctx: _DocumentContext, source: _Draft | None, targets: list[Json]) -> _Draft:
    """Provenance: what the assembler made from one document, traced to page and box.

    `source` is the document's DocumentReference, None when that failed validation.
    """
    resource_id = ctx.resource_id(run, "Provenance")
    body: Json = {
        "resourceType": "Provenance",
        "id": resource_id,
        "target": targets,
        "recorded": run.recorded,
        "policy": [f"urn:medrec:terminology:{_urn_part(run.terminology_version)}"],
        "agent": [
            {
                "type": _concept(vocab.PROVENANCE_PARTICIPANT_TYPE, "assembler", "Assembler"),
                "who": {"display": f"medrec {run.pipeline_version}"},
            }
        ],
    }
    if source:
        body["entity"] = [{"role": "source", "what": source.reference}]
    return _Draft("Provenance", resource_id, body, ctx.document)


# ---------------------------------------------------------------- shared helpers


def _coding(system: str, code: str, display: str | None) -> Json:
    coding: Json = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _concept(system: str, code: str, display: str) -> Json:
    return {"coding": [_coding(system, code, display)]}


def _entity_concept(entity: Entity, default_system: str | None, skipped: Counter[str]) -> Json:
    """CodeableConcept: the text as written, plus the chosen code when there is one.

    The system is the one the code stage named, else the kind's default; a code whose
    system is unknown is not written (counted), since a Coding without a system means nothing.
    """
    concept: Json = {"text": entity.text}
    if not entity.code:
        return concept
    system = vocab.resolve_system(entity.code_system) or (None if entity.code_system else default_system)
    if system is None:
        skipped[f"{entity.kind}:code-system-unknown"] += 1
        return concept
    code = vocab.dotted_icd10cm(entity.code) if system == vocab.ICD10CM else entity.code
    concept["coding"] = [_coding(system, code, entity.code_display)]
    return concept


def _quantity(value: float, unit: str | None) -> Json:
    """Quantity with UCUM system and code when the unit is known; otherwise the unit as written."""
    quantity: Json = {"value": value}
    if unit:
        quantity["unit"] = unit
        code = vocab.ucum_code(unit)
        if code:
            quantity.update(system=vocab.UCUM, code=code)
    return quantity


def _is_iso_date(value: str | None) -> bool:
    """yyyy-mm-dd naming a real calendar day (the FHIR regex alone accepts Feb 31)."""
    if not value or not _ISO_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _urn_part(text: str) -> str:
    """Percent-encode a value put inside a URN, so an id with a space stays a valid uri."""
    return quote(text, safe="")


def _failure(draft: _Draft, error_type: str, message: str) -> AssemblyFailure:
    pages = {(id(s.document), s.entity.page_index) for s in draft.sources}
    page_index = next(iter(pages))[1] if len(pages) == 1 else None
    return AssemblyFailure(
        facility_id=draft.document.facility_id,
        document_id=draft.document.document_id,
        page_index=page_index,
        resource_type=draft.resource_type,
        error_type=error_type,
        message=message,
    )


def _safe_message(error: ValidationError) -> str:
    """The validator's message without the offending input (patient text), truncated."""
    parts = [
        f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']} [{item['type']}]"
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    message = f"{error.error_count()} validation error(s) for {error.title}: " + "; ".join(parts)
    return _INPUT_VALUE.sub("", message)[:MAX_MESSAGE_CHARS]
