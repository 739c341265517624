"""FHIR assembly of one patient: a discharge summary and a lab report drawn in code."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from pipeline.assemble import AssemblyResult, assemble_patient
from pipeline.assemble.fhir import EXT_SOURCE_BBOX, EXT_SOURCE_PAGE, RECORDED_DEFAULT
from pipeline.records import DocumentBundle, Entity

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CPT = "http://www.ama-assn.org/go/cpt"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

PATIENT_KEY = "FAC01:MRN-448812"
PIPELINE_VERSION = "0.1.0"
TERMINOLOGY_VERSION = "icd10cm-2026+loinc-2.78+rxnorm-2025-10"


def entity(entity_id: str, kind: str, text: str, line: int, page: int = 0, **fields: Any) -> Entity:
    """An entity on one OCR line, with a bbox derived from the line so each is distinct."""
    defaults: dict[str, Any] = {
        "section": "",
        "assertion": "present",
        "page_index": page,
        "line_ids": [line],
        "bbox": [72.0, 100.0 + 24 * line, 540.5, 118.0 + 24 * line],
        "ocr_confidence": 0.97,
        "confidence": 0.9,
    }
    defaults.update(fields)
    return Entity(entity_id=entity_id, kind=kind, text=text, **defaults)


def demographics(prefix: str, birth_date: str = "1956-03-14") -> list[Entity]:
    return [
        entity(
            f"{prefix}-name",
            "demographic",
            "Patient: John A. Smith",
            1,
            attribute="name",
            value="John A Smith",
        ),
        entity(
            f"{prefix}-dob", "demographic", "DOB: 03/14/1956", 2, attribute="birth_date", value=birth_date
        ),
        entity(f"{prefix}-sex", "demographic", "Sex: M", 2, attribute="sex", value="male"),
        entity(f"{prefix}-mrn", "demographic", "MRN: 448812", 3, attribute="mrn", value="448812"),
    ]


def discharge_summary() -> DocumentBundle:
    entities = [
        *demographics("ds"),
        entity(
            "ds-addr",
            "demographic",
            "Address: 12 Oak Street, Springfield, IL 62704",
            4,
            attribute="address",
            value="12 Oak Street, Springfield, IL 62704",
        ),
        entity(
            "ds-adm", "encounter", "Admitted: 03/01/2024", 5, attribute="admission_date", value="2024-03-01"
        ),
        entity(
            "ds-dis", "encounter", "Discharged: 03/05/2024", 6, attribute="discharge_date", value="2024-03-05"
        ),
        entity(
            "ds-dx1",
            "diagnosis",
            "Type 2 diabetes mellitus without complications",
            10,
            section="discharge diagnoses",
            code="E119",
            code_system="ICD-10-CM",
            code_display="Type 2 diabetes mellitus without complications",
        ),
        entity(
            "ds-dx2",
            "diagnosis",
            "Community acquired pneumonia",
            11,
            section="discharge diagnoses",
            code="J18.9",
            code_system=ICD10CM,
            code_display="Pneumonia, unspecified organism",
        ),
        entity(
            "ds-dx3",
            "diagnosis",
            "No evidence of pulmonary embolism",
            12,
            section="discharge diagnoses",
            assertion="negated",
            code="I26.99",
            code_system=ICD10CM,
            code_display="Other pulmonary embolism without acute cor pulmonale",
        ),
        entity(
            "ds-dx4",
            "diagnosis",
            "Essential hypertension",
            13,
            section="past medical history",
            code="I10",
            code_system=ICD10CM,
            code_display="Essential (primary) hypertension",
        ),
        entity(
            "ds-dx5",
            "diagnosis",
            "History of kidney stones",
            14,
            section="past medical history",
            assertion="historical",
            code="Z87442",
            code_system="icd10cm",
            code_display="Personal history of urinary calculi",
        ),
        entity("ds-dx6", "diagnosis", "chronic low back pain", 15, section="past medical history"),
        entity(
            "ds-dx7",
            "diagnosis",
            "Mother with breast cancer",
            16,
            section="family history",
            assertion="family",
            relationship="MTH",
            code="C50.919",
            code_system=ICD10CM,
        ),
        entity(
            "ds-med1",
            "medication",
            "Metformin 500 mg PO BID",
            20,
            section="home medications",
            code="861007",
            code_system="RXNORM",
            code_display="metformin hydrochloride 500 MG Oral Tablet",
            dose_value=500.0,
            dose_unit="mg",
            route="PO",
            frequency="BID",
        ),
        entity(
            "ds-med2",
            "medication",
            "Insulin glargine 10 units SC QHS",
            21,
            section="discharge medications",
            dose_value=10.0,
            dose_unit="units",
            route="SC",
            frequency="QHS",
            requires_review=True,
            flags=["uncoded"],
        ),
        entity(
            "ds-all1",
            "allergy",
            "Penicillin (rash)",
            25,
            section="allergies",
            code="70618",
            code_system=RXNORM,
            code_display="penicillin",
            value="rash",
        ),
        entity("ds-all2", "allergy", "No known latex allergy", 26, section="allergies", assertion="negated"),
        entity(
            "ds-sbp",
            "vital",
            "BP 142/88",
            30,
            page=1,
            section="vital signs",
            code="8480-6",
            code_system=LOINC,
            value_num=142.0,
            unit="mmHg",
        ),
        entity(
            "ds-dbp",
            "vital",
            "BP 142/88",
            30,
            page=1,
            section="vital signs",
            code="8462-4",
            code_system=LOINC,
            value_num=88.0,
            unit="mmHg",
        ),
        entity(
            "ds-hr",
            "vital",
            "HR 78",
            31,
            page=1,
            section="vital signs",
            code="8867-4",
            code_system=LOINC,
            code_display="Heart rate",
            value_num=78.0,
            unit="bpm",
        ),
        entity(
            "ds-temp",
            "vital",
            "Temp 98.6 F",
            32,
            page=1,
            section="vital signs",
            code="8310-5",
            code_system=LOINC,
            code_display="Body temperature",
            value_num=98.6,
            unit="F",
        ),
        entity(
            "ds-proc",
            "procedure",
            "Chest x-ray, 2 views",
            40,
            page=1,
            section="procedures",
            code="71046",
            code_system="CPT",
            code_display="Radiologic examination, chest; 2 views",
            value="2024-03-02",
        ),
    ]
    return DocumentBundle(
        facility_id="FAC01",
        document_id="DOC-DS-0001",
        source_uri="s3://archive/FAC01/DOC-DS-0001.pdf",
        media_type="application/pdf",
        document_type="discharge_summary",
        page_count=2,
        patient_key=PATIENT_KEY,
        entities=entities,
    )


def lab(entity_id: str, text: str, line: int, code: str, value: float, unit: str, **fields: Any) -> Entity:
    return entity(
        entity_id,
        "lab",
        text,
        line,
        section="chemistry",
        code=code,
        code_system=LOINC,
        value_num=value,
        unit=unit,
        **fields,
    )


def lab_report(birth_date: str = "1956-03-14") -> DocumentBundle:
    entities = [
        *demographics("lr", birth_date),
        entity(
            "lr-visit", "encounter", "Collected: 02/20/2024", 5, attribute="visit_date", value="2024-02-20"
        ),
        lab(
            "lr-a1c",
            "Hemoglobin A1c 8.2 % (4.0-5.6) H",
            10,
            "4548-4",
            8.2,
            "%",
            code_display="Hemoglobin A1c/Hemoglobin.total in Blood",
            reference_low=4.0,
            reference_high=5.6,
            interpretation="H",
        ),
        lab(
            "lr-glu",
            "Glucose 182 mg/dL (70-99) H",
            11,
            "2345-7",
            182.0,
            "mg/dL",
            reference_low=70.0,
            reference_high=99.0,
            interpretation="H",
        ),
        lab(
            "lr-k",
            "Potassium 4.1 mmol/L (3.5-5.1)",
            12,
            "2823-3",
            4.1,
            "mmol/L",
            reference_low=3.5,
            reference_high=5.1,
            interpretation="N",
        ),
        lab(
            "lr-na",
            "Sodium 133 mmol/L (135-145) L",
            13,
            "2951-2",
            133.0,
            "mmol/L",
            reference_low=135.0,
            reference_high=145.0,
            interpretation="L",
        ),
    ]
    return DocumentBundle(
        facility_id="FAC01",
        document_id="DOC-LAB-0001",
        source_uri="s3://archive/FAC01/DOC-LAB-0001.tiff",
        media_type="image/tiff",
        document_type="lab_report",
        page_count=1,
        patient_key=PATIENT_KEY,
        entities=entities,
    )


def assemble(documents: list[DocumentBundle]) -> AssemblyResult:
    return assemble_patient(PATIENT_KEY, documents, PIPELINE_VERSION, TERMINOLOGY_VERSION)


def parsed(result: AssemblyResult, resource_type: str | None = None) -> list[dict[str, Any]]:
    return [
        json.loads(r.json)
        for r in result.resources
        if resource_type is None or r.resource_type == resource_type
    ]


def codes(resource: dict[str, Any], key: str = "code") -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in resource.get(key, {}).get("coding", [])}


def by_code(resources: list[dict[str, Any]], code: str, key: str = "code") -> dict[str, Any]:
    (match,) = [r for r in resources if code in {c for _, c in codes(r, key)}]
    return match


def tags(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["system"], t["code"]) for t in resource["meta"]["tag"]}


@pytest.fixture(scope="module")
def result() -> AssemblyResult:
    return assemble([discharge_summary(), lab_report()])


def test_every_expected_resource_type_is_written_without_failures(result: AssemblyResult) -> None:
    counts: dict[str, int] = {}
    for resource in result.resources:
        counts[resource.resource_type] = counts.get(resource.resource_type, 0) + 1
    assert result.failures == []
    assert counts == {
        "Patient": 1,
        "Encounter": 2,
        "DocumentReference": 2,
        "Condition": 5,
        "MedicationRequest": 2,
        "AllergyIntolerance": 1,
        "Observation": 3 + 4,  # BP panel, HR, temperature; four labs
        "DiagnosticReport": 1,
        "Procedure": 1,
        "Provenance": 2,
        "FamilyMemberHistory": 1,
    }
    assert result.skipped == {"allergy:negated": 1, "diagnosis:negated": 1}


def test_every_resource_reparses_with_the_r4b_model(result: AssemblyResult) -> None:
    for resource in result.resources:
        body = json.loads(resource.json)
        model = get_fhir_model_class(resource.resource_type).model_validate(body)
        assert body["resourceType"] == resource.resource_type
        assert body["id"] == resource.resource_id == model.id
        assert len(resource.resource_id) <= 64
        assert (("urn:medrec:terminology-version", TERMINOLOGY_VERSION)) in tags(body)


def test_patient_demographics_and_mrn_identifier(result: AssemblyResult) -> None:
    (patient,) = parsed(result, "Patient")
    assert patient["identifier"][0]["system"] == "urn:medrec:facility:FAC01:mrn"
    assert patient["identifier"][0]["value"] == "448812"
    assert patient["name"][0]["family"] == "Smith"
    assert patient["name"][0]["given"] == ["John", "A"]
    assert patient["gender"] == "male"
    assert patient["birthDate"] == "1956-03-14"
    assert patient["address"][0] == {
        "text": "12 Oak Street, Springfield, IL 62704",
        "line": ["12 Oak Street"],
        "city": "Springfield",
        "state": "IL",
        "postalCode": "62704",
    }


def test_encounters_inpatient_and_ambulatory(result: AssemblyResult) -> None:
    encounters = {e["class"]["code"]: e for e in parsed(result, "Encounter")}
    assert encounters["IMP"]["period"] == {"start": "2024-03-01", "end": "2024-03-05"}
    assert encounters["AMB"]["period"] == {"start": "2024-02-20", "end": "2024-02-20"}
    assert {e["status"] for e in encounters.values()} == {"finished"}


def test_conditions_codes_statuses_and_categories(result: AssemblyResult) -> None:
    conditions = parsed(result, "Condition")
    (patient,) = parsed(result, "Patient")
    inpatient = next(e for e in parsed(result, "Encounter") if e["class"]["code"] == "IMP")

    diabetes = by_code(conditions, "E11.9")  # dotted from the undotted "E119"
    assert codes(diabetes) == {(ICD10CM, "E11.9")}
    assert diabetes["code"]["text"] == "Type 2 diabetes mellitus without complications"
    assert diabetes["code"]["coding"][0]["display"] == "Type 2 diabetes mellitus without complications"
    assert diabetes["clinicalStatus"]["coding"][0]["code"] == "active"
    assert diabetes["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert diabetes["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    assert diabetes["subject"]["reference"] == f"Patient/{patient['id']}"
    assert diabetes["encounter"]["reference"] == f"Encounter/{inpatient['id']}"

    hypertension = by_code(conditions, "I10")
    assert hypertension["category"][0]["coding"][0]["code"] == "problem-list-item"
    stones = by_code(conditions, "Z87.442")
    assert stones["clinicalStatus"]["coding"][0]["code"] == "inactive"

    (uncoded,) = [c for c in conditions if "coding" not in c["code"]]
    assert uncoded["code"] == {"text": "chronic low back pain"}


def test_negated_and_family_diagnoses_are_not_the_patients_conditions(result: AssemblyResult) -> None:
    conditions = parsed(result, "Condition")
    written_codes = {code for c in conditions for _, code in codes(c)}
    assert "I26.99" not in written_codes
    assert "C50.919" not in written_codes
    assert not any("pulmonary embolism" in c["code"]["text"] for c in conditions)


def test_family_history_is_a_family_member_history(result: AssemblyResult) -> None:
    (history,) = parsed(result, "FamilyMemberHistory")
    (patient,) = parsed(result, "Patient")

    assert history["status"] == "completed"
    assert history["patient"]["reference"] == f"Patient/{patient['id']}"
    assert history["relationship"]["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH", "display": "mother"}]
    assert codes(history["condition"][0]) == {(ICD10CM, "C50.919")}
    provenance_targets = {t["reference"] for p in parsed(result, "Provenance") for t in p["target"]}
    assert f"FamilyMemberHistory/{history['id']}" in provenance_targets


def test_unnamed_relative_is_a_generic_family_member() -> None:
    document = discharge_summary()
    for e in document.entities:
        if e.entity_id == "ds-dx7":
            e.relationship = None
    (history,) = parsed(assemble([document]), "FamilyMemberHistory")

    assert history["relationship"]["coding"][0]["code"] == "FAMMEMB"


def single_entity_document(*entities: Entity, document_type: str = "discharge_summary") -> DocumentBundle:
    return DocumentBundle(facility_id="FAC01", document_id="DOC-X", source_uri="s3://archive/FAC01/DOC-X.pdf",
                          media_type="application/pdf", document_type=document_type, page_count=1,
                          patient_key=PATIENT_KEY, entities=[*demographics("x"), *entities])


def test_dosage_timing_prn_duration_and_route() -> None:
    oxycodone = entity("x-med", "medication", "Oxycodone 5 mg", 20, section="discharge medications",
                       status="active", dose_value=5.0, dose_unit="mg", route="PO", frequency="Q4-6H",
                       timing_frequency=1, timing_period=4.0, timing_period_max=6.0, timing_period_unit="h",
                       as_needed=True, as_needed_for="pain", duration_value=7.0, duration_unit="d")
    result = assemble([single_entity_document(oxycodone)])
    (request,) = parsed(result, "MedicationRequest")

    assert result.failures == []
    dosage = request["dosageInstruction"][0]
    assert dosage["timing"] == {"code": {"text": "Q4-6H"}, "repeat": {
        "frequency": 1, "period": 4.0, "periodMax": 6.0, "periodUnit": "h",
        "boundsDuration": {"value": 7.0, "unit": "d", "system": UCUM, "code": "d"}}}
    assert dosage["asNeededCodeableConcept"] == {"text": "pain"}
    assert dosage["route"]["coding"][0]["code"] == "26643006"
    assert "reportedBoolean" not in request and request["status"] == "active"


def test_prn_without_reason_is_as_needed_boolean_and_stopped_medication() -> None:
    held = entity("x-med", "medication", "Lisinopril 10 mg", 20, section="home medications", status="stopped",
                  dose_value=10.0, dose_unit="mg", frequency="PRN", as_needed=True)
    (request,) = parsed(assemble([single_entity_document(held)]), "MedicationRequest")

    assert request["status"] == "stopped"
    assert request["dosageInstruction"][0]["asNeededBoolean"] is True
    assert "repeat" not in request["dosageInstruction"][0]["timing"]


def test_prescription_requests_are_orders() -> None:
    rx = entity("x-med", "medication", "Amoxicillin 500 mg", 20, section="prescription", status="active",
                dose_value=500.0, dose_unit="mg", route="PO", frequency="TID")
    (request,) = parsed(assemble([single_entity_document(rx, document_type="prescription")]), "MedicationRequest")

    assert request["intent"] == "order"
    assert request["dosageInstruction"][0]["timing"]["repeat"] == {"frequency": 3, "period": 1, "periodUnit": "d"}


@pytest.mark.parametrize("status, assertion, clinical", [("active", "present", "active"),
                                                         ("resolved", "present", "resolved"),
                                                         ("history", "historical", "inactive")])
def test_condition_clinical_status_from_diagnosis_status(status: str, assertion: str, clinical: str) -> None:
    dx = entity("x-dx", "diagnosis", "Pneumonia", 20, section="problem list", status=status, assertion=assertion)
    (condition,) = parsed(assemble([single_entity_document(dx)]), "Condition")

    assert condition["clinicalStatus"]["coding"][0]["code"] == clinical


def test_hypothetical_diagnosis_is_not_written() -> None:
    dx = entity("x-dx", "diagnosis", "pulmonary embolism", 20, section="assessment", assertion="hypothetical")
    result = assemble([single_entity_document(dx)])

    assert parsed(result, "Condition") == [] and result.skipped == {"diagnosis:hypothetical": 1}


def test_allergy_reaction_severity() -> None:
    severe = entity("x-all", "allergy", "Penicillin", 20, section="allergies", value="anaphylaxis",
                    severity="severe")
    unseen = entity("x-all2", "allergy", "Codeine", 21, section="allergies", severity="mild")
    result = assemble([single_entity_document(severe, unseen)])
    allergies = {a["code"]["text"]: a for a in parsed(result, "AllergyIntolerance")}

    assert allergies["Penicillin"]["reaction"] == [{"manifestation": [{"text": "anaphylaxis"}], "severity": "severe"}]
    assert "reaction" not in allergies["Codeine"]
    assert result.skipped == {"allergy:severity-without-reaction": 1}


def test_one_sided_reference_range_keeps_its_text() -> None:
    ldl = lab("x-ldl", "LDL 130 mg/dL", 20, "13457-7", 130.0, "mg/dL", reference_high=100.0, reference_text="<100",
              interpretation="H")
    (observation,) = parsed(assemble([single_entity_document(ldl)]), "Observation")

    assert observation["referenceRange"] == [
        {"high": {"value": 100.0, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}, "text": "<100"}]
    assert observation["interpretation"][0]["coding"][0]["code"] == "H"


def test_procedure_with_a_year_only_date() -> None:
    procedure = entity("x-proc", "procedure", "Appendectomy", 20, section="past surgical history", value="2019")
    (written,) = parsed(assemble([single_entity_document(procedure)]), "Procedure")

    assert written["performedDateTime"] == "2019"


def test_medication_requests(result: AssemblyResult) -> None:
    requests = parsed(result, "MedicationRequest")
    metformin = by_code(requests, "861007", "medicationCodeableConcept")
    assert codes(metformin, "medicationCodeableConcept") == {(RXNORM, "861007")}
    assert metformin["intent"] == "plan"
    assert metformin["status"] == "active"
    assert metformin["reportedBoolean"] is True
    dosage = metformin["dosageInstruction"][0]
    assert dosage["text"] == "Metformin 500 mg PO BID"
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": 500.0,
        "unit": "mg",
        "system": UCUM,
        "code": "mg",
    }
    assert dosage["route"]["text"] == "PO"
    assert dosage["route"]["coding"][0]["code"] == "26643006"
    assert dosage["timing"]["code"] == {"text": "BID"}
    assert dosage["timing"]["repeat"] == {"frequency": 2, "period": 1, "periodUnit": "d"}

    (insulin,) = [r for r in requests if "coding" not in r["medicationCodeableConcept"]]
    assert "reportedBoolean" not in insulin  # discharge list, not home list
    insulin_dosage = insulin["dosageInstruction"][0]
    assert insulin_dosage["doseAndRate"][0]["doseQuantity"]["code"] == "[iU]"
    assert insulin_dosage["timing"]["repeat"] == {
        "frequency": 1,
        "period": 1,
        "periodUnit": "d",
        "when": ["HS"],
    }
    assert ("urn:medrec:review", "requires-review") in tags(insulin)
    assert ("urn:medrec:review", "requires-review") not in tags(metformin)


def test_allergy_with_reaction_and_negated_allergy_skipped(result: AssemblyResult) -> None:
    (allergy,) = parsed(result, "AllergyIntolerance")
    assert codes(allergy) == {(RXNORM, "70618")}
    assert allergy["reaction"][0]["manifestation"] == [{"text": "rash"}]
    assert allergy["clinicalStatus"]["coding"][0]["code"] == "active"
    assert allergy["verificationStatus"]["coding"][0]["code"] == "confirmed"


def test_blood_pressure_pair_becomes_one_panel(result: AssemblyResult) -> None:
    observations = parsed(result, "Observation")
    bp = by_code(observations, "85354-9")
    assert codes(bp) == {(LOINC, "85354-9")}
    assert bp["category"][0]["coding"][0]["code"] == "vital-signs"
    assert bp["effectiveDateTime"] == "2024-03-01"
    components = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in bp["component"]}
    assert components == {
        "8480-6": {"value": 142.0, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        "8462-4": {"value": 88.0, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
    }
    standalone = {code for o in observations for _, code in codes(o)}
    assert not standalone & {"8480-6", "8462-4"}

    heart_rate = by_code(observations, "8867-4")
    assert heart_rate["valueQuantity"] == {"value": 78.0, "unit": "bpm", "system": UCUM, "code": "/min"}
    assert by_code(observations, "8310-5")["valueQuantity"]["code"] == "[degF]"


def test_lone_systolic_stays_a_single_observation() -> None:
    document = discharge_summary()
    document.entities = [e for e in document.entities if e.entity_id != "ds-dbp"]
    observations = parsed(assemble([document]), "Observation")
    systolic = by_code(observations, "8480-6")
    assert systolic["valueQuantity"]["value"] == 142.0
    assert not any("85354-9" in {c for _, c in codes(o)} for o in observations)


def test_labs_with_ranges_flags_and_diagnostic_report(result: AssemblyResult) -> None:
    observations = parsed(result, "Observation")
    a1c = by_code(observations, "4548-4")
    assert a1c["category"][0]["coding"][0]["code"] == "laboratory"
    assert a1c["valueQuantity"] == {"value": 8.2, "unit": "%", "system": UCUM, "code": "%"}
    assert a1c["referenceRange"][0]["low"]["value"] == 4.0
    assert a1c["referenceRange"][0]["high"] == {"value": 5.6, "unit": "%", "system": UCUM, "code": "%"}
    assert a1c["interpretation"][0]["coding"][0] == {"system": INTERPRETATION, "code": "H", "display": "High"}
    assert a1c["effectiveDateTime"] == "2024-02-20"
    assert by_code(observations, "2951-2")["interpretation"][0]["coding"][0]["code"] == "L"
    assert by_code(observations, "2345-7")["valueQuantity"]["code"] == "mg/dL"

    (report,) = parsed(result, "DiagnosticReport")
    assert codes(report) == {(LOINC, "11502-2")}
    lab_ids = {
        f"Observation/{o['id']}"
        for o in observations
        if o["category"][0]["coding"][0]["code"] == "laboratory"
    }
    assert {r["reference"] for r in report["result"]} == lab_ids
    assert len(lab_ids) == 4


def test_procedure_coded_in_named_system(result: AssemblyResult) -> None:
    (procedure,) = parsed(result, "Procedure")
    assert procedure["status"] == "completed"
    assert codes(procedure) == {(CPT, "71046")}
    assert procedure["code"]["text"] == "Chest x-ray, 2 views"
    assert procedure["performedDateTime"] == "2024-03-02"


def test_document_references(result: AssemblyResult) -> None:
    references = {d["content"][0]["attachment"]["title"]: d for d in parsed(result, "DocumentReference")}
    discharge = references["DOC-DS-0001"]
    assert discharge["status"] == "current"
    assert discharge["type"] == {"text": "discharge_summary"}
    assert discharge["content"][0]["attachment"]["contentType"] == "application/pdf"
    assert discharge["content"][0]["attachment"]["url"] == "s3://archive/FAC01/DOC-DS-0001.pdf"
    assert references["DOC-LAB-0001"]["content"][0]["attachment"]["contentType"] == "image/tiff"


def test_provenance_targets_every_resource_with_page_and_bbox(result: AssemblyResult) -> None:
    provenances = parsed(result, "Provenance")
    document_refs = {f"DocumentReference/{d['id']}" for d in parsed(result, "DocumentReference")}
    clinical = {f"{r.resource_type}/{r.resource_id}" for r in result.resources} - document_refs
    clinical -= {f"Provenance/{p['id']}" for p in provenances}

    targeted = set()
    for provenance in provenances:
        assert provenance["recorded"] == RECORDED_DEFAULT
        assert provenance["policy"] == [f"urn:medrec:terminology:{TERMINOLOGY_VERSION.replace('+', '%2B')}"]
        assert provenance["agent"][0]["who"]["display"] == f"medrec {PIPELINE_VERSION}"
        assert provenance["agent"][0]["type"]["coding"][0]["code"] == "assembler"
        assert provenance["entity"][0]["role"] == "source"
        assert provenance["entity"][0]["what"]["reference"] in document_refs
        for target in provenance["target"]:
            targeted.add(target["reference"])
            if target["reference"].startswith("DiagnosticReport/"):
                continue  # made from the whole document, not one entity
            extensions = {e["url"]: e for e in target["extension"]}
            assert isinstance(extensions[EXT_SOURCE_PAGE]["valueInteger"], int)
            assert len(extensions[EXT_SOURCE_BBOX]["valueString"].split(",")) == 4
    assert targeted == clinical

    # The BP panel is traced to both readings; the page is the one they were read from.
    bp = by_code(parsed(result, "Observation"), "85354-9")
    bp_targets = [t for p in provenances for t in p["target"] if t["reference"] == f"Observation/{bp['id']}"]
    assert len(bp_targets) == 2
    assert {e["valueInteger"] for t in bp_targets for e in t["extension"] if e["url"] == EXT_SOURCE_PAGE} == {
        1
    }
    assert {e["valueString"] for t in bp_targets for e in t["extension"] if e["url"] == EXT_SOURCE_BBOX} == {
        "72,820,540.5,838"
    }


def test_ids_and_bytes_are_stable_across_runs_and_input_order(result: AssemblyResult) -> None:
    again = assemble([lab_report(), discharge_summary()])
    assert [r.resource_id for r in again.resources] == [r.resource_id for r in result.resources]
    assert [r.json for r in again.resources] == [r.json for r in result.resources]

    shuffled = discharge_summary()
    shuffled.entities = list(reversed(shuffled.entities))
    third = assemble([shuffled, lab_report()])
    assert [r.json for r in third.resources] == [r.json for r in result.resources]


def test_invalid_vital_fails_alone() -> None:
    document = discharge_summary()
    document.entities = [
        replace(e, value_num=math.nan) if e.entity_id == "ds-hr" else e for e in document.entities
    ]
    outcome = assemble([document, lab_report()])
    (failure,) = outcome.failures
    assert failure.resource_type == "Observation"
    assert (failure.facility_id, failure.document_id, failure.page_index) == ("FAC01", "DOC-DS-0001", 1)
    assert failure.error_type == "fhir_validation"
    assert "valueQuantity.value" in failure.message
    assert "input_value" not in failure.message and "nan" not in failure.message
    # Everything else still assembles, and Provenance traces only what was written.
    assert len(parsed(outcome, "Observation")) == 6
    assert len(parsed(outcome, "Condition")) == 5
    written = {f"{r.resource_type}/{r.resource_id}" for r in outcome.resources}
    targets = {t["reference"] for p in parsed(outcome, "Provenance") for t in p["target"]}
    assert targets <= written


def test_invalid_birth_date_fails_patient_only_and_message_has_no_phi() -> None:
    bad_ds = discharge_summary()
    bad_ds.entities = [
        replace(e, value="1956-13-45") if e.attribute == "birth_date" else e for e in bad_ds.entities
    ]
    bad_lab = lab_report(birth_date="1956-13-45")
    outcome = assemble([bad_ds, bad_lab])
    (failure,) = outcome.failures
    assert failure.resource_type == "Patient"
    assert "birthDate" in failure.message
    assert "1956-13-45" not in failure.message and "input_value" not in failure.message
    assert parsed(outcome, "Patient") == []
    assert len(parsed(outcome, "Condition")) == 5
    assert len(parsed(outcome, "Provenance")) == 2


def test_majority_wins_when_documents_disagree_and_patient_needs_review() -> None:
    third = lab_report()
    third.document_id = "DOC-LAB-0002"
    odd = discharge_summary()
    odd.entities = [
        replace(e, value="1956-03-15") if e.attribute == "birth_date" else e for e in odd.entities
    ]
    (patient,) = parsed(assemble([odd, lab_report(), third]), "Patient")
    assert patient["birthDate"] == "1956-03-14"
    assert ("urn:medrec:review", "requires-review") in tags(patient)

    (agreeing,) = parsed(assemble([discharge_summary(), lab_report()]), "Patient")
    assert ("urn:medrec:review", "requires-review") not in tags(agreeing)


@pytest.mark.parametrize("route, code", [("PO", "26643006"), ("by mouth", "26643006"), ("subq", "34206005"),
                                         ("INH", "447694001"), ("SQ", "34206005")])
def test_route_as_written_or_canonical_gets_its_snomed_code(route: str, code: str) -> None:
    from pipeline.assemble.vocabulary import route_concept

    assert route_concept(route).code == code


def test_unknown_route_has_no_code() -> None:
    from pipeline.assemble.vocabulary import route_concept

    assert route_concept("intrathecal pump") is None
