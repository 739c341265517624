"""The concept row every reader yields and the index stores."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Concept:
    """One searchable term of one concept: a concept has a preferred term and synonyms."""

    system: str
    code: str
    display: str
    term: str
    term_type: str  # preferred | synonym | inclusion | abbreviation | component (a LOINC analyte alone)
    kind: str  # diagnosis | medication | lab | vital | procedure
    billable: bool = True
    unit: str | None = None  # UCUM unit for LOINC vitals and labs where known
    tty: str | None = None  # RxNorm term type
    ingredient: str | None = None  # RxNorm ingredient code of a clinical drug


CONCEPT_SCHEMA = pa.schema(
    [
        pa.field("system", pa.string()),
        pa.field("code", pa.string()),
        pa.field("display", pa.string()),
        pa.field("term", pa.string()),
        pa.field("term_type", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("billable", pa.bool_()),
        pa.field("unit", pa.string()),
        pa.field("tty", pa.string()),
        pa.field("ingredient", pa.string()),
    ]
)
