"""Dates as charts write them -> ISO 8601, two-digit years included."""

from __future__ import annotations

from datetime import date

import pytest

from pipeline.dates import iso_date

TODAY = date(2026, 11, 22)


@pytest.mark.parametrize("text, iso", [
    ("03/02/2024", "2024-03-02"), ("3/2/2024", "2024-03-02"), ("2024-03-02", "2024-03-02"),
    ("03-02-2024", "2024-03-02"), ("03.02.2024", "2024-03-02"), ("2 Mar 2024", "2024-03-02"),
    ("02-Mar-2024", "2024-03-02"), ("March 2, 2024", "2024-03-02"), ("Mar. 2nd 2024", "2024-03-02"),
    ("2 March 2024", "2024-03-02"), ("20240302", "2024-03-02"), ("seen on 3/2/24.", "2024-03-02"),
    ("Mar 2. 2024", "2024-03-02"), ("Mar 2 ,2024", "2024-03-02"),  # the comma as OCR reads it
])
def test_written_forms(text: str, iso: str) -> None:
    assert iso_date(text, today=TODAY) == iso


@pytest.mark.parametrize("text, future_years, iso", [
    ("3/2/30", 10, "2030-03-02"),  # a follow-up date may lie ahead
    ("3/2/40", 10, "1940-03-02"),  # more than ten years ahead: last century
    ("3/2/27", 0, "1927-03-02"),  # a birth date is never in the future
    ("11/22/26", 0, "2026-11-22"),
])
def test_two_digit_years_take_the_sensible_century(text: str, future_years: int, iso: str) -> None:
    assert iso_date(text, today=TODAY, future_years=future_years) == iso


@pytest.mark.parametrize("text", ["13/45/1975", "02/30/2024", "31 Foo 2024", "no date", "", "Feb 30, 2024"])
def test_impossible_or_absent_dates_are_none(text: str) -> None:
    assert iso_date(text, today=TODAY) is None
