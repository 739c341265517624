"""Random but reproducible synthetic patients and the clinical facts of one visit."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from pipeline.synth import catalogue as cat


@dataclass
class Patient:
    mrn: str
    given: str
    family: str
    birth_date: date
    sex: str
    address: str
    phone: str
    diagnoses: list[cat.DiagnosisFact]
    medications: list[tuple[cat.MedicationFact, str, str]]  # (drug, printed freq, freq code)
    allergies: list[tuple[cat.AllergenFact, str]]

    @property
    def display_name(self) -> str:
        return f"{self.given} {self.family}"


@dataclass
class Visit:
    start: date
    end: date
    vitals: dict[str, float] = field(default_factory=dict)
    labs: list[tuple[cat.LabFact, float, str]] = field(default_factory=list)  # (lab, value, flag)
    procedures: list[tuple[str, date]] = field(default_factory=list)


def make_patient(rng: random.Random, facility_index: int, number: int) -> Patient:
    sex = rng.choice(("female", "male"))
    city, state, postal = rng.choice(cat.CITIES)
    diagnoses = rng.sample(cat.DIAGNOSES, rng.randint(2, 4))
    # One phrasing per code: two phrasings of I10 in one list would read oddly.
    unique = {d.icd10cm: d for d in diagnoses}
    meds = rng.sample(cat.MEDICATIONS, rng.randint(2, 4))
    unique_meds = {m.ingredient_rxcui: m for m in meds}
    return Patient(
        mrn=f"{facility_index + 1}{number:06d}",
        given=rng.choice(cat.GIVEN_NAMES[sex]),
        family=rng.choice(cat.FAMILY_NAMES),
        birth_date=date(1935, 1, 1) + timedelta(days=rng.randint(0, 365 * 65)),
        sex=sex,
        address=f"{rng.randint(10, 9999)} {rng.choice(cat.STREETS)}, {city}, {state} {postal}",
        phone=f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        diagnoses=list(unique.values()),
        medications=[(m, *rng.choice(cat.FREQUENCIES)) for m in unique_meds.values()],
        allergies=[(a, rng.choice(cat.REACTIONS)) for a in rng.sample(cat.ALLERGENS, rng.randint(0, 2))],
    )


def make_visit(rng: random.Random, patient: Patient) -> Visit:
    start = date(2024, 1, 1) + timedelta(days=rng.randint(0, 600))
    visit = Visit(start=start, end=start + timedelta(days=rng.randint(1, 6)))
    systolic = rng.randint(104, 168)
    visit.vitals = {
        "systolic": systolic,
        "diastolic": rng.randint(60, min(98, systolic - 30)),
        "heart_rate": rng.randint(54, 112),
        "respiratory_rate": rng.randint(12, 22),
        "temperature": round(rng.uniform(36.1, 38.4), 1),
        "spo2": rng.randint(91, 100),
        "weight": round(rng.uniform(48, 130), 1),
    }
    for lab in rng.sample(cat.LABS, rng.randint(5, 9)):
        span = lab.high - lab.low
        value = round(rng.uniform(lab.low - 0.3 * span, lab.high + 0.4 * span), lab.decimals)
        value = max(value, round(0.1 * lab.low, lab.decimals) or 0.1)
        flag = "H" if value > lab.high else "L" if value < lab.low else ""
        visit.labs.append((lab, value, flag))
    for name in rng.sample(cat.PROCEDURES, rng.randint(0, 2)):
        visit.procedures.append((name, start + timedelta(days=rng.randint(0, (visit.end - start).days))))
    return visit
