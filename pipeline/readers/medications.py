"""Medication lines: drug, dose and unit, dose form, and the sig (pipeline.sig) in FHIR Timing terms."""

from __future__ import annotations

import re

from pipeline.assertion import assertion_of
from pipeline.readers.common import (NUMBER, STRENGTH, Lexicons, ReadContext, longest_known_prefix, new_entity,
                                     score_field)
from pipeline.records import Entity
from pipeline.sig import parse_sig

_MEDICATION = re.compile(
    rf"^(?P<name>[A-Za-z][A-Za-z -]*?)\s+(?P<dose>{NUMBER})\s*(?P<unit>mg|mcg|µg|g|mL|units?|IU|mEq)\b"
    r"(?:\s+(?P<form>tablets?|capsules?|tab|cap|inhaler|solution|patch|injection))?(?P<rest>.*)$",
    re.I,
)
_MEDICATION_NO_UNIT = re.compile(rf"^(?P<name>[A-Za-z][A-Za-z -]*?)\s+(?P<dose>{NUMBER})(?P<rest>(?:\s.*)?)$")
_STOPPED = re.compile(r"\b(?:stopped|discontinued|d/c'?d|held|on hold|hold)\b", re.I)
# Medication lists that report what the patient already takes, as opposed to what is prescribed here.
REPORTED_MEDICATION_SECTIONS = frozenset({"home medications", "medications"})


class MedicationReader:
    """In a medication list every line naming a known drug; elsewhere only a known drug with a dose."""

    def __init__(self, lexicons: Lexicons):
        self.lexicons = lexicons

    def read(self, ctx: ReadContext) -> list[Entity]:
        if ctx.role == "allergies" or not ctx.text:
            return []
        medication = self._medication(ctx.text, ctx, strict=ctx.role != "medications")
        if medication is None:
            return []
        ctx.claimed = True
        return [medication]

    def _medication(self, item: str, ctx: ReadContext, strict: bool) -> Entity | None:
        """A medication mention; with `strict`, only a known drug followed by a dose."""
        match = _MEDICATION.match(item)
        unitless = None if match else _MEDICATION_NO_UNIT.match(item)
        if strict and not match:
            return None
        name = (match or unitless).group("name") if (match or unitless) else item
        drug = longest_known_prefix(name, self.lexicons.medications)
        if drug is None:
            return None
        assertion = assertion_of(item[:item.lower().find(drug.lower())], ctx.role)
        entity = new_entity("medication", name.strip() if (match or unitless) else drug, ctx, assertion)
        entity.attribute = drug  # the recognised drug name: what the code stage looks up
        entity.status = medication_status(item, ctx)
        score_field(entity, "name", drug, STRENGTH["pattern"] if (match or unitless) else STRENGTH["name_only"])
        if match:
            entity.text = f"{name.strip()} {match.group('dose')} {match.group('unit')}"
            entity.dose_value, entity.dose_unit = float(match.group("dose")), match.group("unit").lower()
            entity.value = (match.group("form") or "").lower() or None
            score_field(entity, "dose", f"{entity.dose_value:g} {entity.dose_unit}", STRENGTH["pattern"])
            apply_sig(entity, match.group("rest"))
        elif unitless:
            # "Metformin 500 BID": a number without a unit is a dose nobody can be sure of.
            entity.dose_value = float(unitless.group("dose"))
            score_field(entity, "dose", unitless.group("dose"), STRENGTH["no_unit"])
            apply_sig(entity, unitless.group("rest"))
        return entity


def apply_sig(entity: Entity, instruction: str) -> None:
    """Route, frequency, timing, PRN and duration of a medication from its instruction text."""
    sig = parse_sig(instruction)
    entity.route, entity.frequency = sig.route, sig.frequency_code
    if sig.timing:
        entity.timing_frequency, entity.timing_period = sig.timing.frequency, sig.timing.period
        entity.timing_period_max, entity.timing_period_unit = sig.timing.period_max, sig.timing.period_unit
        entity.timing_when = sig.timing.when
    entity.as_needed, entity.as_needed_for = sig.as_needed, sig.as_needed_for
    entity.duration_value, entity.duration_unit = sig.duration_value, sig.duration_unit
    # Words of the sig nobody understood lower the timing's confidence: they may change it.
    strength = STRENGTH["unparsed_sig"] if sig.unparsed else STRENGTH["pattern"]
    if entity.frequency or sig.unparsed:
        score_field(entity, "frequency", entity.frequency, strength)
    if entity.route:
        score_field(entity, "route", entity.route, STRENGTH["pattern"])
    if sig.duration_value is not None:
        score_field(entity, "duration", f"{sig.duration_value:g} {sig.duration_unit}", STRENGTH["pattern"])


def medication_status(item: str, ctx: ReadContext) -> str:
    """stopped when the line says so; reported for a list of what the patient takes;
    active for what this document prescribes (discharge list, prescription, plan)."""
    if _STOPPED.search(item):
        return "stopped"
    if ctx.section in REPORTED_MEDICATION_SECTIONS and ctx.document_type != "prescription":
        return "reported"
    return "active"
