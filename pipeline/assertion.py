"""NegEx/ConText-style assertion: is a mention the patient's present fact?

A trigger before the mention ("denies", "history of", "mother had", "rule out") or after it
("... was ruled out", "... in her mother") sets the assertion within its scope; a scope ends
at a terminator (sentence end, "but", "however", ", with ..."). Pseudo-triggers ("history of
present illness", "no change") look like triggers and are not. When several apply, the order
is negated > family > hypothetical > historical: "no family history of X" is not a family fact.
"""

from __future__ import annotations

import re

ASSERTIONS = ("present", "negated", "historical", "family", "hypothetical")
# Words a pre-trigger reaches across (NegEx uses five to six).
PRE_SCOPE_WORDS = 8
POST_SCOPE_WORDS = 5

_PRE_TRIGGERS: dict[str, str] = {
    "negated": r"no|not|denies|denied|denying|negative for|without|free of|no evidence of|no signs? of|"
               r"absence of|ruled out|never had|no history of|no known|neither|nor",
    "family": r"mother|father|sister|brother|siblings?|grandmother|grandfather|aunt|uncle|son|daughter|parents?|"
              r"family history of|family hx of|fhx|fh of|maternal|paternal|mother's|father's",
    "hypothetical": r"if|return if|should|in case of|rule out|r/o|possible|possibly|suspected|suspicion of|"
                    r"concern for|question of|evaluate for|eval for|to exclude|risk of|may have|cannot exclude|"
                    r"planned|scheduled for|to be scheduled",
    "historical": r"history of|hx of|h/o|s/p|status post|prior|previous|previously|past|remote|in the past",
}
_POST_TRIGGERS: dict[str, str] = {
    "negated": r"(?:was |is |has been )?ruled out|unlikely|not seen|(?:was |is )?negative|(?:is )?absent",
    "family": r"in (?:his |her |the patient's )?(?:mother|father|sister|brother|grandmother|grandfather|aunt|uncle)|"
              r"runs in the family",
    "hypothetical": r"(?:is )?possible|(?:is )?suspected|to be ruled out|\?",
    "historical": r"in the past|(?:now )?resolved",
}
_PSEUDO = re.compile(r"history of present illness|no increase|not only|no change|without difficulty|"
                     r"gram negative|not certain whether|no further")
_TERMINATOR = re.compile(r"[;.:]|,\s*(?:with|but|and)\b|\b(?:but|however|although|though|except|aside from|"
                         r"presents? with|presenting with|now)\b")
_PRIORITY = ("negated", "family", "hypothetical", "historical")


def _compile(triggers: dict[str, str]) -> dict[str, re.Pattern[str]]:
    return {kind: re.compile(rf"(?<![a-z0-9'/])(?:{alternatives})(?![a-z0-9'/])") for kind, alternatives in triggers.items()}


_PRE = _compile(_PRE_TRIGGERS)
_POST = _compile(_POST_TRIGGERS)

# Family words -> HL7 v3 RoleCode (FamilyMemberHistory.relationship).
RELATIONSHIPS = {
    "mother": ("MTH", "mother"), "father": ("FTH", "father"), "sister": ("SIS", "sister"),
    "brother": ("BRO", "brother"), "sibling": ("SIB", "sibling"), "siblings": ("SIB", "sibling"),
    "grandmother": ("GRMTH", "grandmother"), "grandfather": ("GRFTH", "grandfather"), "aunt": ("AUNT", "aunt"),
    "uncle": ("UNCLE", "uncle"), "son": ("SON", "natural son"), "daughter": ("DAU", "natural daughter"),
    "parent": ("PRN", "parent"), "parents": ("PRN", "parent"),
    "maternal aunt": ("MAUNT", "maternal aunt"), "paternal aunt": ("PAUNT", "paternal aunt"),
    "maternal uncle": ("MUNCLE", "maternal uncle"), "paternal uncle": ("PUNCLE", "paternal uncle"),
    "maternal grandmother": ("MGRMTH", "maternal grandmother"), "paternal grandmother": ("PGRMTH", "paternal grandmother"),
    "maternal grandfather": ("MGRFTH", "maternal grandfather"), "paternal grandfather": ("PGRFTH", "paternal grandfather"),
    "maternal": ("MAMEMB", "maternal family member"),
    "paternal": ("PAMEMB", "paternal family member"),
}
FAMILY_MEMBER = ("FAMMEMB", "family member")
_RELATION_WORD = re.compile(r"\b(" + "|".join(sorted(RELATIONSHIPS, key=len, reverse=True)) + r")(?:'s)?\b")


def _scope_before(text: str) -> str:
    clause = _TERMINATOR.split(text.lower())[-1]
    return " ".join(clause.split()[-PRE_SCOPE_WORDS:])


def _scope_after(text: str) -> str:
    clause = _TERMINATOR.split(text.lower())[0]
    return " ".join(clause.split()[:POST_SCOPE_WORDS])


def _found(patterns: dict[str, re.Pattern[str]], scope: str) -> set[str]:
    scope = _PSEUDO.sub(" ", scope)
    return {kind for kind, pattern in patterns.items() if pattern.search(scope)}


def assertion_of(text_before: str, section_role: str, text_after: str = "") -> str:
    """The assertion of a mention from the words before and after it and its section's role."""
    kinds = _found(_PRE, _scope_before(text_before)) | _found(_POST, _scope_after(text_after))
    if section_role == "family":
        kinds.add("family")
    return next((kind for kind in _PRIORITY if kind in kinds), "present")


def relationship_of(text: str) -> tuple[str, str]:
    """(v3 RoleCode, display) of the family member a family-history phrase names; a generic
    family member when it names none ("family history of diabetes")."""
    match = _RELATION_WORD.search(text.lower())
    return RELATIONSHIPS[match.group(1)] if match else FAMILY_MEMBER
