"""Medication instructions -> route, FHIR Timing terms, PRN and duration."""

from __future__ import annotations

import pytest

from pipeline.sig import Timing, parse_sig


@pytest.mark.parametrize("text, route, timing", [
    ("PO BID", "PO", Timing("BID", 2, 1, "d")),
    ("by mouth twice daily", "PO", Timing("BID", 2, 1, "d")),
    ("tablet by mouth daily", "PO", Timing("QD", 1, 1, "d")),
    ("1 tab po TID", "PO", Timing("TID", 3, 1, "d")),
    ("QID", None, Timing("QID", 4, 1, "d")),
    ("SC q6h", "SC", Timing("Q6H", 1, 6, "h")),
    ("SQ q.6.h.", "SC", Timing("Q6H", 1, 6, "h")),
    ("IV every 8 hours", "IV", Timing("Q8H", 1, 8, "h")),
    ("IM q4-6h", "IM", Timing("Q4-6H", 1, 4, "h", period_max=6.0)),
    ("inhaled every 4 to 6 hours", "INH", Timing("Q4-6H", 1, 4, "h", period_max=6.0)),
    ("po qHS", "PO", Timing("QHS", 1, 1, "d", when="HS")),
    ("at bedtime", None, Timing("QHS", 1, 1, "d", when="HS")),
    ("every other day", None, Timing("QOD", 1, 2, "d")),
    ("weekly", None, Timing("QWK", 1, 1, "wk")),
    ("po tid with meals", "PO", Timing("TID", 3, 1, "d", when="C")),
])
def test_route_and_timing(text: str, route: str | None, timing: Timing) -> None:
    sig = parse_sig(text)

    assert (sig.route, sig.timing, sig.unparsed) == (route, timing, [])
    assert sig.frequency_code == timing.code


@pytest.mark.parametrize("text, value, unit", [("for 7 days", 7.0, "d"), ("x 10 days", 10.0, "d"),
                                               ("x2 weeks", 2.0, "wk"), ("for 3 months", 3.0, "mo")])
def test_duration(text: str, value: float, unit: str) -> None:
    sig = parse_sig(f"po daily {text}")

    assert (sig.duration_value, sig.duration_unit, sig.timing.code) == (value, unit, "QD")


def test_as_needed_with_and_without_a_reason() -> None:
    with_reason = parse_sig("q4-6h prn pain")
    bare = parse_sig("as needed")
    for_reason = parse_sig("po as needed for nausea for 5 days")

    assert (with_reason.as_needed, with_reason.as_needed_for, with_reason.frequency_code) == (True, "pain", "Q4-6H")
    assert (bare.as_needed, bare.as_needed_for, bare.frequency_code, bare.timing) == (True, None, "PRN", None)
    assert (for_reason.as_needed_for, for_reason.route, for_reason.duration_value) == ("nausea", "PO", 5.0)


@pytest.mark.parametrize("text, unparsed", [("take as directed", ["as", "directed"]), ("q0h", ["q0h"]),
                                            ("po bid alternating", ["alternating"])])
def test_words_not_understood_are_returned(text: str, unparsed: list[str]) -> None:
    assert parse_sig(text).unparsed == unparsed
