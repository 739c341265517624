"""Document layouts for the synthetic corpus: pages of positioned text plus the gold facts.

Each builder writes the facts of one patient visit as a document type would show them and
records, for each fact, what was written, its true code and the page it is on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

from pipeline.synth import catalogue as cat
from pipeline.synth.patients import Patient, Visit

LINES_PER_PAGE = 34


@dataclass
class Line:
    """One printed line: runs of text at fractions of the page width."""

    runs: list[tuple[float, str]]
    bold: bool = False


@dataclass
class Checkbox:
    """A drawn check box with its label, on the line it shares with others."""

    x: float
    label: str
    checked: bool


@dataclass
class CheckboxLine:
    """A row of check boxes; a `prompt` is printed at the left margin before them
    ("Chest pain  [ ] Yes  [x] No")."""

    boxes: list[Checkbox]
    prompt: str = ""


@dataclass
class SynthDocument:
    document_type: str
    pages: list[list[Line | CheckboxLine]]
    gold: dict[str, Any] = field(default_factory=dict)


def us_date(value: date) -> str:
    return value.strftime("%m/%d/%Y")


class _Writer:
    """Accumulates lines into pages and facts into the gold, keeping page indexes in step."""

    def __init__(self, patient: Patient, facility_name: str, title: str):
        self.patient = patient
        self.facility_name = facility_name
        self.title = title
        self.pages: list[list[Line | CheckboxLine]] = []
        self.gold: dict[str, list[dict[str, Any]]] = {
            k: [] for k in ("diagnoses", "medications", "allergies", "vitals", "labs", "procedures")
        }
        self._new_page()

    def _new_page(self) -> None:
        p = self.patient
        self.pages.append(
            [
                Line([(0.08, self.facility_name)], bold=True),
                Line([(0.08, f"Patient: {p.family}, {p.given}"), (0.45, f"MRN: {p.mrn}"),
                      (0.70, f"DOB: {us_date(p.birth_date)}")]),
                Line([(0.08, self.title)], bold=True),
                Line([]),
            ]
        )

    @property
    def page_index(self) -> int:
        return len(self.pages) - 1

    def line(self, *runs: tuple[float, str], bold: bool = False) -> None:
        if len(self.pages[-1]) >= LINES_PER_PAGE:
            self._new_page()
        self.pages[-1].append(Line(list(runs), bold=bold))

    def text(self, text: str, bold: bool = False) -> None:
        self.line((0.08, text), bold=bold)

    def heading(self, text: str) -> None:
        if len(self.pages[-1]) >= LINES_PER_PAGE - 3:  # keep a heading with its first lines
            self._new_page()
        self.line((0.08, ""))
        self.text(text, bold=True)

    def checkboxes(self, boxes: list[Checkbox]) -> None:
        if len(self.pages[-1]) >= LINES_PER_PAGE:
            self._new_page()
        self.pages[-1].append(CheckboxLine(boxes))

    def page_break(self) -> None:
        self._new_page()

    def fact(self, kind: str, **values: Any) -> None:
        self.gold[kind].append({**values, "page_index": self.page_index})

    # Fact writers shared by several document types.
    def diagnosis_list(self, diagnoses: list[cat.DiagnosisFact], section: str, numbered: bool) -> None:
        for i, dx in enumerate(diagnoses, 1):
            self.text(f"{i}. {dx.phrase}" if numbered else f"- {dx.phrase}")
            self.fact("diagnoses", text=dx.phrase, code=dx.icd10cm, assertion="present", section=section)

    def medication_list(self, section: str) -> None:
        for text, fact in self.medication_items(section):
            self.text(text)
            self.fact("medications", **fact)

    def medication_items(self, section: str) -> list[tuple[str, dict[str, Any]]]:
        """(printed line, gold fact) of each of the patient's medications."""
        items = []
        for drug, printed_freq, freq_code in self.patient.medications:
            dose = f"{drug.dose_value:g} {drug.dose_unit}"
            items.append((f"- {drug.name} {dose} PO {printed_freq}", dict(
                text=f"{drug.name} {dose}", ingredient_rxcui=drug.ingredient_rxcui,
                scd_rxcui=drug.scd_rxcui, dose_value=drug.dose_value, dose_unit=drug.dose_unit,
                route="PO", frequency=freq_code, section=section,
            )))
        return items

    def allergy_list(self) -> None:
        if not self.patient.allergies:
            self.text("No known drug allergies")
            return
        for allergen, reaction in self.patient.allergies:
            self.text(f"- {allergen.name}: {reaction}")
            self.fact("allergies", substance=allergen.name, rxcui=allergen.rxcui, reaction=reaction)

    def vitals_block(self, visit: Visit) -> None:
        v = visit.vitals
        self.line((0.08, f"BP {v['systolic']:.0f}/{v['diastolic']:.0f} mmHg"), (0.40, f"HR {v['heart_rate']:.0f} bpm"),
                  (0.65, f"RR {v['respiratory_rate']:.0f} /min"))
        self.line((0.08, f"Temp {v['temperature']:.1f} C"), (0.40, f"SpO2 {v['spo2']:.0f} %"),
                  (0.65, f"Weight {v['weight']:.1f} kg"))
        self.vital_facts(visit)

    def vital_facts(self, visit: Visit) -> None:
        v = visit.vitals
        for name, loinc, key, unit in (
            ("Systolic blood pressure", "8480-6", "systolic", "mm[Hg]"),
            ("Diastolic blood pressure", "8462-4", "diastolic", "mm[Hg]"),
            ("Heart rate", "8867-4", "heart_rate", "/min"),
            ("Respiratory rate", "9279-1", "respiratory_rate", "/min"),
            ("Body temperature", "8310-5", "temperature", "Cel"),
            ("Oxygen saturation", "59408-5", "spo2", "%"),
            ("Body weight", "29463-7", "weight", "kg"),
        ):
            self.fact("vitals", name=name, loinc=loinc, value=v[key], unit=unit)

    def document(self, document_type: str, encounter: dict[str, Any]) -> SynthDocument:
        p = self.patient
        gold = {
            "document_type": document_type,
            "patient": {
                "mrn": p.mrn, "given": p.given, "family": p.family,
                "birth_date": p.birth_date.isoformat(), "sex": p.sex, "address": p.address,
            },
            "encounter": encounter,
            **self.gold,
        }
        return SynthDocument(document_type, self.pages, gold)


def _outpatient(visit: Visit) -> dict[str, Any]:
    """The gold encounter of a one-day outpatient visit."""
    return {"start": visit.start.isoformat(), "end": visit.start.isoformat(), "class": "AMB"}


def discharge_summary(rng: random.Random, patient: Patient, visit: Visit, facility: str) -> SynthDocument:
    w = _Writer(patient, facility, "DISCHARGE SUMMARY")
    w.line((0.08, f"Admission Date: {us_date(visit.start)}"), (0.50, f"Discharge Date: {us_date(visit.end)}"))
    w.line((0.08, f"Sex: {patient.sex.title()}"), (0.50, f"Phone: {patient.phone}"))
    w.text(f"Address: {patient.address}")
    negated = rng.choice(cat.NEGATABLE_FINDINGS)
    w.heading("HISTORY OF PRESENT ILLNESS:")
    w.text("Patient admitted for evaluation and management.")
    w.text(f"Patient denies {negated.phrase}.")
    w.fact("diagnoses", text=negated.phrase, code=negated.icd10cm, assertion="negated", section="history of present illness")
    chronic, acute = patient.diagnoses[:-1], patient.diagnoses[-1:]
    w.heading("PAST MEDICAL HISTORY:")
    w.diagnosis_list(chronic, "past medical history", numbered=False)
    w.heading("DISCHARGE DIAGNOSES:")
    w.diagnosis_list(acute, "discharge diagnoses", numbered=True)
    w.heading("ALLERGIES:")
    w.allergy_list()
    w.page_break()
    w.heading("HOME MEDICATIONS:")
    w.medication_list("home medications")
    w.heading("VITAL SIGNS:")
    w.vitals_block(visit)
    if visit.procedures:
        w.heading("PROCEDURES:")
        for name, when in visit.procedures:
            w.text(f"- {name} on {us_date(when)}")
            w.fact("procedures", text=name, date=when.isoformat())
    family_dx = rng.choice(cat.DIAGNOSES)
    w.heading("FAMILY HISTORY:")
    w.text(f"Mother with {family_dx.phrase.lower()}.")
    w.fact("diagnoses", text=family_dx.phrase, code=family_dx.icd10cm, assertion="family", section="family history")
    return w.document("discharge_summary", {"start": visit.start.isoformat(), "end": visit.end.isoformat(), "class": "IMP"})


def lab_report(rng: random.Random, patient: Patient, visit: Visit, facility: str) -> SynthDocument:
    w = _Writer(patient, facility, "LABORATORY REPORT")
    w.line((0.08, f"Collected: {us_date(visit.start)}"), (0.50, "Specimen: Blood"))
    w.line((0.08, "Test", ), (0.38, "Result"), (0.52, "Units"), (0.68, "Reference Range"), (0.88, "Flag"), bold=True)
    for lab, value, flag in visit.labs:
        w.line((0.08, lab.name), (0.38, f"{value:.{lab.decimals}f}"), (0.52, lab.printed_unit),
               (0.68, f"{lab.low:.{lab.decimals}f} - {lab.high:.{lab.decimals}f}"), (0.88, flag))
        w.fact("labs", name=lab.name, loinc=lab.loinc, value=value, unit=lab.ucum, low=lab.low,
               high=lab.high, flag=flag or "N")
    w.heading("Results reviewed by the laboratory director.")
    return w.document("lab_report", _outpatient(visit))


def prescription(rng: random.Random, patient: Patient, visit: Visit, facility: str) -> SynthDocument:
    w = _Writer(patient, facility, "PRESCRIPTION")
    w.text(f"Date: {us_date(visit.start)}")
    w.heading("Rx:")
    w.medication_list("prescription")
    w.heading("Refills: 2")
    w.text("Prescriber signature on file.")
    return w.document("prescription", _outpatient(visit))


def referral_letter(rng: random.Random, patient: Patient, visit: Visit, facility: str) -> SynthDocument:
    w = _Writer(patient, facility, "REFERRAL LETTER")
    w.text(f"Date: {us_date(visit.start)}")
    w.text("Dear Colleague,")
    title = "Ms." if patient.sex == "female" else "Mr."
    w.text(f"I am referring {title} {patient.family} for specialist assessment.")
    w.heading("PROBLEM LIST:")
    w.diagnosis_list(patient.diagnoses, "problem list", numbered=True)
    w.page_break()
    w.heading("CURRENT MEDICATIONS:")
    w.medication_list("home medications")
    w.heading("ALLERGIES:")
    w.allergy_list()
    w.heading("Kind regards,")
    return w.document("referral_letter", _outpatient(visit))


def progress_note(rng: random.Random, patient: Patient, visit: Visit, facility: str) -> SynthDocument:
    w = _Writer(patient, facility, "PROGRESS NOTE")
    w.text(f"Visit Date: {us_date(visit.start)}")
    negated = rng.choice(cat.NEGATABLE_FINDINGS)
    w.heading("SUBJECTIVE:")
    w.text("Follow-up visit for chronic conditions.")
    w.text(f"No {negated.phrase}.")
    w.fact("diagnoses", text=negated.phrase, code=negated.icd10cm, assertion="negated", section="subjective")
    w.heading("VITALS:")
    w.vitals_block(visit)
    w.page_break()
    w.heading("ASSESSMENT:")
    w.diagnosis_list(patient.diagnoses, "assessment", numbered=True)
    w.heading("PLAN:")
    w.medication_list("plan")
    return w.document("progress_note", _outpatient(visit))


INTAKE_CHECKLIST = (
    ("Diabetes", "E11.9"), ("High blood pressure", "I10"), ("Asthma", "J45.909"),
    ("Heart disease", None), ("Depression", "F32.A"), ("Thyroid disease", None),
)


def intake_form(rng: random.Random, patient: Patient, visit: Visit, facility: str) -> SynthDocument:
    w = _Writer(patient, facility, "PATIENT INTAKE FORM")
    w.text(f"Date: {us_date(visit.start)}")
    w.line((0.08, f"Name: {patient.given} {patient.family}"), (0.55, f"DOB: {us_date(patient.birth_date)}"))
    w.line((0.08, f"Sex: {patient.sex.title()}"), (0.55, f"Phone: {patient.phone}"))
    w.text(f"Address: {patient.address}")
    w.heading("MEDICAL HISTORY (check all that apply):")
    codes = {d.icd10cm for d in patient.diagnoses}
    boxes = [Checkbox(0.08 + 0.30 * (i % 3), label, code in codes) for i, (label, code) in enumerate(INTAKE_CHECKLIST)]
    for row in range(0, len(boxes), 3):
        w.checkboxes(boxes[row:row + 3])
    for box, (_, code) in zip(boxes, INTAKE_CHECKLIST):
        if box.checked:
            w.fact("diagnoses", text=box.label, code=code, assertion="present", section="checklist", checkbox=True)
    w.page_break()
    w.heading("CURRENT MEDICATIONS:")
    w.medication_list("home medications")
    w.heading("ALLERGIES:")
    w.allergy_list()
    return w.document("intake_form", _outpatient(visit))


# Harder variants of the same document types (`generate_corpus(hard_cases=True)`): two
# columns, abbreviations, Yes/No check boxes, lab rows with a missing cell.
ABBREVIATIONS = {"I10": "HTN", "E11.9": "DM2", "E78.5": "HLD", "I25.10": "CAD", "I48.91": "AFib",
                 "I50.9": "CHF", "N18.31": "CKD 3a", "K21.9": "GERD", "G47.33": "OSA"}
LEFT_COLUMN, RIGHT_COLUMN = 0.06, 0.54


def _two_columns(w: _Writer, left: list[tuple[str, bool]], right: list[tuple[str, bool]]) -> None:
    """Print two lists of (text, bold) side by side; a row with one side empty has one run."""
    for index in range(max(len(left), len(right))):
        cells = [(x, column[index]) for x, column in ((LEFT_COLUMN, left), (RIGHT_COLUMN, right))
                 if index < len(column) and column[index][0]]
        # Bold is per printed line: only a line whose every run is a heading is bold.
        w.line(*[(x, text) for x, (text, _) in cells], bold=bool(cells) and all(bold for _, (_, bold) in cells))


def progress_note_two_column(rng: random.Random, patient: Patient, visit: Visit, facility: str) -> SynthDocument:
    """A progress note laid out in two columns, diagnoses abbreviated, a full-width footer."""
    w = _Writer(patient, facility, "PROGRESS NOTE")
    w.text(f"Visit Date: {us_date(visit.start)}")
    w.line((0.08, ""))
    negated = rng.choice(cat.NEGATABLE_FINDINGS)
    # A column holds about 45 characters: long phrases would run into the right column.
    family_dx = rng.choice([dx for dx in cat.DIAGNOSES if len(dx.phrase) <= 30])
    left: list[tuple[str, bool]] = [("SUBJECTIVE:", True), ("Follow-up visit.", False), (f"Denies {negated.phrase}.", False),
                                    ("", False), ("ASSESSMENT:", True)]
    w.fact("diagnoses", text=negated.phrase, code=negated.icd10cm, assertion="negated", section="subjective")
    for i, dx in enumerate(patient.diagnoses, 1):
        text = ABBREVIATIONS.get(dx.icd10cm, dx.phrase)
        left.append((f"{i}. {text}", False))
        w.fact("diagnoses", text=text, code=dx.icd10cm, assertion="present", section="assessment")
    left += [("", False), ("FAMILY HISTORY:", True), (f"Father with {family_dx.phrase.lower()}.", False)]
    w.fact("diagnoses", text=family_dx.phrase, code=family_dx.icd10cm, assertion="family", section="family history")
    v = visit.vitals
    right = [("VITALS:", True), (f"BP {v['systolic']:.0f}/{v['diastolic']:.0f} mmHg", False),
             (f"HR {v['heart_rate']:.0f} bpm", False), (f"RR {v['respiratory_rate']:.0f} /min", False),
             (f"Temp {v['temperature']:.1f} C", False), (f"SpO2 {v['spo2']:.0f} %", False),
             (f"Weight {v['weight']:.1f} kg", False), ("", False), ("PLAN:", True)]
    w.vital_facts(visit)
    for text, fact in w.medication_items("plan"):
        right.append((text, False))
        w.fact("medications", **fact)
    _two_columns(w, left, right)
    w.line((0.08, ""))
    w.text(f"Electronically signed by the attending physician after the visit of {us_date(visit.start)}.")
    return w.document("progress_note", _outpatient(visit))


def intake_form_yes_no(rng: random.Random, patient: Patient, visit: Visit, facility: str) -> SynthDocument:
    """The intake form with a Yes/No symptom checklist: a checked "No" is a negated finding."""
    document = intake_form(rng, patient, visit, facility)
    page = document.pages[0]
    page.append(Line([(0.08, "")]))
    page.append(Line([(0.08, "REVIEW OF SYSTEMS:")], bold=True))
    for finding in cat.NEGATABLE_FINDINGS:
        present = rng.random() < 0.3
        label = finding.phrase[0].upper() + finding.phrase[1:]
        page.append(CheckboxLine([Checkbox(0.45, "Yes", present), Checkbox(0.60, "No", not present)], prompt=label))
        document.gold["diagnoses"].append({"text": label, "code": finding.icd10cm, "checkbox": True,
                                           "assertion": "present" if present else "negated",
                                           "section": "review of systems", "page_index": 0})
    return document


def lab_report_with_gaps(rng: random.Random, patient: Patient, visit: Visit, facility: str) -> SynthDocument:
    """A lab report where one result has no reference range printed (an empty cell)."""
    document = lab_report(rng, patient, visit, facility)
    table = [line for line in document.pages[0] if isinstance(line, Line) and len(line.runs) == 5][1:]
    if table:
        index = rng.randrange(len(table))
        row, fact = table[index], document.gold["labs"][index]
        row.runs = [run for run in row.runs if run[0] != 0.68]
        fact.update(low=None, high=None, flag=row.runs[-1][1] or None)
    return document


HARD_BUILDERS: dict[str, Callable[[random.Random, Patient, Visit, str], SynthDocument]] = {
    "progress_note": progress_note_two_column,
    "intake_form": intake_form_yes_no,
    "lab_report": lab_report_with_gaps,
}

BUILDERS: dict[str, Callable[[random.Random, Patient, Visit, str], SynthDocument]] = {
    "discharge_summary": discharge_summary,
    "lab_report": lab_report,
    "prescription": prescription,
    "referral_letter": referral_letter,
    "progress_note": progress_note,
    "intake_form": intake_form,
}
