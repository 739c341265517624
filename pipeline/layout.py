"""Page geometry from OCR lines: printed rows, reading order across columns, blocks,
tables with cells by column, and key-value fields."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from statistics import median

import numpy as np

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


# Skew --------------------------------------------------------------------------------

def skew_angle(lines: list[OcrLine]) -> float:
    """The page's skew in radians.

    First the median slope of the top edges of long lines (OCR polygons follow the text's
    baseline on a tilted scan). The detector often boxes a word or a line of a tilted scan
    level, though, and then that median says 0 while a table's cells drift a row apart across
    the page. So the angle is also read from the layout itself: the one at which the most
    pairs of side-by-side lines share a baseline (a projection profile of line centres),
    which replaces the polygons' angle only where it aligns clearly more pairs."""
    slopes = []
    for line in lines:
        (x0, y0), (x1, y1) = line.polygon[0], line.polygon[1]
        if x1 - x0 >= 4 * (line.bbox[3] - line.bbox[1]):
            slopes.append(math.atan2(y1 - y0, x1 - x0))
    from_polygons = median(slopes) if slopes else 0.0
    pairs = _side_by_side_pairs(lines)
    if pairs is None:
        return from_polygons
    angles = [math.radians(step * _SKEW_STEP_DEGREES) for step in range(-_SKEW_STEPS, _SKEW_STEPS + 1)]
    aligned = [_aligned(pairs, angle) for angle in angles]
    most = max(aligned)
    # A few side-by-side lines line up by chance at some angle: the profile must align clearly more.
    if most < _CLEARLY_MORE * _aligned(pairs, from_polygons) + 2:
        return from_polygons
    # Within a quarter line height a run of angles aligns the same pairs: take its middle.
    return median(angle for angle, count in zip(angles, aligned) if count == most)


# Angles tried by the projection profile: +-3 degrees, the tilt of a hand-fed scan or fax.
_SKEW_STEP_DEGREES = 0.1
_SKEW_STEPS = 30
_CLEARLY_MORE = 1.25


def _side_by_side_pairs(lines: list[OcrLine]) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(dx, dy) of the centres of every two lines that do not overlap horizontally, and the
    tolerance within which two levelled centres share a baseline (a quarter line height)."""
    if len(lines) < 3:
        return None
    boxes = np.array([line.bbox for line in lines], dtype=float)
    left, right = np.triu_indices(len(lines), k=1)
    apart = (boxes[left, 2] <= boxes[right, 0]) | (boxes[right, 2] <= boxes[left, 0])
    if not apart.any():
        return None
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    left, right = left[apart], right[apart]
    height = float(np.median(boxes[:, 3] - boxes[:, 1])) or 1.0
    return cx[right] - cx[left], cy[right] - cy[left], height / 4


def _aligned(pairs: tuple[np.ndarray, np.ndarray, float], angle: float) -> int:
    dx, dy, tolerance = pairs
    return int(np.count_nonzero(np.abs(dy * math.cos(angle) - dx * math.sin(angle)) < tolerance))


def _level(points: list[list[float]], angle: float) -> list[list[float]]:
    cos, sin = math.cos(-angle), math.sin(-angle)
    return [[x * cos - y * sin, x * sin + y * cos] for x, y in points]


def _bounds(points: list[list[float]]) -> list[float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def level_box(bbox: list[float], angle: float) -> list[float]:
    """An axis-aligned box of the tilted page in the levelled page's coordinates."""
    x0, y0, x1, y1 = bbox
    return _bounds(_level([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], angle))


def straighten(lines: list[OcrLine], angle: float | None = None) -> list[OcrLine]:
    """Copies of the lines rotated by -`angle` (default: the page's `skew_angle`) so the
    text runs level; rows and columns of a scan tilted by a degree or two then group as
    printed. Below 0.1 degree: unchanged."""
    angle = skew_angle(lines) if angle is None else angle
    if abs(angle) < math.radians(0.1):
        return lines
    out = []
    for line in lines:
        polygon = _level(line.polygon, angle)
        out.append(OcrLine(line.line_id, line.text, line.confidence, polygon, _bounds(polygon)))
    return out


# Token geometry -------------------------------------------------------------------------

def split_line(line: OcrLine, bounds: list[float], char_width: float | None = None) -> list[str]:
    """The text of `line` cut at the x positions `bounds` (ascending), one piece per span.

    OCR sometimes joins neighbouring cells into one line; a word's x is estimated from its
    character offset, and each word goes to the span its start falls in. With the page's
    `char_width`, a line much wider than its characters hides one wide gap (OCR writes it
    as one space): it is put before the word that then starts closest after a boundary.
    """
    words, offset = [], 0
    for word in line.text.split():
        offset = line.text.index(word, offset)
        words.append((offset, word))
        offset += len(word)
    width = line.bbox[2] - line.bbox[0]
    step = char_width or width / max(len(line.text), 1)
    xs = [line.bbox[0] + offset * step for offset, _ in words]
    excess = width - len(line.text) * step
    if char_width and excess > 2 * step and len(words) > 1 and bounds:
        def distance(i: int) -> float:
            return min((xs[i] + excess - b for b in bounds if xs[i] + excess >= b), default=float("inf"))
        gap = min(range(1, len(words)), key=distance)
        xs = [x + (excess if i >= gap else 0.0) for i, x in enumerate(xs)]
    pieces: list[list[str]] = [[] for _ in range(len(bounds) + 1)]
    for x, (_, word) in zip(xs, words):
        pieces[sum(1 for bound in bounds if x >= bound)].append(word)
    return [" ".join(words) for words in pieces]


# Reading order across columns -----------------------------------------------------------

Interval = tuple[float, float]


@dataclass
class Block:
    """Consecutive rows of one column with no paragraph gap between them."""

    rows: list[Row]
    column: int  # 0 for full-width text or the left column, 1 for the right column

    @property
    def bbox(self) -> list[float]:
        return union_bbox([line for row in self.rows for line in row.lines])


def _gaps(row: Row, left: float, right: float, min_width: float) -> list[Interval]:
    """Horizontal whitespace of a row between the page's content edges."""
    gaps, cursor = [], left
    for line in row.lines:
        if line.bbox[0] - cursor >= min_width:
            gaps.append((cursor, line.bbox[0]))
        cursor = max(cursor, line.bbox[2])
    if right - cursor >= min_width:
        gaps.append((cursor, right))
    return gaps


def _intersect(a: list[Interval], b: list[Interval], min_width: float) -> list[Interval]:
    out = []
    for a0, a1 in a:
        for b0, b1 in b:
            lo, hi = max(a0, b0), min(a1, b1)
            if hi - lo >= min_width:
                out.append((lo, hi))
    return out


def _column_gutter(rows: list[Row], gaps: list[Interval], content_width: float) -> Interval | None:
    """The one gutter that splits a run of rows into two text columns, or None.

    A gutter has at least two lines on each side and leaves each column a quarter
    of the page's text width; a table has several gutters and reads row by row.
    """
    lines = [line for row in rows for line in row.lines]
    interior = [(g0, g1) for g0, g1 in gaps
                if any(l.bbox[2] <= g0 for l in lines) and any(l.bbox[0] >= g1 for l in lines)]
    if len(interior) != 1:
        return None
    g0, g1 = interior[0]
    left_lines = [l for l in lines if l.bbox[2] <= g0]
    right_lines = [l for l in lines if l.bbox[0] >= g1]
    left_width = g0 - min(l.bbox[0] for l in lines)
    right_width = max(l.bbox[2] for l in lines) - g1
    if min(len(left_lines), len(right_lines)) < 2 or min(left_width, right_width) < 0.25 * content_width:
        return None
    return g0, g1


def reading_order(lines: list[OcrLine]) -> list[Row]:
    """Rows in reading order: a two-column stretch reads its left column, then its right.

    Rows that share a vertical strip of whitespace form a stretch; a row that crosses the
    strip (a full-width heading or paragraph) ends it. Each side of a two-column stretch
    becomes its own rows, so a left-column item is never joined to a right-column one.
    """
    rows = group_rows(lines)
    if not rows:
        return []
    height = median(line.bbox[3] - line.bbox[1] for line in lines) or 1.0
    left = min(line.bbox[0] for line in lines)
    right = max(line.bbox[2] for line in lines)
    stretches: list[tuple[list[Row], list[Interval]]] = []
    for row in rows:
        gaps = _gaps(row, left, right, height)
        if stretches:
            shared = _intersect(stretches[-1][1], gaps, height)
            if shared:
                stretches[-1][0].append(row)
                stretches[-1] = (stretches[-1][0], shared)
                continue
        stretches.append(([row], gaps))
    ordered: list[Row] = []
    for n, (stretch_rows, gaps) in enumerate(stretches):
        gutter = _column_gutter(stretch_rows, gaps, right - left)
        if gutter is None:
            ordered.extend(stretch_rows)
            continue
        sides = [[Row(kept) for row in stretch_rows if (kept := [l for l in row.lines if (l.bbox[0] >= gutter[1]) == bool(side)])]
                 for side in (0, 1)]
        following = stretches[n + 1][0][0] if n + 1 < len(stretches) else None
        if following is not None and _runs_on_into(sides[0], sides[1], following):
            sides.reverse()
        ordered.extend(sides[0] + sides[1])
    return ordered


def _runs_on_into(left: list[Row], right: list[Row], following: Row) -> bool:
    """Whether the left column goes on past the right one's end into the row after the
    stretch, spaced as its own lines are: a form's header grid beside the top of a list that
    then widens. The right column is then read first, so what follows reads on from the left
    column's last heading, not from a heading of the short right column."""
    left_bottom, right_bottom = left[-1].bbox[3], right[-1].bbox[3]
    if right_bottom >= left[-1].bbox[1] or following.bbox[0] >= right[0].bbox[0]:
        return False
    # A left column of one row (two lines side by side) has no spacing of its own to go by.
    spacings = [b.bbox[1] - a.bbox[3] for a, b in zip(left, left[1:])] or [0.0]
    line_height = median(row.bbox[3] - row.bbox[1] for row in left)
    return following.bbox[1] - left_bottom <= max(median(spacings), 0.0) + 0.5 * line_height


def blocks(rows: list[Row]) -> list[Block]:
    """Rows in reading order grouped into blocks: a new block at a paragraph gap (more than
    one and a half line pitches) or where reading jumps to another column."""
    if not rows:
        return []
    pitches = [b.bbox[1] - a.bbox[1] for a, b in zip(rows, rows[1:]) if b.bbox[1] > a.bbox[1]]
    pitch = median(pitches) if pitches else rows[0].bbox[3] - rows[0].bbox[1]
    page_left = min(row.bbox[0] for row in rows)
    page_right = max(row.bbox[2] for row in rows)
    middle = (page_left + page_right) / 2
    out: list[Block] = []
    for row in rows:
        column = 1 if row.bbox[0] >= middle else 0
        if out and out[-1].column == column and 0 <= row.bbox[1] - out[-1].rows[-1].bbox[1] <= 1.5 * pitch:
            out[-1].rows.append(row)
        else:
            out.append(Block([row], column))
    return out


# Tables -------------------------------------------------------------------------------

# Header words of result tables -> the role of their column.
TABLE_HEADERS = {
    "test": "name", "test name": "name", "analyte": "name", "component": "name",
    "result": "value", "results": "value", "value": "value",
    "units": "unit", "unit": "unit",
    "reference range": "range", "ref range": "range", "reference": "range", "normal range": "range", "range": "range",
    "flag": "flag", "abnormal": "flag", "abn": "flag",
}


@dataclass
class Cell:
    text: str
    lines: list[OcrLine]


@dataclass
class TableRow:
    """One body row of a table: its cells by column role (a missing cell is absent)."""

    row: Row
    cells: dict[str, Cell]

    def text(self, role: str) -> str | None:
        cell = self.cells.get(role)
        return cell.text if cell else None


@dataclass
class Table:
    header: Row
    roles: list[str]
    bounds: list[float]  # x where each column after the first begins
    rows: list[TableRow]
    title: str | None = None  # a one-line caption just above the header ("Basic Metabolic Panel")


def _header_roles(row: Row) -> list[str] | None:
    roles = [TABLE_HEADERS.get(" ".join(line.text.lower().strip(" :").split())) for line in row.lines]
    if None in roles or len(roles) < 3 or "name" not in roles or "value" not in roles:
        return None
    return roles  # type: ignore[return-value]


def _cells(row: Row, roles: list[str], bounds: list[float], char_width: float) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for line in row.lines:
        for role, piece in zip(roles, split_line(line, bounds, char_width)):
            if piece:
                cell = cells.setdefault(role, Cell("", []))
                cell.text = f"{cell.text} {piece}".strip()
                cell.lines.append(line)
    return cells


def find_tables(rows: list[Row]) -> list[Table]:
    """Tables under a header row whose cells name the columns (Test, Result, Units, ...).

    Column boundaries lie midway between neighbouring header cells; a body line is cut at
    them, so a value, unit, range or flag lands in the column it is printed under even when
    OCR joins two cells or a cell is empty. The body ends at a paragraph gap, at a row with
    fewer than two cells, or at a single line without a number (prose).
    """
    tables: list[Table] = []
    i = 0
    while i < len(rows):
        roles = _header_roles(rows[i])
        if roles is None:
            i += 1
            continue
        header = rows[i]
        bounds = [(a.bbox[2] + b.bbox[0]) / 2 for a, b in zip(header.lines, header.lines[1:])]
        table = Table(header, roles, bounds, [], _caption(rows[i - 1], header) if i else None)
        # Header words are single cells: their width per character is the type's.
        char_width = median((line.bbox[2] - line.bbox[0]) / max(len(line.text), 1) for line in header.lines)
        pitch = header.bbox[3] - header.bbox[1]
        previous = header
        i += 1
        while i < len(rows):
            row = rows[i]
            gap = row.bbox[1] - previous.bbox[3]
            cells = _cells(row, roles, bounds, char_width)
            prose = len(row.lines) == 1 and not any(ch.isdigit() for ch in row.lines[0].text)
            if gap > 1.6 * max(pitch, previous.bbox[3] - previous.bbox[1]) or prose or len(cells) < 2:
                break
            table.rows.append(TableRow(row, cells))
            previous = row
            i += 1
        tables.append(table)
    return tables


def _caption(row: Row, header: Row) -> str | None:
    """The text of a row that captions the table below it: one line of words, no number,
    at most a line's height above the header. After a section heading on the same line
    ("LABORATORY RESULTS: Basic Metabolic Panel"), the part after its colon."""
    text = row.text.rsplit(":", 1)[-1].strip()
    gap = header.bbox[1] - row.bbox[3]
    if len(row.lines) != 1 or any(ch.isdigit() for ch in text) or not re.search(r"[A-Za-z]{2}", text):
        return None
    return text if gap <= header.bbox[3] - header.bbox[1] else None


# Key-value fields ---------------------------------------------------------------------

_KEY = re.compile(r"^\s*([A-Za-z][A-Za-z .#/]{0,30}?)\s*:\s*(.*)$")


@dataclass
class KeyValue:
    """A "Key: value" field, on one OCR line or split over a label line and the next."""

    key: str
    value: str
    lines: list[OcrLine]

    @property
    def bbox(self) -> list[float]:
        return union_bbox(self.lines)


def key_values(row: Row) -> list[KeyValue]:
    """The fields of a row, left to right; a label alone ("DOB:") takes the next line's text."""
    fields: list[KeyValue] = []
    skip = False
    for line, following in zip(row.lines, row.lines[1:] + [None]):
        if skip:
            skip = False
            continue
        match = _KEY.match(line.text)
        if not match:
            continue
        key, value = match.group(1).strip(), match.group(2).strip()
        if not value and following is not None and not _KEY.match(following.text):
            fields.append(KeyValue(key, following.text.strip(), [line, following]))
            skip = True
        elif value:
            fields.append(KeyValue(key, value, [line]))
    return fields


def join_key_values(row: Row) -> Row:
    """The row with each split field ("DOB:" | "03/02/1956") joined into one line, so a
    reader of single lines sees "DOB: 03/02/1956"; the joined line spans both boxes."""
    joined: dict[int, OcrLine] = {}
    dropped: set[int] = set()
    for field in key_values(row):
        if len(field.lines) == 2:
            label, value = field.lines
            box = union_bbox(field.lines)
            joined[label.line_id] = OcrLine(
                label.line_id, f"{label.text.strip()} {value.text.strip()}", min(label.confidence, value.confidence),
                [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]], box)
            dropped.add(value.line_id)
    if not joined:
        return row
    return Row([joined.get(line.line_id, line) for line in row.lines if line.line_id not in dropped])


# Boxed forms: a label above its value ---------------------------------------------------

_LABEL = re.compile(r"^[A-Z][A-Z .#/&()-]{1,40}$")
# "Key: value" printed whole on one line: a letter, then a colon and the value after a space (not "10:30").
_KEY_VALUE = re.compile(r"[A-Za-z][^:]*:\s+\S")


def _is_label_row(row: Row) -> bool:
    """A row of form labels: two or more capitalised cells without digits ("PATIENT NAME",
    "DATE OF BIRTH", "SEX"), none a result-table header."""
    return (len(row.lines) >= 2 and all(_LABEL.match(line.text.strip()) for line in row.lines)
            and _header_roles(row) is None)


def join_stacked_fields(rows: list[Row]) -> list[Row]:
    """Rows where each label of a form's label row is joined to the value printed under it.

    A boxed form prints "PATIENT NAME | DATE OF BIRTH | SEX" over "HERMAN, THERON | 06/24/2004 |
    M". A value belongs to the label whose column its left edge falls in (columns begin at each
    label's left edge); a value line OCR joined across columns is cut at those edges. The pair
    becomes one line "PATIENT NAME: HERMAN, THERON" spanning both boxes, which the field readers
    read like any "Key: value". Rows of another column read between the two (a form's title
    and SEX box at the right, read as a column of their own) are passed over, then read on.
    """
    rows = list(rows)
    out: list[Row] = []
    i = 0
    while i < len(rows):
        labels = rows[i]
        j = _next_in_column(rows, i)
        values = rows[j] if j is not None else None
        if values is None or _is_label_row(values) or not _below(labels, values) or not (
                _is_label_row(labels) or _is_single_field(labels, values)):
            out.append(labels)
            i += 1
            continue
        out.append(Row(_stack(labels, values)))
        del rows[j]
        i += 1
    return out


def _next_in_column(rows: list[Row], i: int) -> int | None:
    """The index of the first row after rows[i] that is not wholly right of it."""
    right = max(line.bbox[2] for line in rows[i].lines)
    return next((j for j in range(i + 1, len(rows)) if min(line.bbox[0] for line in rows[j].lines) <= right), None)


def _is_single_field(label: Row, value: Row) -> bool:
    """One capitalised label over one short value that starts under it ("PATIENT NAME" over
    "HERMAN, THERON"): a field of its own box. A heading over a sentence, a list item or a
    row of cells is not one."""
    if len(label.lines) != 1 or len(value.lines) != 1 or not _LABEL.match(label.lines[0].text.strip()):
        return False
    head, line = label.lines[0], value.lines[0]
    text = line.text.strip()
    char_width = (head.bbox[2] - head.bbox[0]) / max(len(head.text), 1)
    return (abs(line.bbox[0] - head.bbox[0]) <= 2 * char_width and len(text.split()) <= 6
            and not text.endswith((".", ":")) and not re.match(r"[-•*·]", text)
            and not _LABEL.match(text)  # a heading under a heading ("CLINICAL NOTE" / "CHIEF COMPLAINT")
            and not _KEY_VALUE.search(text))  # a field of its own under a heading ("SCREENING" / "GAD-7 score: 8")


def _below(labels: Row, values: Row) -> bool:
    # Centres, not edges: on a scan OCR boxes are padded, and a value's box may reach up
    # into its label's.
    pitch = median(line.bbox[3] - line.bbox[1] for line in labels.lines)
    drop = _centre_y(values) - _centre_y(labels)
    return 0.6 * pitch <= drop <= 2.5 * pitch


def _centre_y(row: Row) -> float:
    return median((line.bbox[1] + line.bbox[3]) / 2 for line in row.lines)


def _stack(labels: Row, values: Row) -> list[OcrLine]:
    heads = sorted(labels.lines, key=lambda line: line.bbox[0])
    char_width = median((line.bbox[2] - line.bbox[0]) / max(len(line.text), 1) for line in heads)
    # A value printed in the same box may start a little left of its label (scan skew, box padding).
    starts = [line.bbox[0] - char_width for line in heads[1:]]
    pieces: dict[int, list[tuple[str, OcrLine]]] = {}
    for line in sorted(values.lines, key=lambda line: line.bbox[0]):
        for column, piece in enumerate(split_line(line, starts, char_width)):
            if piece:
                pieces.setdefault(column, []).append((piece, line))
    stacked = []
    for column, head in enumerate(heads):
        found = pieces.get(column)
        if not found:
            stacked.append(head)
            continue
        parts = [head] + [line for _, line in found]
        box = union_bbox(parts)
        stacked.append(OcrLine(head.line_id, f"{head.text.strip()}: {' '.join(text for text, _ in found)}",
                               min(line.confidence for line in parts),
                               [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]], box))
    return stacked
