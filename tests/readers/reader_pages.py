"""Pages drawn in code for the reader tests: OCR lines with boxes, and the extractor run as the stage runs it."""

from __future__ import annotations

from pipeline.layout import join_key_values, join_stacked_fields, reading_order
from pipeline.lexicon import LexiconExtractor
from pipeline.readers.common import Lexicons
from pipeline.records import Entity, OcrLine

DOCUMENT_ID = "doc-readers-0001"


def draw(*rows: tuple[float, list[tuple[float, str]]]) -> list[OcrLine]:
    """Lines from (y, [(x, text), ...]); ids in reading order, 9 px per character, 20 px high."""
    lines = []
    for y, runs in rows:
        for x, text in runs:
            x1 = x + 9.0 * len(text)
            lines.append(OcrLine(len(lines), text, 0.97, [[x, y], [x1, y], [x1, y + 20], [x, y + 20]],
                                 [x, y, x1, y + 20]))
    return lines


def column(*texts: str, x: float = 80, top: float = 40, pitch: float = 28) -> list[OcrLine]:
    """One line per text down the page."""
    return draw(*[(top + i * pitch, [(x, text)]) for i, text in enumerate(texts)])


# A few names the dictionaries know (the index supplies thousands in a run).
LEXICONS = Lexicons(diagnoses={"asthma", "gout", "essential hypertension"},
                    medications={"metformin", "warfarin", "amoxicillin", "penicillin"},
                    labs={"hemoglobin", "sodium"})


def extractor_run():
    """The extractor over drawn lines, after the layout steps the extract stage runs first."""
    extractor = LexiconExtractor(LEXICONS)

    def run(lines: list[OcrLine], document_type: str = "other") -> list[Entity]:
        # The layout steps the extract stage runs before the readers.
        rows = join_stacked_fields([join_key_values(row) for row in reading_order(lines)])
        return extractor.extract(DOCUMENT_ID, 0, rows, document_type)

    return run


def of_kind(entities: list[Entity], kind: str) -> list[Entity]:
    return [e for e in entities if e.kind == kind]
