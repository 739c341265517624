"""Safe Harbor generalisations: date shifts that keep intervals, ZIP3, ages over 89."""

from __future__ import annotations

from datetime import date

from pipeline.deid.generalise import DatePolicy, is_over_age_cap, zip3

RESTRICTED = frozenset({"036", "692", "893"})


def test_shift_keeps_intervals_and_precision() -> None:
    policy = DatePolicy("shift", offset_days=-40, shift_year_only_dates=False)
    admitted, discharged = policy.apply("2024-03-02"), policy.apply("2024-03-05")
    assert (date.fromisoformat(discharged) - date.fromisoformat(admitted)).days == 3
    assert admitted == "2024-01-22"
    assert policy.apply("2024-03-02T10:15:00Z") == "2024-01-22T10:15:00Z"
    assert policy.apply("2024-03") == "2024-02"  # month precision kept
    assert policy.apply("2019") == "2019"  # a year alone stays (Safe Harbor keeps years)
    assert DatePolicy("shift", 200, True).apply("2019") == "2020"
    assert policy.apply("not a date") is None


def test_year_mode_keeps_only_the_year() -> None:
    policy = DatePolicy("year", offset_days=12, shift_year_only_dates=False)
    assert policy.apply("2024-03-02") == "2024" and policy.apply("2024-03-02T10:00:00Z") == "2024"


def test_zip3_and_restricted_prefixes() -> None:
    assert zip3("60201", RESTRICTED) == "602"
    assert zip3("69201", RESTRICTED) == "000"
    assert zip3("03601-1234", RESTRICTED) == "000"


def test_age_cap() -> None:
    on = date(2026, 11, 1)
    assert is_over_age_cap("1930-02-03", on, 89)
    assert not is_over_age_cap("1937-01-01", on, 89)  # 89 years old: not over
    assert not is_over_age_cap("1936", on, 89)  # a year alone is read as 31 December: 89 at the youngest
    assert is_over_age_cap("1935", on, 89)
