"""Check boxes found on the page image: square outlines, whether they are marked, and the
OCR label printed to their right.

Runs where the pixels are (the OCR stage); the result travels as the page row's
`checkboxes` column. A box is a connected ink component about the size of a capital
letter whose four sides are (nearly) solid lines; its state comes from the ink inside it.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import ndimage

from pipeline.layout import split_line
from pipeline.records import CheckboxMark, OcrLine

CHECKED = "checked"
UNCHECKED = "unchecked"
AMBIGUOUS = "ambiguous"

MIN_SIDE_IN, MAX_SIDE_IN = 0.07, 0.45  # a box is between a small letter and half an inch
SIDE_COVERAGE = 0.85  # share of each side's length that must be inked
MAX_STROKE = 0.2  # thickest outline, as a share of the side: bold letters are thicker
CHECKED_INK = 0.15  # interior share of dark ink from which a box is checked (an X or tick covers ~0.5)
FAINT_INK = 0.15  # interior share of faint marking from which an unchecked box is ambiguous


def _ink_threshold(histogram: np.ndarray) -> float:
    """Otsu's threshold between paper and ink (works on low-contrast scans too), from the
    page's 256-level histogram."""
    histogram = histogram.astype(np.float64)
    levels = np.arange(256)
    weight = np.cumsum(histogram)
    mean = np.cumsum(histogram * levels)
    total_weight, total_mean = weight[-1], mean[-1]
    if np.count_nonzero(histogram) < 2:
        return -1.0  # one grey level (a blank sheet, an all-black frame): no ink/paper split, no boxes
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight - mean * total_weight) ** 2 / (weight * (total_weight - weight))
    # A clean two-tone page leaves a plateau of equally good thresholds: take its middle.
    best = np.flatnonzero(np.nan_to_num(between, nan=-1.0) >= np.nanmax(between) * (1 - 1e-9))
    return float(best[0] + best[-1]) / 2


def _histogram_median(values: np.ndarray, counts: np.ndarray) -> float:
    """np.median of the pixels whose values and counts these are (values ascending): the
    page statistics come from its histogram, not from sorting millions of pixels."""
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])
    # The two middle pixels (the same one when the count is odd), averaged as np.median does.
    low = values[np.searchsorted(cumulative, (total - 1) // 2, side="right")]
    high = values[np.searchsorted(cumulative, total // 2, side="right")]
    return (float(low) + float(high)) / 2


def _is_outline(component: np.ndarray) -> bool:
    """All four sides of the component's box are inked along most of their length with a
    thin line: a box, not bold letters run together ("DI" in a bold heading)."""
    height, width = component.shape
    strip = max(2, round(0.15 * min(height, width)))
    sides = (component[:strip].any(axis=0), component[-strip:].any(axis=0),
             component[:, :strip].any(axis=1), component[:, -strip:].any(axis=1))
    return (all(side.mean() >= SIDE_COVERAGE for side in sides)
            and _stroke(component) <= MAX_STROKE * min(height, width))


def _stroke(component: np.ndarray) -> float:
    """The outline's thickness: median ink run inward from the left and right edges over
    the middle rows (a box is drawn with a thin line, a bold letter with a thick stroke)."""
    height = component.shape[0]
    middle = component[height // 5: height - height // 5]
    runs = [_first_run(row) for row in middle] + [_first_run(row[::-1]) for row in middle]
    return float(np.median(runs)) if runs else 0.0


def _first_run(row: np.ndarray) -> int:
    """Length of the first run of ink in a row of pixels (0 when there is none)."""
    inked = np.flatnonzero(row)
    if not inked.size:
        return 0
    rest = row[inked[0]:]
    return len(rest) if rest.all() else int(np.argmin(rest))


def detect_checkboxes(gray: np.ndarray, dpi: int) -> list[CheckboxMark]:
    """Check boxes on an 8-bit grayscale page (H x W), top to bottom, left to right."""
    histogram = np.bincount(gray.ravel(), minlength=256)
    threshold = _ink_threshold(histogram)
    ink = gray <= threshold
    levels = np.arange(256)
    is_paper = (levels > threshold) & (histogram > 0)
    is_ink = (levels <= threshold) & (histogram > 0)
    paper, noise, ink_level = 255.0, 0.0, 0.0
    if is_paper.any():
        paper = _histogram_median(levels[is_paper], histogram[is_paper])
        deviation = np.abs(levels[is_paper] - paper)
        order = np.argsort(deviation, kind="stable")
        noise = 1.4826 * _histogram_median(deviation[order], histogram[is_paper][order])
    if is_ink.any():
        ink_level = _histogram_median(levels[is_ink], histogram[is_ink])
    # A faint mark (light pencil, a weak scan) is lighter than the ink threshold but darker
    # than the paper by more than its noise (speckle, JPEG ringing) and a share of the contrast.
    faint = gray < paper - max(3.5 * noise, 0.15 * (paper - ink_level))
    labels, _ = ndimage.label(ink, structure=np.ones((3, 3), dtype=bool))
    min_side, max_side = MIN_SIDE_IN * dpi, MAX_SIDE_IN * dpi
    marks = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        rows, cols = found
        height, width = rows.stop - rows.start, cols.stop - cols.start
        if not (min_side <= height <= max_side and min_side <= width <= max_side and 0.75 <= height / width <= 1.33):
            continue
        if not _is_outline(labels[found] == index):
            continue
        margin = max(3, round(0.2 * min(height, width)))
        inside = (slice(rows.start + margin, rows.stop - margin), slice(cols.start + margin, cols.stop - margin))
        dark_share, faint_share = float(ink[inside].mean()), float(faint[inside].mean())
        if dark_share >= CHECKED_INK:
            state = CHECKED
        elif faint_share >= FAINT_INK:
            state = AMBIGUOUS
        else:
            state = UNCHECKED
        marks.append(CheckboxMark(bbox=[float(cols.start), float(rows.start), float(cols.stop), float(rows.stop)],
                                  state=state, ink=round(max(dark_share, faint_share), 4)))
    marks.sort(key=lambda mark: (round(mark.bbox[1] / max(min_side, 1.0)), mark.bbox[0]))
    return marks


def attach_labels(marks: list[CheckboxMark], lines: list[OcrLine]) -> list[CheckboxMark]:
    """Give each box the text printed to its right on the same baseline, up to the next box.

    OCR may read a box as a glyph ("X", "口") at the start of its label, or run one label
    into the next box's: the label is the part of the line between this box's right edge
    and the next box on the row.
    """
    for mark in marks:
        x0, y0, x1, y1 = mark.bbox
        side = x1 - x0
        neighbours = [m.bbox[0] for m in marks if m is not mark and m.bbox[0] > x1 and _same_baseline(m.bbox, mark.bbox)]
        stop = min(neighbours, default=float("inf"))
        bounds = [x1 - 0.2 * side] + ([stop] if stop != float("inf") else [])
        candidates = [line for line in lines
                      if _same_baseline(line.bbox, mark.bbox) and line.bbox[2] > x1 + 0.5 * side
                      and line.bbox[0] < stop and line.bbox[0] - x1 <= 4 * side]
        for line in sorted(candidates, key=lambda l: max(l.bbox[0], x1)):
            label = split_line(_right_of_box(line, mark.bbox), bounds)[1].strip(" []()_|:;")
            if label:
                mark.label, mark.label_line_ids = label, [line.line_id]
                break
    return marks


# What OCR makes of a box at the start of its label: a symbol ("□", CJK look-alikes such
# as "口"), or a lone X / V for a mark.
_BOX_GLYPH = re.compile(r"^\s*(?:[^\w\s]+\s*|[口区回]\s*|[xXvV]\s+)")


def _right_of_box(line: OcrLine, box: list[float]) -> OcrLine:
    """The line as if it began at the box's right edge, when the detector's box for the
    line swallowed the check box (its text may or may not carry a glyph for it)."""
    box_left, box_right = box[0], box[2]
    if not box_left - (box_right - box_left) <= line.bbox[0] < box_right:
        return line
    text = _BOX_GLYPH.sub("", line.text, count=1)
    return OcrLine(line.line_id, text, line.confidence, line.polygon, [box_right, *line.bbox[1:]])


def _same_baseline(a: list[float], b: list[float]) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap >= 0.5 * min(a[3] - a[1], b[3] - b[1])


def page_checkboxes(gray: np.ndarray, dpi: int, lines: list[dict]) -> list[dict]:
    """The page row's `checkboxes` column from its pixels and its OCR line rows."""
    marks = attach_labels(detect_checkboxes(gray, dpi), [OcrLine.from_row(line) for line in lines])
    return [mark.to_row() for mark in marks]
