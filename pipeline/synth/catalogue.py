"""Clinical facts the synthetic corpus draws from, with their true codes.

Phrasings are written the way clinicians write them (abbreviations, partial names), not
copied from the code descriptions, so the corpus exercises the coder rather than echoing it.
Every code here is checked against the official files in tests/synth/test_catalogue.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiagnosisFact:
    phrase: str
    icd10cm: str


@dataclass(frozen=True)
class MedicationFact:
    name: str  # as written on the page
    ingredient_rxcui: str
    scd_rxcui: str
    dose_value: float
    dose_unit: str
    form: str


@dataclass(frozen=True)
class LabFact:
    name: str
    loinc: str
    printed_unit: str
    ucum: str
    low: float
    high: float
    decimals: int


@dataclass(frozen=True)
class AllergenFact:
    name: str
    rxcui: str | None


DIAGNOSES = (
    DiagnosisFact("Essential hypertension", "I10"),
    DiagnosisFact("Hypertension", "I10"),
    DiagnosisFact("Type 2 diabetes mellitus", "E11.9"),
    DiagnosisFact("Type 2 diabetes mellitus without complications", "E11.9"),
    DiagnosisFact("Hyperlipidemia", "E78.5"),
    DiagnosisFact("Coronary artery disease", "I25.10"),
    DiagnosisFact("Atrial fibrillation", "I48.91"),
    DiagnosisFact("Congestive heart failure", "I50.9"),
    DiagnosisFact("COPD", "J44.9"),
    DiagnosisFact("Asthma", "J45.909"),
    DiagnosisFact("Chronic kidney disease stage 3a", "N18.31"),
    DiagnosisFact("Hypothyroidism", "E03.9"),
    DiagnosisFact("Gastroesophageal reflux disease", "K21.9"),
    DiagnosisFact("Major depressive disorder", "F32.9"),
    DiagnosisFact("Generalized anxiety disorder", "F41.1"),
    DiagnosisFact("Obesity", "E66.9"),
    DiagnosisFact("Community acquired pneumonia", "J18.9"),
    DiagnosisFact("Urinary tract infection", "N39.0"),
    DiagnosisFact("Osteoarthritis of knee", "M17.9"),
    DiagnosisFact("Low back pain", "M54.50"),
    DiagnosisFact("Iron deficiency anemia", "D50.9"),
    DiagnosisFact("Vitamin D deficiency", "E55.9"),
    DiagnosisFact("Migraine", "G43.909"),
    DiagnosisFact("Acute kidney injury", "N17.9"),
    DiagnosisFact("Obstructive sleep apnea", "G47.33"),
    DiagnosisFact("Gout", "M10.9"),
)

# Findings a note denies ("denies chest pain"): written negated, never a Condition.
NEGATABLE_FINDINGS = (
    DiagnosisFact("chest pain", "R07.9"),
    DiagnosisFact("shortness of breath", "R06.02"),
)

MEDICATIONS = (
    MedicationFact("Metformin", "6809", "861007", 500, "mg", "tablet"),
    MedicationFact("Metformin", "6809", "861004", 1000, "mg", "tablet"),
    MedicationFact("Lisinopril", "29046", "314076", 10, "mg", "tablet"),
    MedicationFact("Lisinopril", "29046", "314077", 20, "mg", "tablet"),
    MedicationFact("Simvastatin", "36567", "198211", 40, "mg", "tablet"),
    MedicationFact("Metoprolol tartrate", "6918", "866924", 25, "mg", "tablet"),
    MedicationFact("Losartan", "52175", "979492", 50, "mg", "tablet"),
    MedicationFact("Omeprazole", "7646", "198051", 20, "mg", "capsule"),
    MedicationFact("Levothyroxine", "10582", "966221", 50, "mcg", "tablet"),
    MedicationFact("Furosemide", "4603", "313988", 40, "mg", "tablet"),
    MedicationFact("Hydrochlorothiazide", "5487", "310798", 25, "mg", "tablet"),
    MedicationFact("Gabapentin", "25480", "310431", 300, "mg", "capsule"),
    MedicationFact("Sertraline", "36437", "312941", 50, "mg", "tablet"),
    MedicationFact("Warfarin", "11289", "855332", 5, "mg", "tablet"),
    MedicationFact("Clopidogrel", "32968", "309362", 75, "mg", "tablet"),
    MedicationFact("Pantoprazole", "40790", "314200", 40, "mg", "tablet"),
    MedicationFact("Carvedilol", "20352", "200031", 6.25, "mg", "tablet"),
    MedicationFact("Rosuvastatin", "301542", "859747", 10, "mg", "tablet"),
    MedicationFact("Montelukast", "88249", "200224", 10, "mg", "tablet"),
    MedicationFact("Spironolactone", "9997", "313096", 25, "mg", "tablet"),
)

# (printed frequency, normalised code)
FREQUENCIES = (
    ("daily", "QD"),
    ("BID", "BID"),
    ("twice daily", "BID"),
    ("TID", "TID"),
    ("at bedtime", "QHS"),
)

ALLERGENS = (
    AllergenFact("Penicillin G", "7980"),
    AllergenFact("Sulfamethoxazole", "10180"),
    AllergenFact("Codeine", "2670"),
    AllergenFact("Ibuprofen", "5640"),
    AllergenFact("Morphine", "7052"),
    AllergenFact("Latex", None),
)
REACTIONS = ("hives", "rash", "nausea", "swelling", "itching", "anaphylaxis")

LABS = (
    LabFact("Glucose", "2345-7", "mg/dL", "mg/dL", 70, 99, 0),
    LabFact("Hemoglobin A1c", "4548-4", "%", "%", 4.0, 5.6, 1),
    LabFact("Creatinine", "2160-0", "mg/dL", "mg/dL", 0.6, 1.3, 2),
    LabFact("BUN", "3094-0", "mg/dL", "mg/dL", 7, 20, 0),
    LabFact("Sodium", "2951-2", "mmol/L", "mmol/L", 136, 145, 0),
    LabFact("Potassium", "2823-3", "mmol/L", "mmol/L", 3.5, 5.1, 1),
    LabFact("Chloride", "2075-0", "mmol/L", "mmol/L", 98, 107, 0),
    LabFact("Calcium", "17861-6", "mg/dL", "mg/dL", 8.5, 10.2, 1),
    LabFact("Hemoglobin", "718-7", "g/dL", "g/dL", 12.0, 17.5, 1),
    LabFact("Hematocrit", "4544-3", "%", "%", 36, 50, 1),
    LabFact("WBC", "6690-2", "K/uL", "10*3/uL", 4.0, 11.0, 1),
    LabFact("Platelets", "777-3", "K/uL", "10*3/uL", 150, 400, 0),
    LabFact("Total cholesterol", "2093-3", "mg/dL", "mg/dL", 100, 200, 0),
    LabFact("Triglycerides", "2571-8", "mg/dL", "mg/dL", 40, 150, 0),
    LabFact("HDL cholesterol", "2085-9", "mg/dL", "mg/dL", 40, 60, 0),
    LabFact("TSH", "3016-3", "mIU/L", "m[IU]/L", 0.4, 4.0, 2),
    LabFact("ALT", "1742-6", "U/L", "U/L", 7, 56, 0),
    LabFact("AST", "1920-8", "U/L", "U/L", 10, 40, 0),
)

PROCEDURES = (
    "Chest X-ray",
    "Echocardiogram",
    "Colonoscopy",
    "Electrocardiogram",
    "CT scan of abdomen",
    "Upper endoscopy",
)

GIVEN_NAMES = {
    "female": ("Mary", "Linda", "Susan", "Karen", "Nancy", "Helen", "Ruth", "Carol", "Janet", "Diane"),
    "male": ("James", "Robert", "David", "Thomas", "Joseph", "Daniel", "Paul", "George", "Edward", "Frank"),
}
FAMILY_NAMES = (
    "Smith", "Johnson", "Brown", "Miller", "Wilson", "Moore", "Taylor", "Thomas", "Jackson",
    "White", "Harris", "Martin", "Thompson", "Garcia", "Clark", "Lewis", "Walker", "Young",
)
STREETS = ("Oak St", "Maple Ave", "Pine Rd", "Cedar Ln", "Elm St", "Main St", "Lake Dr", "Hill Rd")
CITIES = (("Springfield", "IL", "62704"), ("Madison", "WI", "53703"), ("Columbus", "OH", "43215"),
          ("Dayton", "OH", "45402"), ("Peoria", "IL", "61602"))
FACILITIES = {
    "fac-north": "North Valley General Hospital",
    "fac-south": "Southside Community Clinic",
    "fac-east": "Eastbrook Medical Center",
}
