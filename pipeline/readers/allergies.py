"""Allergy list items: substance, reaction and severity; "NKDA" as a negated allergy."""

from __future__ import annotations

import re

from pipeline.readers.common import STRENGTH, Lexicons, ReadContext, new_entity, score_field
from pipeline.records import Entity
from pipeline.terminology import normalise_term

NON_DRUG_ALLERGENS = {"latex", "peanuts", "peanut", "shellfish", "eggs", "egg", "bee stings", "iodine", "contrast",
                      "tree nuts", "milk", "soy", "wheat", "fish", "adhesive tape"}
_SEVERITY = re.compile(r"\b(mild|moderate|severe|life[- ]threatening)\b", re.I)
_ALLERGY = re.compile(r"^(?P<substance>[A-Za-z][A-Za-z ,-]*?)\s*(?:[:(-]\s*(?P<reaction>[A-Za-z ,-]+?)\)?)?\s*$")
_NONE_KNOWN = ("nkda", "nka", "none", "no known allergies", "no known drug allergies")


class AllergyReader:
    """Items of an allergy list naming a known drug or a common non-drug allergen."""

    def __init__(self, lexicons: Lexicons):
        self.lexicons = lexicons

    def read(self, ctx: ReadContext) -> list[Entity]:
        if ctx.role != "allergies" or not ctx.text:
            return []
        ctx.claimed = True
        item = ctx.text
        if item.lower() in _NONE_KNOWN:
            entity = new_entity("allergy", item, ctx, "negated")
            score_field(entity, "substance", item, STRENGTH["pattern"])
            return [entity]
        severity = _SEVERITY.search(item)
        cleaned = _SEVERITY.sub("", item).replace("()", "").strip(" ,;-") if severity else item
        match = _ALLERGY.match(cleaned)
        substance = normalise_term(match.group("substance")) if match else ""
        known = substance in self.lexicons.medications or substance in NON_DRUG_ALLERGENS
        if not known:
            return []
        entity = new_entity("allergy", match.group("substance").strip(), ctx, "present")
        entity.value = (match.group("reaction") or "").strip(" ,-") or None
        entity.severity = severity.group(1).lower().replace("life threatening", "severe").replace(
            "life-threatening", "severe") if severity else None
        score_field(entity, "substance", entity.text, STRENGTH["exact_list_item"])
        if entity.value:
            score_field(entity, "reaction", entity.value, STRENGTH["pattern"])
        if entity.severity:
            score_field(entity, "severity", entity.severity, STRENGTH["pattern"])
        return [entity]
