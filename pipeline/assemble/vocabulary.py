"""Code systems and the small fixed value maps FHIR assembly uses.

Everything here is a published code (HL7 terminology, UCUM, SNOMED CT route qualifiers,
LOINC). A value that is not in a map is never guessed: callers keep it as text only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.assertion import FAMILY_MEMBER, RELATIONSHIPS
from pipeline.sig import parse_sig
from pipeline.units import ucum_code  # noqa: F401 (re-exported: assembly reads units here)
from terminology_index import CPT, ICD10CM, LOINC, RXNORM, SNOMED  # noqa: F401 (re-exported)

ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
UCUM = "http://unitsofmeasure.org"

CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DIAGNOSTIC_SERVICE_SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
PROVENANCE_PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

# Short names the code stage or a site's config may use for a system, keyed after
# `_system_key` folding ("ICD-10-CM", "icd10cm", "ICD_10_CM" all meet here).
_SYSTEM_ALIASES = {
    "icd10cm": ICD10CM,
    "icd10pcs": ICD10PCS,
    "rxnorm": RXNORM,
    "loinc": LOINC,
    "snomed": SNOMED,
    "snomedct": SNOMED,
    "sct": SNOMED,
    "cpt": CPT,
    "cpt4": CPT,
    "ucum": UCUM,
}


def _system_key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def resolve_system(name: str | None) -> str | None:
    """A code system name or URI -> its canonical URI; None when unknown.

    URIs pass through unchanged so a site's licensed systems need no code change here.
    """
    if not name:
        return None
    if "://" in name or name.startswith(("urn:", "http:")):
        return name
    return _SYSTEM_ALIASES.get(_system_key(name))


def dotted_icd10cm(code: str) -> str:
    """ICD-10-CM codes are published dotted ("E11.9"); term files and OCR often drop the dot."""
    code = code.strip().upper()
    if "." in code or len(code) <= 3:
        return code
    return f"{code[:3]}.{code[3:]}"


@dataclass(frozen=True)
class Concept:
    """One coding: enough to write a Coding element."""

    system: str
    code: str
    display: str


# SNOMED CT route qualifiers for the abbreviations medication lists use.
# SNOMED CT route qualifiers for the canonical routes `pipeline.sig` reads sigs into.
_ROUTES = {
    "PO": Concept(SNOMED, "26643006", "Oral route"),
    "IV": Concept(SNOMED, "47625008", "Intravenous route"),
    "IM": Concept(SNOMED, "78421000", "Intramuscular route"),
    "SC": Concept(SNOMED, "34206005", "Subcutaneous route"),
    "SL": Concept(SNOMED, "37839007", "Sublingual route"),
    "PR": Concept(SNOMED, "37161004", "Rectal route"),
    "TOP": Concept(SNOMED, "6064005", "Topical route"),
    "INH": Concept(SNOMED, "447694001", "Respiratory tract route"),
}


def route_concept(route: str | None) -> Concept | None:
    """SNOMED CT route for a canonical route ("PO") or one as written ("by mouth", "subq"); None when unknown."""
    if not route:
        return None
    canonical = route.strip().upper()
    if canonical not in _ROUTES:
        canonical = parse_sig(route).route or ""
    return _ROUTES.get(canonical)


_INTERPRETATIONS = {
    "H": Concept(OBSERVATION_INTERPRETATION, "H", "High"),
    "L": Concept(OBSERVATION_INTERPRETATION, "L", "Low"),
    "N": Concept(OBSERVATION_INTERPRETATION, "N", "Normal"),
    "A": Concept(OBSERVATION_INTERPRETATION, "A", "Abnormal"),
    "HH": Concept(OBSERVATION_INTERPRETATION, "HH", "Critical high"),
    "LL": Concept(OBSERVATION_INTERPRETATION, "LL", "Critical low"),
}
_INTERPRETATION_WORDS = {"HIGH": "H", "LOW": "L", "NORMAL": "N", "ABNORMAL": "A"}


def interpretation_concept(flag: str | None) -> Concept | None:
    """v3 ObservationInterpretation for a lab flag ("H", "low"), or None when unknown."""
    if not flag:
        return None
    key = flag.strip().upper()
    return _INTERPRETATIONS.get(_INTERPRETATION_WORDS.get(key, key))


# US Core blood pressure profile: one panel Observation with the two readings as components.
SYSTOLIC_BP = Concept(LOINC, "8480-6", "Systolic blood pressure")
DIASTOLIC_BP = Concept(LOINC, "8462-4", "Diastolic blood pressure")
BLOOD_PRESSURE_PANEL = Concept(LOINC, "85354-9", "Blood pressure panel with all children optional")
LABORATORY_REPORT = Concept(LOINC, "11502-2", "Laboratory report")


# HL7 v3 RoleCode family members (FamilyMemberHistory.relationship): code -> display.
_FAMILY_ROLES = dict([*RELATIONSHIPS.values(), FAMILY_MEMBER])


def family_relationship(code: str | None) -> tuple[str, str]:
    """(RoleCode, display); an unknown or missing relative is a generic family member."""
    key = (code or "").upper()
    return (key, _FAMILY_ROLES[key]) if key in _FAMILY_ROLES else FAMILY_MEMBER
