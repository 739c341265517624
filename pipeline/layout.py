"""Page geometry: OCR lines grouped into printed rows, read top to bottom, left to right."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

from pipeline.records import OcrLine


@dataclass
class Row:
    """Lines that share a baseline: a table row, a key-value line or a sentence."""

    lines: list[OcrLine]

    @property
    def text(self) -> str:
        # A double space marks a column gap, so cell boundaries survive joining.
        return "  ".join(line.text.strip() for line in self.lines)

    @property
    def line_ids(self) -> list[int]:
        return [line.line_id for line in self.lines]

    @property
    def bbox(self) -> list[float]:
        return union_bbox(self.lines)

    @property
    def confidence(self) -> float:
        return min(line.confidence for line in self.lines)


def union_bbox(lines: list[OcrLine]) -> list[float]:
    return [
        min(line.bbox[0] for line in lines),
        min(line.bbox[1] for line in lines),
        max(line.bbox[2] for line in lines),
        max(line.bbox[3] for line in lines),
    ]


def group_rows(lines: list[OcrLine]) -> list[Row]:
    """Group lines whose vertical centres lie within half a line height of each other."""
    if not lines:
        return []
    height = median(line.bbox[3] - line.bbox[1] for line in lines) or 1.0
    ordered = sorted(lines, key=lambda line: (line.bbox[1] + line.bbox[3]) / 2)
    rows: list[list[OcrLine]] = []
    centre = None
    for line in ordered:
        line_centre = (line.bbox[1] + line.bbox[3]) / 2
        if rows and centre is not None and abs(line_centre - centre) < 0.5 * height:
            rows[-1].append(line)
            centre = sum((l.bbox[1] + l.bbox[3]) / 2 for l in rows[-1]) / len(rows[-1])
        else:
            rows.append([line])
            centre = line_centre
    return [Row(sorted(row, key=lambda line: line.bbox[0])) for row in rows]
