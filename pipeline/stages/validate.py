"""Validate stage: rules read from a rules file, field confidence, and `requires_review`.

The rules are data (`pipeline/data/validation_rules.yaml`, or the file `validate.rules_path`
names): each says which entities and field it judges, the check, its parameters, severity and
message. `RuleEngine` applies them. Entity rules (ranges, dates, codes, check digits) need
one entity; document rules (date order, date before birth, duplicates across pages) need
every page of a document, so they run here over the pages a batch holds and again in the
table writer over the whole document (`DocumentFacts`).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.config import ValidateConfig
from pipeline.confidence import combine, review_priority
from pipeline.records import Entity, FieldScore
from pipeline.stages.base import Resources, Stage
from pipeline.terminology import normalise_term
from terminology_index import ICD10CM, LOINC, RXNORM

LOW_CONFIDENCE = "low_confidence"
# Flags set by earlier stages, with the field a reviewer checks for them.
STAGE_FLAG_FIELDS = {"uncoded": "code"}
_ICD10CM_CODE = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
_RXCUI = re.compile(r"^[0-9]{1,8}$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DOSE_IN_MG = {"mg": 1.0, "g": 1000.0, "mcg": 0.001, "ug": 0.001, "µg": 0.001}


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC codes end in a mod-10 check digit over the part before the hyphen."""
    match = re.fullmatch(r"(\d{1,7})-(\d)", code)
    if not match:
        return False
    digits = match.group(1)
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10 == int(match.group(2))


def nhs_number_ok(number: str) -> bool:
    """NHS number: ten digits, the last a modulus 11 check over the first nine (weights 10..2)."""
    digits = re.sub(r"[\s-]", "", number)
    if not re.fullmatch(r"\d{10}", digits):
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1))) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def luhn_ok(number: str) -> bool:
    """Luhn (mod 10): the check digit many US MRN systems append."""
    digits = re.sub(r"[\s-]", "", number)
    if not re.fullmatch(r"\d{2,}", digits):
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 1 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


CODE_FORMATS = {
    ICD10CM: lambda code: bool(_ICD10CM_CODE.match(code)),
    LOINC: loinc_check_digit_ok,
    RXNORM: lambda code: bool(_RXCUI.match(code)),
}
CHECK_DIGITS = {"nhs_mod11": nhs_number_ok, "luhn": luhn_ok}


class RuleFilter(BaseModel):
    """Which entities of the rule's kind it judges; every given filter must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    attribute: str | None = None
    text_contains: str | None = None
    unit: str | None = None


class Rule(BaseModel):
    """One row of the rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    flag: str
    kind: str  # an entity kind, or "*" for all
    field: str
    check: Literal["range", "not_future", "min_year", "code_format", "check_digit", "date_order",
                   "date_after_birth", "duplicate"]
    where: RuleFilter = RuleFilter()
    params: dict[str, Any] = {}
    severity: Literal["error", "warning", "info"]
    enabled: bool = True
    message: str

    def applies_to(self, entity: Entity) -> bool:
        if self.kind not in ("*", entity.kind):
            return False
        where = self.where
        if where.attribute and normalise_term(entity.attribute or "") != normalise_term(where.attribute):
            return False
        if where.text_contains and normalise_term(where.text_contains) not in normalise_term(
                f"{entity.text} {entity.attribute or ''}"):
            return False
        return not where.unit or entity.unit == where.unit


def load_rules(path: str | None = None) -> list[Rule]:
    """The rules of `path`, or the packaged rules; a bad rule fails naming its position and id."""
    if path:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    else:
        text = (resources.files("pipeline") / "data" / "validation_rules.yaml").read_text(encoding="utf-8")
    entries = yaml.safe_load(text) or []
    if not isinstance(entries, list):
        raise ValueError(f"rules file {path or 'validation_rules.yaml'} must be a list of rules")
    rules = []
    for position, entry in enumerate(entries):
        try:
            rules.append(Rule.model_validate(entry))
        except ValidationError as error:
            rule_id = entry.get("id") if isinstance(entry, dict) else None
            raise ValueError(f"rule {position} ({rule_id}) is invalid: {error}") from error
    ids = [rule.id for rule in rules]
    if len(set(ids)) != len(ids):
        raise ValueError(f"rule ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
    return rules


@dataclass(frozen=True)
class Finding:
    """A rule that fired on one field of one entity."""

    rule: Rule
    entity_id: str
    field: str
    value: str | None


@dataclass
class _Dated:
    entity_id: str
    kind: str
    attribute: str | None
    value: date
    page_index: int


@dataclass
class DocumentFacts:
    """What the document rules need from every page of one document, kept small: its dates
    and one fingerprint per clinical fact (to spot a fact read again on another page)."""

    dates: list[_Dated] = field(default_factory=list)
    first_seen: dict[bytes, tuple[int, str]] = field(default_factory=dict)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (entity id, its text)

    def observe(self, entity: Entity, duplicate_kinds: frozenset[str]) -> None:
        value = _date_of(entity)
        if value is not None:
            self.dates.append(_Dated(entity.entity_id, entity.kind, entity.attribute, value, entity.page_index))
        if entity.kind in duplicate_kinds and entity.assertion != "negated":
            key = _fingerprint(entity)
            first = self.first_seen.setdefault(key, (entity.page_index, entity.entity_id))
            if first[0] != entity.page_index and first[1] != entity.entity_id:
                self.duplicates.append((entity.entity_id, entity.text))


def _fingerprint(entity: Entity) -> bytes:
    """Eight bytes per fact, so a long document's fingerprints stay small."""
    key = "|".join(str(part) for part in (entity.kind, normalise_term(entity.text), entity.value, entity.value_num,
                                          entity.unit, entity.dose_value, entity.frequency, entity.assertion))
    return hashlib.blake2b(key.encode(), digest_size=8).digest()


def _date_of(entity: Entity) -> date | None:
    if entity.kind not in ("demographic", "encounter", "procedure") or not entity.value:
        return None
    if not _ISO_DAY.match(entity.value):
        return None
    try:
        return date.fromisoformat(entity.value)
    except ValueError:
        return None


class RuleEngine:
    """Applies the rules; per facility, rules shipped disabled run where the config enables them."""

    def __init__(self, rules: list[Rule], config: ValidateConfig):
        self.rules, self.config = rules, config
        self.by_id = {rule.id: rule for rule in rules}
        unknown = {rule_id for ids in config.enable_rules.values() for rule_id in ids} - set(self.by_id)
        if unknown:
            raise ValueError(f"validate.enable_rules names unknown rules {sorted(unknown)}")
        self.duplicate_kinds = frozenset(kind for rule in rules if rule.check == "duplicate"
                                         for kind in rule.params.get("kinds", []))

    @classmethod
    def from_config(cls, config: ValidateConfig) -> "RuleEngine":
        return cls(load_rules(config.rules_path), config)

    def today(self) -> date:
        return date.fromisoformat(self.config.today) if self.config.today else date.today()

    def active(self, facility_id: str) -> list[Rule]:
        extra = set(self.config.enable_rules.get(facility_id, ()))
        return [rule for rule in self.rules if rule.enabled or rule.id in extra]

    def entity_findings(self, entity: Entity, facility_id: str) -> list[Finding]:
        today = self.today()
        found = []
        for rule in self.active(facility_id):
            if rule.check in ("date_order", "date_after_birth", "duplicate") or not rule.applies_to(entity):
                continue
            failed, value = self._entity_check(rule, entity, today)
            if failed:
                found.append(Finding(rule, entity.entity_id, rule.field, value))
        return found

    def _entity_check(self, rule: Rule, entity: Entity, today: date) -> tuple[bool, str | None]:
        if rule.check == "range":
            value = self._range_value(rule, entity)
            if value is None:
                return False, None
            return not rule.params["min"] <= value <= rule.params["max"], f"{value:g}"
        if rule.check in ("not_future", "min_year"):
            when = _date_of(entity)
            if when is None:
                return False, None
            if rule.check == "not_future":
                return when > today, entity.value
            return when.year < rule.params.get("year", self.config.earliest_birth_year), entity.value
        if rule.check == "code_format":
            check = CODE_FORMATS.get(entity.code_system or "")
            return bool(entity.code and check and not check(entity.code)), entity.code
        if rule.check == "check_digit":
            return bool(entity.value) and not CHECK_DIGITS[rule.params["algorithm"]](entity.value), entity.value
        return False, None

    @staticmethod
    def _range_value(rule: Rule, entity: Entity) -> float | None:
        if rule.field == "dose":
            if entity.dose_value is None or (entity.dose_unit or "").lower() not in _DOSE_IN_MG:
                return None  # a dose without a known mass unit is a confidence matter, not a range one
            target = _DOSE_IN_MG[rule.params.get("unit", "mg")]
            return entity.dose_value * _DOSE_IN_MG[entity.dose_unit.lower()] / target
        return entity.value_num

    def document_findings(self, facts: DocumentFacts, facility_id: str) -> list[Finding]:
        found = []
        for rule in self.active(facility_id):
            if rule.check == "duplicate":
                found += [Finding(rule, entity_id, rule.field, text) for entity_id, text in facts.duplicates]
            elif rule.check == "date_order":
                earlier = [d.value for d in facts.dates if d.attribute == rule.params["earlier"]]
                for later in facts.dates:
                    if later.attribute == rule.where.attribute and earlier and later.value < min(earlier):
                        found.append(Finding(rule, later.entity_id, rule.field, later.value.isoformat()))
            elif rule.check == "date_after_birth":
                births = [d.value for d in facts.dates if d.attribute == "birth_date"]
                for dated in facts.dates:
                    if births and dated.attribute != "birth_date" and dated.value < min(births):
                        found.append(Finding(rule, dated.entity_id, rule.field, dated.value.isoformat()))
        return found


def apply_findings(entity: Entity, findings: list[Finding], min_confidence: float) -> None:
    """Record findings and low confidence on the entity's fields and flags (idempotent)."""
    fields = {f.name: f for f in entity.fields}
    for finding in findings:
        target = fields.get(finding.field)
        if target is None:
            target = FieldScore(finding.field, finding.value, entity.confidence)
            entity.fields.append(target)
            fields[finding.field] = target
        if finding.rule.id not in target.reasons:
            target.reasons.append(finding.rule.id)
    flags = set(entity.flags) | {finding.rule.flag for finding in findings}
    for f in entity.fields:
        if f.confidence < min_confidence and LOW_CONFIDENCE not in f.reasons:
            f.reasons.append(LOW_CONFIDENCE)
        elif f.confidence >= min_confidence and LOW_CONFIDENCE in f.reasons:
            f.reasons.remove(LOW_CONFIDENCE)
    if entity.confidence < min_confidence:
        flags.add(LOW_CONFIDENCE)
    else:
        flags.discard(LOW_CONFIDENCE)
    entity.flags = sorted(flags)
    entity.requires_review = bool(entity.flags)


class ValidateStage(Stage):
    """Applies the rules and the confidence threshold to every entity of a page."""

    name: ClassVar[str] = "validate"
    required_columns = Stage.required_columns + ("entities",)

    def __init__(self, config: ValidateConfig | None = None, resources: Resources | None = None):
        super().__init__(resources or Resources(num_cpus=0.25, batch_size=32))
        self.config = config or ValidateConfig()
        self.engine: RuleEngine | None = None

    def setup(self) -> None:
        self.engine = RuleEngine.from_config(self.config)

    def process_pages(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Entity rules per page, then document rules over the pages of each document in the batch."""
        assert self.engine is not None, "setup() loads the rules"
        pages = [self._guarded(self._page_entities, row) for row in rows]
        facts: dict[tuple[str, str], DocumentFacts] = defaultdict(DocumentFacts)
        for row in pages:
            for entity in row.get("_entities", []):
                facts[(row["facility_id"], row["document_id"])].observe(entity, self.engine.duplicate_kinds)
        document_findings: dict[tuple[str, str, str], list[Finding]] = defaultdict(list)
        for (facility_id, document_id), document in facts.items():
            for finding in self.engine.document_findings(document, facility_id):
                document_findings[(facility_id, document_id, finding.entity_id)].append(finding)
        for row in pages:
            entities = row.pop("_entities", None)
            if entities is None:
                continue
            for entity in entities:
                key = (row["facility_id"], row["document_id"], entity.entity_id)
                apply_findings(entity, document_findings.get(key, []), self.config.min_confidence)
            row["entities"] = [entity.to_row() for entity in entities]
        return pages

    def _page_entities(self, row: dict[str, Any]) -> dict[str, Any]:
        entities = [Entity.from_row(e) for e in row["entities"] or []]
        for entity in entities:
            combine(entity, row.get("document_type_predicted"), row.get("document_type_confidence") or 0.0)
            apply_findings(entity, self.engine.entity_findings(entity, row["facility_id"]), self.config.min_confidence)
        row["_entities"] = entities
        return row


def review_rows(entity: Entity, rules: dict[str, Rule], min_confidence: float) -> list[dict[str, Any]]:
    """The review-queue rows of one entity: one per flagged field, with reason and priority.

    Flags no field carries (the code stage's "uncoded") get a row for the entity as a whole.
    """
    rows, covered = [], set()
    for f in entity.fields:
        if not f.reasons:
            continue
        reasons = []
        for reason in f.reasons:
            rule = rules.get(reason)
            if rule is not None:
                covered.add(rule.flag)
                reasons.append(f"{rule.id}: {rule.message}")
            elif reason == LOW_CONFIDENCE:
                covered.add(LOW_CONFIDENCE)
                reasons.append(f"{LOW_CONFIDENCE}: {f.confidence:.2f} < {min_confidence:.2f}")
        severities = [rules[r].severity for r in f.reasons if r in rules]
        rows.append({"field": f.name, "value": f.value, "confidence": f.confidence, "reason": "; ".join(reasons),
                     "priority": review_priority(entity.kind, f.confidence, severities)})
    for flag in sorted(set(entity.flags) - covered):
        rows.append({"field": STAGE_FLAG_FIELDS.get(flag, "entity"), "value": entity.text, "confidence": entity.confidence, "reason": flag,
                     "priority": review_priority(entity.kind, entity.confidence, ["warning"])})
    return rows
