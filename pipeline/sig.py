"""Medication instructions ("sig") -> route, frequency, PRN and duration in FHIR Timing terms.

`parse_sig("PO q4-6h prn pain for 7 days")` gives route PO, one dose every 4 to 6 hours,
as needed for pain, bounded to 7 days. Words it does not understand are returned, so the
caller can lower its confidence rather than silently drop them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Timing:
    """Timing.repeat: `frequency` doses per `period` (up to `period_max`) `period_unit`, at `when`."""

    code: str
    frequency: int
    period: float
    period_unit: str
    period_max: float | None = None
    when: str | None = None


@dataclass
class Sig:
    """What a medication instruction says beyond the drug and strength."""

    route: str | None = None
    timing: Timing | None = None
    as_needed: bool = False
    as_needed_for: str | None = None
    duration_value: float | None = None
    duration_unit: str | None = None
    unparsed: list[str] = field(default_factory=list)

    @property
    def frequency_code(self) -> str | None:
        """BID, Q6H, Q4-6H ...; PRN when the only timing is "as needed"."""
        if self.timing:
            return self.timing.code
        return "PRN" if self.as_needed else None


# Longer phrases first: "twice daily" must not be read as "daily".
_NAMED_TIMINGS: tuple[tuple[str, Timing], ...] = (
    (r"twice (?:a )?daily|twice a day|two times (?:a )?day|two times daily|b\.?i\.?d", Timing("BID", 2, 1, "d")),
    (r"three times (?:a )?day|three times daily|t\.?i\.?d", Timing("TID", 3, 1, "d")),
    (r"four times (?:a )?day|four times daily|q\.?i\.?d", Timing("QID", 4, 1, "d")),
    (r"q\.?h\.?s|at bedtime|nightly|bedtime|h\.?s", Timing("QHS", 1, 1, "d", when="HS")),
    (r"q\.?am|every morning|in the morning", Timing("QAM", 1, 1, "d", when="MORN")),
    (r"q\.?pm|every evening|in the evening", Timing("QPM", 1, 1, "d", when="EVE")),
    (r"q\.?o\.?d|every other day", Timing("QOD", 1, 2, "d")),
    (r"once (?:a )?weekly|once a week|every week|weekly|q\.?wk", Timing("QWK", 1, 1, "wk")),
    (r"once (?:a )?daily|once a day|every day|daily|q\.?d|q24h|every 24 hours", Timing("QD", 1, 1, "d")),
)
_UNIT_WORDS = {"h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "d": "d", "day": "d", "days": "d",
               "wk": "wk", "week": "wk", "weeks": "wk", "mo": "mo", "month": "mo", "months": "mo"}
_INTERVAL = re.compile(
    r"\b(?:q|every)\s*(?P<low>\d{1,2})(?:\s*(?:-|to)\s*(?P<high>\d{1,2}))?\s*"
    r"(?P<unit>h|hrs?|hours?|d|days?|wk|weeks?)\b")
_DURATION = re.compile(r"(?:\bfor|\bx|×)\s*(?P<value>\d{1,3})\s*(?P<unit>d|days?|wk|weeks?|mo|months?|h|hours?)\b")
_AS_NEEDED = re.compile(r"\b(?:prn|as needed|as required|when required)\b(?:\s+(?:for\s+)?(?P<reason>[a-z]+(?: [a-z]+)?))?")
_DOTTED_INTERVAL = re.compile(r"(?<![a-z])q\.\s?(\d{1,2})\s?\.?\s?([hd])\.?")
_MEALS = ((r"with (?:meals|food)", "C"), (r"before meals|a\.?c\.?", "AC"), (r"after meals|p\.?c\.?", "PC"))
_ROUTES: tuple[tuple[str, str], ...] = (
    (r"by mouth|p\.?o\.?|orally|oral", "PO"), (r"intravenous(?:ly)?|i\.?v\.?", "IV"),
    (r"intramuscular(?:ly)?|i\.?m\.?", "IM"), (r"subcutaneous(?:ly)?|subcut|sub-?q|s\.?c\.?|s\.?q\.?", "SC"),
    (r"sublingual(?:ly)?|s\.?l\.?", "SL"), (r"rectal(?:ly)?|p\.?r\.?", "PR"), (r"topical(?:ly)?", "TOP"),
    (r"inhaled|via inhaler|inhalation|nebuli[sz]ed", "INH"),
)
# Words a sig carries that say nothing structured: not counted as unparsed.
_FILLER = frozenset({"take", "takes", "give", "apply", "inject", "use", "tablet", "tablets", "tab", "tabs", "capsule",
                     "capsules", "cap", "caps", "puff", "puffs", "drop", "drops", "one", "two", "1", "2", "½",
                     "and", "then", "by", "of", "the", "a", "to", "per", "dose", "times", "time"})


def _consume(pattern: str, text: str) -> tuple[re.Match[str] | None, str]:
    match = re.search(rf"(?<![a-z0-9]){pattern}(?![a-z0-9])", text)
    if not match:
        return None, text
    return match, text[:match.start()] + " " + text[match.end():]


def parse_sig(text: str) -> Sig:
    """Route, timing, PRN and duration of an instruction; leftover words in `unparsed`."""
    rest = " " + _DOTTED_INTERVAL.sub(r"q\1\2", text.lower()).replace(",", " ").replace(";", " ") + " "
    sig = Sig()
    match, rest = _consume(_DURATION.pattern, rest)
    if match:
        sig.duration_value, sig.duration_unit = float(match["value"]), _UNIT_WORDS[match["unit"]]
    match, rest = _consume(_INTERVAL.pattern, rest)
    if match and int(match["low"]) > 0:
        low, high, unit = int(match["low"]), match["high"], _UNIT_WORDS[match["unit"]]
        code = f"Q{low}-{high}{unit[0].upper()}" if high else f"Q{low}{unit[0].upper()}"
        sig.timing = Timing(code, 1, low, unit, float(high) if high else None)
    elif match:  # "q0h": an interval of nothing is a misread
        sig.unparsed.append(match.group(0).strip())
    else:
        for pattern, timing in _NAMED_TIMINGS:
            match, rest = _consume(pattern, rest)
            if match:
                sig.timing = timing
                break
    for pattern, when in _MEALS:
        match, rest = _consume(pattern, rest)
        if match and sig.timing and not sig.timing.when:
            sig.timing = replace(sig.timing, when=when)
        elif match:
            sig.unparsed.append(match.group(0).strip())
    for pattern, route in _ROUTES:
        match, rest = _consume(pattern, rest)
        if match:
            sig.route = route
            break
    # Last, so the words after "prn" are its reason, not a route or frequency.
    match, rest = _consume(_AS_NEEDED.pattern, rest)
    if match:
        sig.as_needed = True
        reason = [word for word in (match["reason"] or "").split() if word not in _FILLER]
        sig.as_needed_for = " ".join(reason) or None
    sig.unparsed += [word for word in re.findall(r"[a-z0-9/.½-]+", rest) if word.strip(".") not in _FILLER]
    return sig
