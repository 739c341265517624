"""Typed records passed between stages.

Stages exchange Arrow tables whose schemas live in `pipeline.schemas`; inside a stage,
rows are turned into these records so no anonymous dicts travel between functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

@dataclass
class OcrLine:
    """One text line on a page, from OCR or from a PDF text layer.

    `polygon` is the clockwise quadrilateral in page pixels at the rendered DPI,
    `bbox` its axis-aligned bounds [x0, y0, x1, y1].
    """

    line_id: int
    text: str
    confidence: float
    polygon: list[list[float]]
    bbox: list[float]

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "OcrLine":
        return cls(
            line_id=int(row["line_id"]),
            text=row["text"],
            confidence=float(row["confidence"]),
            polygon=[list(p) for p in row["polygon"]],
            bbox=list(row["bbox"]),
        )


@dataclass
class CheckboxMark:
    """A check box detected on the page image, paired with the OCR label to its right.

    state: checked | unchecked | ambiguous (a faint mark a reviewer should look at).
    """

    bbox: list[float]
    state: str
    ink: float
    label: str | None = None
    label_line_ids: list[int] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "CheckboxMark":
        return cls(bbox=list(row["bbox"]), state=row["state"], ink=float(row["ink"]), label=row.get("label"),
                   label_line_ids=list(row.get("label_line_ids") or []))


@dataclass
class CodeCandidate:
    """A terminology concept proposed for an entity, with why it matched."""

    system: str
    code: str
    display: str
    score: float
    match: str


@dataclass
class FieldScore:
    """The confidence of one extracted field and why a reviewer should look at it (if at all).

    `reasons` holds the ids of the validation rules that fired on the field, and
    `low_confidence` when its confidence is under the configured threshold.
    """

    name: str
    value: str | None
    confidence: float
    reasons: list[str] = field(default_factory=list)
    base: float | None = None  # the extractor's own confidence, before coding and cross-checks

    def __post_init__(self) -> None:
        if self.base is None:
            self.base = self.confidence


@dataclass
class Entity:
    """One entity mention on one page; the row shape of the entities table.

    kind: diagnosis | medication | allergy | vital | lab | procedure | demographic | encounter.
    assertion: present | negated | historical | family | hypothetical.
    """

    entity_id: str
    kind: str
    text: str
    section: str
    assertion: str
    page_index: int
    line_ids: list[int]
    bbox: list[float]
    ocr_confidence: float
    # Normalised value fields; which ones are set depends on `kind`.
    value: str | None = None
    value_num: float | None = None
    unit: str | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    interpretation: str | None = None
    dose_value: float | None = None
    dose_unit: str | None = None
    route: str | None = None
    frequency: str | None = None
    attribute: str | None = None
    # status: diagnosis active | resolved | history; medication active | reported | stopped.
    status: str | None = None
    relationship: str | None = None  # family member (HL7 v3 RoleCode) of a family-history mention
    severity: str | None = None  # allergy reaction: mild | moderate | severe
    reference_text: str | None = None  # a reference range as printed ("<200", ">60", "3.5-5.0")
    panel: str | None = None  # the title of the result table a lab was read in ("Basic Metabolic Panel")
    # Medication timing (FHIR Timing.repeat, boundsDuration, asNeeded).
    timing_frequency: int | None = None
    timing_period: float | None = None
    timing_period_max: float | None = None
    timing_period_unit: str | None = None
    timing_when: str | None = None
    as_needed: bool | None = None
    as_needed_for: str | None = None
    duration_value: float | None = None
    duration_unit: str | None = None
    # Coding, filled by the code stage.
    code: str | None = None
    code_system: str | None = None
    code_display: str | None = None
    code_score: float | None = None
    ingredient_code: str | None = None  # RxNorm ingredient of a coded clinical drug, always kept
    candidates: list[CodeCandidate] = field(default_factory=list)
    confidence: float = 0.0
    fields: list[FieldScore] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    requires_review: bool = False

    def to_row(self) -> dict[str, Any]:
        """`dataclasses.asdict(self)`, without its recursive deep copy: every stage and the
        document step convert each entity, and asdict was a third of a document's time (issue 12)."""
        row = dict(self.__dict__)
        row["line_ids"], row["bbox"], row["flags"] = list(self.line_ids), list(self.bbox), list(self.flags)
        row["candidates"] = [dict(c.__dict__) for c in self.candidates]
        row["fields"] = [{**f.__dict__, "reasons": list(f.reasons)} for f in self.fields]
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Entity":
        values = dict(row)
        values["candidates"] = [CodeCandidate(**c) for c in (row.get("candidates") or [])]
        values["line_ids"] = list(row.get("line_ids") or [])
        values["bbox"] = list(row.get("bbox") or [])
        values["flags"] = list(row.get("flags") or [])
        values["fields"] = [FieldScore(**{**f, "reasons": list(f.get("reasons") or [])}) for f in (row.get("fields") or [])]
        return cls(**values)


@dataclass
class DocumentBundle:
    """One source document with every entity extracted from its pages: the input of FHIR assembly."""

    facility_id: str
    document_id: str
    source_uri: str
    media_type: str
    document_type: str
    page_count: int
    patient_key: str
    entities: list[Entity] = field(default_factory=list)
