"""Synthetic page drawing and the noisy-scan option: deterministic by seed, visibly degraded."""

from __future__ import annotations

import numpy as np

from pipeline.synth.documents import Checkbox, CheckboxLine, Line
from pipeline.synth.render import draw_page, scan_noise

PAGE = [Line([(0.08, "LABORATORY REPORT")], bold=True), Line([(0.08, "Glucose"), (0.38, "67"), (0.52, "mg/dL")]),
        CheckboxLine([Checkbox(0.45, "Yes", False), Checkbox(0.60, "No", True)], prompt="Chest pain")]


def test_noise_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    clean = draw_page(PAGE, 100)

    first, again, other = scan_noise(clean, 5), scan_noise(clean, 5), scan_noise(clean, 6)

    assert first.size == clean.size and first.mode == "L"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_noise_lowers_contrast_and_adds_speckle_to_the_paper() -> None:
    clean = np.asarray(draw_page(PAGE, 100))
    noisy = np.asarray(scan_noise(draw_page(PAGE, 100), 5)).astype(np.float32)

    paper = noisy[clean == 255]
    assert 200 < np.median(paper) < 240  # greyed paper, not white
    assert noisy.min() > 0 or np.percentile(noisy, 0.5) > 20  # ink no longer black
    assert (paper < 120).mean() > 0.0003  # dark specks on the paper
    assert np.abs(noisy - clean).mean() > 10


def test_yes_no_rows_print_their_prompt_left_of_the_boxes() -> None:
    image = np.asarray(draw_page(PAGE, 100))
    row_top = int((0.7 + 2 * 0.29) * 100)
    band = image[row_top:row_top + 16]

    assert (band[:, 68:120] < 128).any()  # the prompt at the left margin (0.08 of 850 px)
    assert (band[:, 382:384] < 128).all(axis=0).any() and (band[:, 510:512] < 128).all(axis=0).any()  # box sides
