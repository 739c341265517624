"""Check boxes on pages drawn in the test: outlines found, states read, labels attached."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.checkboxes import (AMBIGUOUS, CHECKED, UNCHECKED, _histogram_median, attach_labels, detect_checkboxes,
                                 page_checkboxes)
from pipeline.records import CheckboxMark, OcrLine

DPI = 150
SIDE = 23  # an 11 pt box at 150 DPI


def page(width: int = 1275, height: int = 400) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (width, height), 255)
    return image, ImageDraw.Draw(image)


def draw_box(draw: ImageDraw.ImageDraw, x: int, y: int, mark: str = "", fill: int = 0) -> None:
    draw.rectangle((x, y, x + SIDE, y + SIDE), outline=0, width=2)
    if mark == "x":
        draw.line((x + 4, y + 4, x + SIDE - 4, y + SIDE - 4), fill=fill, width=3)
        draw.line((x + 4, y + SIDE - 4, x + SIDE - 4, y + 4), fill=fill, width=3)
    elif mark == "tick":
        draw.line((x + 5, y + 12, x + 10, y + SIDE - 5, x + SIDE - 4, y + 5), fill=fill, width=3)


def gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.uint8)


def test_checked_ticked_and_empty_boxes_are_found_with_their_states() -> None:
    image, draw = page()
    draw_box(draw, 100, 100, "x")
    draw_box(draw, 480, 100, "tick")
    draw_box(draw, 860, 100)

    marks = detect_checkboxes(gray(image), DPI)

    assert [(m.bbox[0], m.state) for m in marks] == [(100, CHECKED), (480, CHECKED), (860, UNCHECKED)]
    assert marks[0].bbox == [100.0, 100.0, 124.0, 124.0]
    assert marks[2].ink == 0.0


def test_a_faint_mark_is_ambiguous_not_checked() -> None:
    image, draw = page()
    draw_box(draw, 100, 100, "x", fill=200)  # a light pencil stroke, or an erased tick

    (mark,) = detect_checkboxes(gray(image), DPI)

    assert mark.state == AMBIGUOUS


def test_text_alone_has_no_boxes() -> None:
    image, draw = page()
    font = ImageFont.load_default(size=23)
    draw.text((100, 100), "O D 0 Q H # [ ] Diabetes mellitus, BP 120/80 mmHg", fill=0, font=font)
    draw.rectangle((100, 200, 900, 380), outline=0, width=2)  # a table border is far larger than a box

    assert detect_checkboxes(gray(image), DPI) == []


def test_boxes_on_a_low_contrast_scan_are_still_read() -> None:
    image, draw = page()
    draw_box(draw, 100, 100, "x")
    draw_box(draw, 480, 100)
    faded = (90 + gray(image).astype(np.float32) / 255 * 130).astype(np.uint8)  # ink 90, paper 220

    assert [m.state for m in detect_checkboxes(faded, DPI)] == [CHECKED, UNCHECKED]


def line(line_id: int, text: str, x: float, y: float, width: float) -> OcrLine:
    return OcrLine(line_id, text, 0.9, [[x, y], [x + width, y], [x + width, y + 22], [x, y + 22]],
                   [x, y, x + width, y + 22])


def mark(x: float, y: float = 100.0, state: str = CHECKED) -> CheckboxMark:
    return CheckboxMark(bbox=[x, y, x + 24, y + 24], state=state, ink=0.5)


def test_labels_are_the_text_right_of_each_box_up_to_the_next_box() -> None:
    marks = [mark(100), mark(480), mark(866)]
    lines = [line(0, "X Diabetes", 100, 101, 120),  # OCR read the checked box as an "X"
             line(1, "High blood pressure", 518, 100, 210),
             line(2, "Asthma", 862, 102, 106),  # the detector's line box swallowed the check box
             line(3, "Name: Mary Smith", 100, 40, 200)]  # a line above: no box's label

    labelled = attach_labels(marks, lines)

    assert [(m.label, m.label_line_ids) for m in labelled] == [("Diabetes", [0]), ("High blood pressure", [1]),
                                                             ("Asthma", [2])]


def test_a_label_running_into_the_next_box_is_cut_there() -> None:
    marks = [mark(100), mark(250)]
    lines = [line(0, "Gout Asthma", 130, 100, 11 * 28)]  # 28 px per character: "Asthma" starts at 270

    labelled = attach_labels(marks, lines)

    assert [(m.label, m.label_line_ids) for m in labelled] == [("Gout", [0]), ("Asthma", [0])]


def test_page_checkboxes_gives_the_page_row_column() -> None:
    image, draw = page()
    draw_box(draw, 100, 100, "x")
    lines = [line(0, "Asthma", 138, 101, 70).to_row()]

    (row,) = page_checkboxes(gray(image), DPI, lines)

    assert row == {"bbox": [100.0, 100.0, 124.0, 124.0], "state": CHECKED, "ink": row["ink"], "label": "Asthma",
                   "label_line_ids": [0]}
    assert CheckboxMark.from_row(row).label == "Asthma"


def test_noisy_scans_keep_empty_boxes_empty() -> None:
    from pipeline.synth.documents import Checkbox, CheckboxLine
    from pipeline.synth.render import draw_page, scan_noise

    row = CheckboxLine([Checkbox(0.08, "Diabetes", True), Checkbox(0.38, "Asthma", False),
                        Checkbox(0.68, "Gout", False)])
    clean = draw_page([row, row, row], DPI)

    for seed in range(4):  # speckle, blur and JPEG ringing inside an empty box are not a mark
        marks = detect_checkboxes(gray(scan_noise(clean, seed)), DPI)
        assert len(marks) == 9, seed
        assert all(m.state == (CHECKED if m.bbox[0] < 300 else UNCHECKED) for m in marks), seed


# "DI" of a bold "DISCHARGE DIAGNOSES:" on a scanned demo page, as thresholded: the two
# letters touch and make a square blob with four inked sides and straight corners.
BOLD_DI = """\
....#########.......###.....
...############.....####....
...#############...#####...#
...##############..#####..##
...#####....######.#####..##
...#####.....#####.#####.###
...#####......####.#####.###
...#####......##########..##
...#####......##########..##
...#####......##########...#
...#####......####.#####....
...#####......####.#####..#.
...#####.....#####.#####.###
...#####.....#####.####..###
...##############..#####.###
...##############..#####.###
...############....#####..##
...###########.....####....#"""


def test_bold_heading_letters_run_together_are_not_a_box() -> None:
    blob = np.array([[0 if ch == "#" else 255 for ch in row] for row in BOLD_DI.splitlines()], dtype=np.uint8)
    scan = np.full((200, 400), 255, dtype=np.uint8)
    scan[100:100 + blob.shape[0], 100:100 + blob.shape[1]] = blob

    assert detect_checkboxes(scan, DPI) == []


def test_a_page_of_one_grey_level_has_no_boxes() -> None:
    # The back of a sheet (all white) or a black frame: no ink/paper split to threshold.
    for level in (255, 0, 128):
        assert detect_checkboxes(np.full((300, 200), level, dtype=np.uint8), DPI) == []


@pytest.mark.parametrize("size", [1, 2, 7, 10, 501])
def test_the_histogram_median_is_numpys_median(size: int) -> None:
    pixels = np.random.default_rng(size).integers(0, 256, size).astype(np.uint8)
    counts = np.bincount(pixels, minlength=256)
    levels = np.flatnonzero(counts)
    assert _histogram_median(levels, counts[levels]) == float(np.median(pixels))
