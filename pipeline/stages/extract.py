"""Extract stage (lexicon backend): page lines -> entity mentions with assertion.

The dictionaries come from the terminology index, loaded once per actor in setup. Layout
comes first: lines are put in reading order (columns), split key-value fields joined,
result tables read cell by cell, and check boxes (found on the image by the OCR stage)
turned into findings under the heading they sit in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from pipeline.checkboxes import AMBIGUOUS, CHECKED
from pipeline.layout import (Row, Table, find_tables, join_key_values, join_stacked_fields, level_box, reading_order,
                             skew_angle, split_line, straighten, union_bbox)
from pipeline.lexicon import SECTIONS, LexiconExtractor, deterministic_entity_id, load_lexicons
from pipeline.readers.common import STRENGTH, score_field
from pipeline.readers.observations import LAB_FLAGS, interpret, parse_reference_range
from pipeline.units import normalise_unit, ucum_code
from pipeline.records import CheckboxMark, Entity, OcrLine
from pipeline.stages.base import Resources, Stage
from pipeline.terminology import normalise_term


MIN_TYPE_CONFIDENCE = 0.6  # below it, a page is read as an untyped document


class LexiconExtractStage(Stage):
    """Sections, dictionary spotting and patterns over OCR rows; CPU only."""

    name: ClassVar[str] = "extract"
    required_columns = Stage.required_columns + ("lines",)

    def __init__(self, index_path: str, resources: Resources | None = None):
        super().__init__(resources or Resources(num_cpus=0.5, batch_size=16, concurrency=1))
        self.index_path = index_path
        self.extractor: LexiconExtractor | None = None

    def setup(self) -> None:
        # Built once beside the index (`ensure_lexicons`), loaded here: not built per actor.
        self.extractor = LexiconExtractor(load_lexicons(Path(self.index_path)))

    def process_page(self, row: dict[str, Any]) -> dict[str, Any]:
        assert self.extractor is not None, "setup() loads the lexicons"
        document_id, page = row["document_id"], row["page_index"]
        lines = [OcrLine.from_row(line) for line in row["lines"] or []]
        marks = [CheckboxMark.from_row(mark) for mark in row.get("checkboxes") or []]
        # Layout reads a level copy of a tilted scan; entities keep the scan's own boxes.
        angle = skew_angle(lines)
        # What users search and re-extraction reads: every line, columns in reading order.
        row["text"] = "\n".join(" ".join(line.text.strip() for line in r.lines)
                                for r in reading_order(straighten(lines, angle)))
        questions = yes_no_questions(marks, lines, angle)
        # Check-box labels and Yes/No questions are read with their boxes, never as list
        # items of their section.
        taken = {i for mark in marks for i in mark.label_line_ids} | {q.line_id for _, q in questions.values()}
        rows = join_stacked_fields(
            [join_key_values(r) for r in reading_order(straighten([l for l in lines if l.line_id not in taken], angle))])
        tables = find_tables(rows)
        in_tables = {id(r) for table in tables for r in [table.header, *(body.row for body in table.rows)]}
        # The classifier's type says what unheaded rows are; an unsure type is not relied on.
        confident = (row.get("document_type_confidence") or 0.0) >= MIN_TYPE_CONFIDENCE
        document_type = row.get("document_type_predicted") if confident else "other"
        entities = self.extractor.extract(document_id, page, [r for r in rows if id(r) not in in_tables], document_type)
        found = (table_lab_entities(tables, self.extractor.lexicons.labs, page)
                 + checkbox_entities(marks, questions, rows, lines, page, angle))
        for entity in found:
            entity.entity_id = deterministic_entity_id(document_id, entity)
        by_id = {line.line_id: line for line in lines}
        for entity in entities + found:
            if entity.attribute != "checkbox" and entity.line_ids:  # a box's provenance is the box
                entity.bbox = union_bbox([by_id[i] for i in entity.line_ids if i in by_id])
        row["entities"] = [entity.to_row() for entity in entities + found]
        return row


def _layout_entity(kind: str, text: str, section: str, assertion: str, page: int, lines: list[OcrLine],
                   bbox: list[float], strength: float) -> Entity:
    confidence = min((line.confidence for line in lines), default=0.0)
    entity = Entity(entity_id="", kind=kind, text=text, section=section, assertion=assertion, page_index=page,
                    line_ids=[line.line_id for line in lines], bbox=bbox, ocr_confidence=confidence,
                    confidence=round(confidence * strength, 4))
    score_field(entity, "name", text, strength)  # the validate stage combines it with the code's score
    return entity


# Result tables ---------------------------------------------------------------------------

_VALUE = re.compile(r"[<>]?\d+(?:\.\d+)?")


def table_lab_entities(tables: list[Table], labs: set[str], page: int) -> list[Entity]:
    """Lab results from the rows of a result table whose result is a number.

    Each field comes from its own column; a missing flag is derived from the reference
    range, a missing unit or range stays empty.
    """
    entities = []
    for table in tables:
        for body in table.rows:
            name, value = body.text("name"), _VALUE.search(body.text("value") or "")
            if not name or not value or not re.search(r"[A-Za-z]{2}", name):
                continue
            # Under a header that names its columns a row is a result whatever its test is
            # called; a name the dictionary does not know only lowers its confidence.
            known = normalise_term(name) in labs
            lines = [line for cell in body.cells.values() for line in cell.lines]
            entity = _layout_entity("lab", name, "results", "present", page, list({id(l): l for l in lines}.values()),
                                    body.row.bbox, strength=1.0)
            entity.value, entity.value_num = value.group(0), float(value.group(0).lstrip("<>"))
            entity.unit = normalise_unit(body.text("unit"))
            entity.panel = table.title
            entity.reference_low, entity.reference_high, entity.reference_text = parse_reference_range(
                body.text("range"))
            flag = LAB_FLAGS.get((body.text("flag") or "").strip().upper())
            entity.interpretation = flag or interpret(entity)
            score_field(entity, "name", entity.text, STRENGTH["table_row" if known else "unknown_lab_name"])
            score_field(entity, "value", entity.value, STRENGTH["table_row"])
            score_field(entity, "unit", entity.unit,
                        STRENGTH["table_row"] if ucum_code(body.text("unit")) else STRENGTH["unknown_unit"])
            if entity.reference_text:
                score_field(entity, "reference_range", entity.reference_text, STRENGTH["table_row"])
            entities.append(entity)
    return entities


# Check boxes -----------------------------------------------------------------------------

_CHECKLIST_WORDS = ("history", "problem", "condition", "diagnos", "illness")
_FINDING_ROLES = ("checklist", "diagnoses", "narrative", "family")


def _heading(row: Row) -> tuple[str, str] | None:
    """(section, role) when a row is a section heading (with or without its colon)."""
    name = normalise_term(re.split(r"[(:]", row.lines[0].text, maxsplit=1)[0])
    if name in SECTIONS:
        return SECTIONS[name]
    if row.lines[0].text.rstrip().endswith(":") or row.lines[0].text.isupper():
        if "family" in name:
            return name, "family"
        if any(word in name for word in _CHECKLIST_WORDS):
            return name, "checklist"
        return name, "other"
    return None


def _section_above(box: list[float], rows: list[Row]) -> tuple[str, str] | None:
    """The nearest heading above the box whose left edge is not right of the box."""
    above = [row for row in rows if row.bbox[3] <= box[1] + 2 and row.bbox[0] <= box[2]]
    for row in sorted(above, key=lambda r: r.bbox[3], reverse=True):
        heading = _heading(row)
        if heading:
            return heading
    return None


_ANSWERS = ("yes", "no")


def _text_left_of(box: list[float], lines: list[OcrLine]) -> tuple[str, OcrLine] | None:
    """The text printed left of a box on its row ("Chest pain" before its Yes/No boxes)."""
    height = box[3] - box[1]
    before = [line for line in lines if line.bbox[0] < box[0] - height
              and min(line.bbox[3], box[3]) - max(line.bbox[1], box[1]) >= 0.5 * height]
    for line in sorted(before, key=lambda l: l.bbox[0], reverse=True):
        text = split_line(line, [box[0]])[0].strip(" []()_|:;")
        if text and normalise_term(text) not in _ANSWERS:
            return text, line
    return None


def yes_no_questions(marks: list[CheckboxMark], lines: list[OcrLine], angle: float = 0.0
                     ) -> dict[int, tuple[str, OcrLine]]:
    """For each Yes/No box (by index), the question printed left of it on its row (compared
    level: on a tilted scan the question and its boxes are far apart on one baseline)."""
    level = straighten(lines, angle)
    questions = {}
    for index, mark in enumerate(marks):
        if mark.label and normalise_term(mark.label) in _ANSWERS:
            question = _text_left_of(level_box(mark.bbox, angle), level)
            if question:
                questions[index] = question
    return questions


def checkbox_entities(marks: list[CheckboxMark], questions: dict[int, tuple[str, OcrLine]], rows: list[Row],
                      lines: list[OcrLine], page: int, angle: float = 0.0) -> list[Entity]:
    """Findings from marked boxes under a history/problem heading.

    A checked box is a present finding (family under a family-history heading); an
    unchecked one says nothing. On a Yes/No row the finding is the text left of the boxes
    and a checked "No" negates it. A faint mark is kept as a low-confidence finding flagged
    for review. Provenance is the box's own bounding box.
    """
    by_id = {line.line_id: line for line in lines}
    entities = []
    for index, mark in enumerate(marks):
        if mark.state not in (CHECKED, AMBIGUOUS) or not mark.label:
            continue
        section = _section_above(level_box(mark.bbox, angle), rows)  # `rows` are levelled by `angle`
        if section is None or section[1] not in _FINDING_ROLES:
            continue
        label_lines = [by_id[i] for i in mark.label_line_ids if i in by_id]
        text, assertion = mark.label, "family" if section[1] == "family" else "present"
        answer = normalise_term(mark.label)
        if answer in _ANSWERS:
            if index not in questions:
                continue
            text, question_line = questions[index]
            label_lines.append(question_line)
            if answer == "no":
                assertion = "negated"
        entity = _layout_entity("diagnosis", text, section[0], assertion, page, label_lines,
                                [float(v) for v in mark.bbox], strength=0.95 if mark.state == CHECKED else 0.4)
        entity.attribute = "checkbox"
        if mark.state == AMBIGUOUS:
            entity.flags = ["checkbox_ambiguous"]
            entity.requires_review = True
        entities.append(entity)
    return entities
