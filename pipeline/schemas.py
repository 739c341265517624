"""The Arrow schemas of every table the pipeline reads, passes or writes."""

from __future__ import annotations

import pyarrow as pa

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("facility_id", pa.string(), nullable=False),
        pa.field("document_id", pa.string(), nullable=False),
        pa.field("page_index", pa.int32(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("mrn", pa.string()),
        pa.field("document_type", pa.string()),
    ]
)

LINE_TYPE = pa.struct(
    [
        pa.field("line_id", pa.int32()),
        pa.field("text", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("polygon", pa.list_(pa.list_(pa.float32()))),
        pa.field("bbox", pa.list_(pa.float32())),
    ]
)

# A check box found on the page image, with the OCR label to its right (see pipeline.checkboxes).
CHECKBOX_TYPE = pa.struct(
    [
        pa.field("bbox", pa.list_(pa.float32())),
        pa.field("state", pa.string()),  # "checked" | "unchecked" | "ambiguous"
        pa.field("ink", pa.float32()),  # share of the box interior that is marked
        pa.field("label", pa.string()),
        pa.field("label_line_ids", pa.list_(pa.int32())),
    ]
)

CANDIDATE_TYPE = pa.struct(
    [
        pa.field("system", pa.string()),
        pa.field("code", pa.string()),
        pa.field("display", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("match", pa.string()),
    ]
)

FIELD_SCORE_TYPE = pa.struct(
    [
        pa.field("name", pa.string()),
        pa.field("value", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("reasons", pa.list_(pa.string())),
        pa.field("base", pa.float32()),
    ]
)

ENTITY_FIELDS = [
    pa.field("entity_id", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("text", pa.string()),
    pa.field("section", pa.string()),
    pa.field("assertion", pa.string()),
    pa.field("page_index", pa.int32()),
    pa.field("line_ids", pa.list_(pa.int32())),
    pa.field("bbox", pa.list_(pa.float32())),
    pa.field("ocr_confidence", pa.float32()),
    pa.field("value", pa.string()),
    pa.field("value_num", pa.float64()),
    pa.field("unit", pa.string()),
    pa.field("reference_low", pa.float64()),
    pa.field("reference_high", pa.float64()),
    pa.field("interpretation", pa.string()),
    pa.field("dose_value", pa.float64()),
    pa.field("dose_unit", pa.string()),
    pa.field("route", pa.string()),
    pa.field("frequency", pa.string()),
    pa.field("attribute", pa.string()),
    pa.field("status", pa.string()),
    pa.field("relationship", pa.string()),
    pa.field("severity", pa.string()),
    pa.field("reference_text", pa.string()),
    pa.field("panel", pa.string()),
    pa.field("timing_frequency", pa.int32()),
    pa.field("timing_period", pa.float64()),
    pa.field("timing_period_max", pa.float64()),
    pa.field("timing_period_unit", pa.string()),
    pa.field("timing_when", pa.string()),
    pa.field("as_needed", pa.bool_()),
    pa.field("as_needed_for", pa.string()),
    pa.field("duration_value", pa.float64()),
    pa.field("duration_unit", pa.string()),
    pa.field("code", pa.string()),
    pa.field("code_system", pa.string()),
    pa.field("code_display", pa.string()),
    pa.field("code_score", pa.float32()),
    pa.field("ingredient_code", pa.string()),
    pa.field("candidates", pa.list_(CANDIDATE_TYPE)),
    pa.field("confidence", pa.float32()),
    pa.field("fields", pa.list_(FIELD_SCORE_TYPE)),
    pa.field("flags", pa.list_(pa.string())),
    pa.field("requires_review", pa.bool_()),
]
ENTITY_TYPE = pa.struct(ENTITY_FIELDS)

# seconds: the page's share of its batch's busy time; started/ended: the batch's epoch seconds.
TIMING_TYPE = pa.struct([pa.field("stage", pa.string()), pa.field("seconds", pa.float64()),
                         pa.field("started", pa.float64()), pa.field("ended", pa.float64())])

# One row per manifest row, flowing through every stage; later stages fill later columns.
PAGE_SCHEMA = pa.schema(
    list(MANIFEST_SCHEMA)
    + [
        pa.field("image", pa.binary()),  # raw 8-bit grayscale pixels, dropped after OCR
        pa.field("image_width", pa.int32()),
        pa.field("image_height", pa.int32()),
        pa.field("dpi", pa.int32()),
        pa.field("text_source", pa.string()),  # "text_layer" | "ocr"
        pa.field("lines", pa.list_(LINE_TYPE)),
        pa.field("text", pa.string()),  # the page's text in reading order, a row per line (extract stage)
        pa.field("checkboxes", pa.list_(CHECKBOX_TYPE)),
        pa.field("document_type_predicted", pa.string()),
        pa.field("document_type_confidence", pa.float32()),
        pa.field("entities", pa.list_(ENTITY_TYPE)),
        pa.field("extract_source", pa.string()),  # LLM backends: "llm" | "llm_repaired" | "llm_fallback"
        pa.field("llm_output_tokens", pa.int32()),  # LLM backends: output tokens spent on the page
        pa.field("error_stage", pa.string()),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("timings", pa.list_(TIMING_TYPE)),
    ]
)

# Written tables.
PAGES_TABLE_SCHEMA = pa.schema(
    [f for f in PAGE_SCHEMA if f.name not in ("image", "entities")]
)

ENTITIES_TABLE_SCHEMA = pa.schema(
    [
        pa.field("facility_id", pa.string()),
        pa.field("document_id", pa.string()),
        pa.field("patient_key", pa.string()),
    ]
    + ENTITY_FIELDS
)

FLAGS_TABLE_SCHEMA = pa.schema(
    [
        pa.field("facility_id", pa.string()),
        pa.field("document_id", pa.string()),
        pa.field("page_index", pa.int32()),
        pa.field("entity_id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("flag", pa.string()),
        pa.field("bbox", pa.list_(pa.float32())),
    ]
)

# One row per flagged field, worst first by `priority`: what a reviewer works through.
REVIEW_QUEUE_SCHEMA = pa.schema(
    [
        pa.field("facility_id", pa.string()),
        pa.field("document_id", pa.string()),
        pa.field("page_index", pa.int32()),
        pa.field("bbox", pa.list_(pa.float32())),
        pa.field("entity_id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("field", pa.string()),
        pa.field("value", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("reason", pa.string()),
        pa.field("priority", pa.float32()),
    ]
)

# The review workbench's append-only decisions (`OUT/review/decisions.jsonl`), one row per
# reviewer action on a queue item; later rows never overwrite earlier ones (an undo is a row).
DECISION_SCHEMA = pa.schema(
    [
        pa.field("decision_id", pa.string(), nullable=False),
        pa.field("decided_at", pa.string(), nullable=False),  # ISO 8601 UTC
        pa.field("reviewer", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("facility_id", pa.string()),
        pa.field("document_id", pa.string()),
        pa.field("page_index", pa.int32()),
        pa.field("entity_id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("field", pa.string()),
        pa.field("action", pa.string(), nullable=False),  # accept | correct | reject | skip | assign | undo
        pa.field("value_before", pa.string()),
        pa.field("value_after", pa.string()),
        pa.field("code_system_before", pa.string()),
        pa.field("code_before", pa.string()),
        pa.field("code_system_after", pa.string()),
        pa.field("code_after", pa.string()),
        pa.field("code_display_after", pa.string()),
        pa.field("assignee", pa.string()),  # assign: the reviewer the item goes to
        pa.field("undoes", pa.string()),  # undo: the decision_id it cancels
    ]
)

# Who looked at or changed what (`OUT/review/audit.jsonl`): append-only, each row chained to
# the one before by hash so an edited or deleted row shows.
AUDIT_SCHEMA = pa.schema(
    [
        pa.field("at", pa.string(), nullable=False),
        pa.field("user", pa.string(), nullable=False),
        pa.field("role", pa.string()),
        pa.field("action", pa.string(), nullable=False),  # login | view_item | view_page | decide | ...
        pa.field("facility_id", pa.string()),
        pa.field("document_id", pa.string()),
        pa.field("page_index", pa.int32()),
        pa.field("item_id", pa.string()),
        pa.field("detail", pa.string()),  # ids and action names only, never record text
        pa.field("prev", pa.string(), nullable=False),  # sha256 of the previous row's line
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("facility_id", pa.string()),
        pa.field("document_id", pa.string()),
        pa.field("page_index", pa.int32()),
        pa.field("source_uri", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("error_type", pa.string()),
        pa.field("message", pa.string()),
        pa.field("resource_type", pa.string()),  # set when a FHIR resource failed validation
    ]
)


def page_rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows of the page schema (missing columns as nulls) -> an Arrow table."""
    return pa.Table.from_pylist(rows, schema=PAGE_SCHEMA)
