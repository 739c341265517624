"""Medication lines: drug, dose and unit, dose form, and the sig (pipeline.sig) in FHIR Timing terms."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.assertion import assertion_of
from pipeline.readers.common import (NUMBER, STRENGTH, Lexicons, ReadContext, longest_known_prefix, new_entity,
                                     score_field)
from pipeline.records import Entity
from pipeline.sig import parse_sig

_STOPPED = re.compile(r"\b(?:stopped|discontinued|d/c'?d|held|on hold|hold)\b", re.I)
# Medication lists that report what the patient already takes, as opposed to what is prescribed here.
REPORTED_MEDICATION_SECTIONS = frozenset({"home medications", "medications"})

# A strength as RxNorm and charts write it: "325 mg", "150 mg/ml", "0.044 mg/actuat", "100 unit/ml".
_STRENGTH = re.compile(
    rf"(?<![\w.])(?P<dose>{NUMBER})\s*(?P<unit>mg|mcg|µg|ug|g|ml|units?|iu|meq|mmol|%)"
    r"(?P<per>\s*/\s*(?:ml|actuat|hr|h|g|l|dose|spray|puff))?(?![a-z])", re.I)
# A leading amount before the drug: a volume, a pack or an actuation count ("1 ml ...",
# "120 actuat ...", "24 hr ..." for an extended-release product).
_LEADING_AMOUNT = re.compile(rf"^(?:{NUMBER}\s*(?:ml|actuat|hr|day)\b\s*)+", re.I)
# Dose-form words (RxNorm dose forms, TTY=DF, and their chart abbreviations): they belong to
# the product, not to the instructions after it.
_DOSE_FORM_WORDS = (
    "oral", "tablet", "tablets", "tab", "tabs", "capsule", "capsules", "cap", "caps", "chewable", "disintegrating",
    "extended", "delayed", "release", "er", "xr", "sr", "dr", "film", "coated", "solution", "suspension", "syrup",
    "elixir", "injection", "injectable", "prefilled", "syringe", "auto-injector", "autoinjector", "pen", "cartridge",
    "inhaler", "inhalation", "inhalant", "metered", "dose", "powder", "nasal", "spray", "aerosol", "nebulizer",
    "transdermal", "patch", "system", "topical", "cream", "ointment", "gel", "lotion", "foam", "shampoo",
    "ophthalmic", "otic", "drops", "suppository", "rectal", "vaginal", "ring", "insert", "implant", "intrauterine",
    "device", "lozenge", "troche", "sublingual", "buccal", "pack", "kit", "granules", "packet", "enema", "liquid",
    "mouthwash", "paste", "pellet", "wafer", "strip", "gum", "medicated", "pad", "swab", "for", "reconstitution",
)
_DOSE_FORM = "(?:" + "|".join(re.escape(w) for w in _DOSE_FORM_WORDS) + ")"
_PRODUCT_TAIL = re.compile(rf"(?:\s*(?:/\s*)?{_DOSE_FORM}\b)*(?:\s*\[[^\]]+\])?", re.I)
# "name [N day|N count] dose-form words": the whole item, a name of at most four words before it.
_FORM_ONLY = re.compile(
    r"^(?P<name>[A-Za-z][A-Za-z0-9.'-]*(?:\s+[A-Za-z][A-Za-z0-9.'-]*){0,3})\s+(?:\d+\s*(?:day|count|dose)\s+)?"
    rf"(?P<form>(?:{_DOSE_FORM}\b\s*)+)$", re.I)
# Dose forms that say the route when the instruction does not (FHIR route from the product).
_ROUTE_OF_FORM = (("oral", "PO"), ("tablet", "PO"), ("capsule", "PO"), ("tab", "PO"), ("inhal", "INH"),
                  ("transdermal", "TD"), ("topical", "TOP"), ("cream", "TOP"), ("ointment", "TOP"),
                  ("nasal", "NASAL"), ("ophthalmic", "OPH"), ("rectal", "PR"), ("sublingual", "SL"),
                  ("vaginal", "VAG"))


@dataclass
class Product:
    """What a medication line names before its instructions."""

    description: str  # as written: drug(s), strength(s), dose form, [brand]
    name: str  # the drug names alone: what the terminology index is asked when the product is not found
    dose: float | None
    unit: str | None
    form: str | None
    instructions: str


def read_product(item: str) -> Product | None:
    """The product a medication line names ("acetaminophen 325 mg / oxycodone 10 mg oral tablet
    [percocet] 1 tab q6h prn"), or None when the line has no strength."""
    item = item.strip()
    amount = _LEADING_AMOUNT.match(item)
    prefix = amount.group(0) if amount else ""
    text = item[len(prefix):]
    strengths = list(_STRENGTH.finditer(text))
    if not strengths or not re.match(r"[A-Za-z]", text):
        return None
    # A combination product lists "drug strength / drug strength": its strengths are chained by "/".
    last = strengths[0]
    for following in strengths[1:]:
        between = text[last.end():following.start()]
        if "/" not in between or len(between.split()) > 6:
            break
        last = following
    tail = _PRODUCT_TAIL.match(text, last.end())
    end = tail.end() if tail else last.end()
    description = " ".join((prefix + text[:end]).split())
    name = " ".join(_STRENGTH.sub(" ", text[:strengths[0].start()]).split()).strip(" /,")
    for strength in strengths[1:]:
        if strength.end() <= end:
            name += " / " + " ".join(text[text.rfind("/", 0, strength.start()) + 1:strength.start()].split())
    form_words = text[last.end():end].strip(" /").lower()
    form = re.sub(r"\s*\[[^\]]+\]", "", form_words).strip() or None
    first = strengths[0]
    unit = first.group("unit").lower() + (first.group("per") or "").replace(" ", "").lower()
    return Product(description, name.strip(" /"), float(first.group("dose")), unit, form, text[end:].strip(" ,;-"))


def read_form_only(item: str) -> Product | None:
    """A list item that names a product by its dose form alone, with no strength: a pack or
    kit ("Brandname 28 day pack", RxNorm's pack names), a device or an inhaler."""
    match = _FORM_ONLY.match(item.strip())
    if not match:
        return None
    name, form = match.group("name").strip(), match.group("form").strip().lower()
    return Product(" ".join(item.split()), name, None, None, form, "")


class MedicationReader:
    """In a medication list every line with a strength or naming a known drug; elsewhere a line
    that reads as a product (known drug with a strength, or a strength followed by a dose form)."""

    def __init__(self, lexicons: Lexicons):
        self.lexicons = lexicons

    def read(self, ctx: ReadContext) -> list[Entity]:
        if ctx.role == "allergies" or not ctx.text:
            return []
        if ctx.role in ("narrative", "family", "social"):
            return self._in_prose(ctx)
        listed = ctx.role == "medications"
        # An inline list ("a 10 mg tab; b 5 mg tab") is one medication per part.
        parts = [part.strip() for part in ctx.text.split(";")] if listed else [ctx.text]
        found = [m for m in (self._medication(part, ctx, strict=not listed) for part in parts if part) if m]
        if found:
            ctx.claimed = True
        return found

    def _in_prose(self, ctx: ReadContext) -> list[Entity]:
        """A known drug followed by its strength anywhere in a paragraph ("... started metformin
        500 mg twice daily."); the paragraph stays open to the other readers."""
        found = []
        for sentence in re.finditer(r"[^.;]+(?:\.(?!\d)|;|$)", ctx.text):
            words = sentence.group(0).split()
            for i in range(len(words)):
                if not longest_known_prefix(" ".join(words[i:i + 4]), self.lexicons.medications):
                    continue
                medication = self._medication(" ".join(words[i:]).rstrip("."), ctx, strict=True)
                if medication is not None:
                    found.append(medication)
                    break
        return found

    def _medication(self, item: str, ctx: ReadContext, strict: bool) -> Entity | None:
        product = read_product(item) or (None if strict else read_form_only(item))
        drug = longest_known_prefix(product.name if product else item, self.lexicons.medications)
        if product is None:
            return None if strict or drug is None else self._named_only(item, drug, ctx)
        if strict and drug is None and not product.form:
            return None
        assertion = assertion_of(item[:item.lower().find(product.name.lower()[:8])] if product.name else "", ctx.role)
        entity = new_entity("medication", product.description, ctx, assertion)
        # The drug (what dose rules name); the code stage looks up the product (the text) first.
        entity.attribute = drug or product.name
        entity.status = medication_status(item, ctx)
        entity.dose_value, entity.dose_unit, entity.value = product.dose, product.unit, product.form
        known = drug is not None
        score_field(entity, "name", product.name or product.description,
                    STRENGTH["pattern"] if known else STRENGTH["unknown_list_item"])
        if product.dose is not None:
            score_field(entity, "dose", f"{product.dose:g} {product.unit}", STRENGTH["pattern"])
        apply_sig(entity, product.instructions)
        if entity.route is None and product.form:
            entity.route = next((route for word, route in _ROUTE_OF_FORM if word in product.form), None)
        return entity

    @staticmethod
    def _named_only(item: str, drug: str, ctx: ReadContext) -> Entity:
        """A list line naming a known drug without a strength ("Metformin 500 BID", "aspirin daily")."""
        entity = new_entity("medication", drug, ctx, assertion_of(item[:item.lower().find(drug.lower())], ctx.role))
        entity.attribute = drug
        entity.status = medication_status(item, ctx)
        rest = item[len(drug):] if item.lower().startswith(drug.lower()) else item
        number = re.match(rf"\s*({NUMBER})(?=\s|$)", rest)
        if number:
            # "Metformin 500 BID": a number without a unit is a dose nobody can be sure of.
            entity.text = f"{drug} {number.group(1)}"
            entity.dose_value = float(number.group(1))
            score_field(entity, "name", drug, STRENGTH["pattern"])
            score_field(entity, "dose", number.group(1), STRENGTH["no_unit"])
            rest = rest[number.end():]
        else:
            score_field(entity, "name", drug, STRENGTH["name_only"])
        apply_sig(entity, rest)
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
