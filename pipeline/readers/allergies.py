"""Allergy list items: substance, reaction and severity; "NKDA" as a negated allergy."""

from __future__ import annotations

import re

from pipeline.readers.common import STRENGTH, Lexicons, ReadContext, new_entity, score_field
from pipeline.records import Entity
from pipeline.terminology import normalise_term

NON_DRUG_ALLERGENS = {"latex", "peanuts", "peanut", "shellfish", "eggs", "egg", "bee stings", "iodine", "contrast",
                      "tree nuts", "milk", "soy", "wheat", "fish", "adhesive tape"}
_SEVERITY = re.compile(r"\b(mild|moderate|severe|life[- ]threatening)\b", re.I)
_ALLERGY = re.compile(r"^(?P<substance>[A-Za-z][A-Za-z -]*?)\s*(?:[:(-]\s*(?P<reaction>[A-Za-z ,()-]+?)\)?)?\s*$")
_NONE_KNOWN = ("nkda", "nka", "none", "no known allergies", "no known drug allergies", "no known allergy")
_MAX_SUBSTANCE_WORDS = 5
_REACTION_LABEL = re.compile(r"\s*[/,;-]?\s*\breactions?\s*:\s*", re.I)
_LABELLED_SUBSTANCE = re.compile(r"^[A-Za-z][A-Za-z ,()-]*$")
# A reaction written after a colon or a spaced dash may hold commas ("Penicillin - hives,
# severe"): the list is then split at semicolons only.
_REACTION_SEPARATOR = re.compile(r":|\s[-\u2013]\s")
# Words of a letter's closing or a signature line that can follow a list with no heading between.
_NOT_A_SUBSTANCE = re.compile(r"\b(?:regards|sincerely|thanks?|thank you|yours|signed|dictated|electronically|"
                              r"reviewed|page)\b")


class AllergyReader:
    """Each substance of an allergy list: one per line, or several on a line separated by
    semicolons or commas ("Latex, mold; penicillin (hives)"). A list item is an allergy by its
    place; a known drug or common allergen only raises its confidence."""

    def __init__(self, lexicons: Lexicons):
        self.lexicons = lexicons

    def read(self, ctx: ReadContext) -> list[Entity]:
        if ctx.role != "allergies" or not ctx.text:
            return []
        ctx.claimed = True
        if normalise_term(ctx.text) in _NONE_KNOWN:
            entity = new_entity("allergy", ctx.text, ctx, "negated")
            score_field(entity, "substance", ctx.text, STRENGTH["pattern"])
            return [entity]
        return [entity for part in _parts(ctx.text) if (entity := self._allergy(part, ctx))]

    def _allergy(self, item: str, ctx: ReadContext) -> Entity | None:
        severity = _SEVERITY.search(item)
        cleaned = _SEVERITY.sub("", item).replace("()", "").strip(" ,;-") if severity else item
        labelled = _REACTION_LABEL.split(cleaned, maxsplit=1)
        if len(labelled) == 2:
            # "Eggs (edible) / reaction: angioedema": the label says where the substance ends, so
            # the substance may keep a qualifier in brackets.
            substance, reaction = labelled[0].strip(" ,;-"), labelled[1]
            if not _LABELLED_SUBSTANCE.match(substance):
                return None
        elif match := _ALLERGY.match(cleaned):
            substance, reaction = match.group("substance"), match.group("reaction")
        else:
            return None
        if len(substance.split()) > _MAX_SUBSTANCE_WORDS:
            return None
        name = normalise_term(substance)
        known = name in self.lexicons.medications or name in NON_DRUG_ALLERGENS
        if not known and _NOT_A_SUBSTANCE.search(name):
            return None
        entity = new_entity("allergy", substance.strip(), ctx, "present")
        entity.value = (reaction or "").strip(" ,-()") or None
        entity.severity = severity.group(1).lower().replace("life threatening", "severe").replace(
            "life-threatening", "severe") if severity else None
        score_field(entity, "substance", entity.text, STRENGTH["exact_list_item" if known else "unknown_list_item"])
        if entity.value:
            score_field(entity, "reaction", entity.value, STRENGTH["pattern"])
        if entity.severity:
            score_field(entity, "severity", entity.severity, STRENGTH["pattern"])
        return entity


def _parts(text: str) -> list[str]:
    """Items of an inline allergy list, split at ';' (and at ',' where no item names its
    reaction after a colon or dash: "Penicillin - hives, severe" is one item) outside
    parentheses, so "Eggs (edible), soy" is two."""
    separators = ";," if not _REACTION_SEPARATOR.search(text) else ";"
    parts, depth, current = [], 0, []
    for char in text:
        depth += (char == "(") - (char == ")")
        if char in separators and depth <= 0:
            parts.append("".join(current))
            current, depth = [], 0
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip(" .") for part in parts if part.strip(" .")]
