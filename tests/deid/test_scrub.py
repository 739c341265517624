"""The Presidio scrubber: a patient's own identifiers, pattern recognisers and the name recogniser, offline."""

from __future__ import annotations

import pytest
from presidio_anonymizer import AnonymizerEngine

from pipeline.deid.generalise import DatePolicy
from pipeline.deid.identifiers import PatientIdentifiers
from pipeline.deid.scrub import Scrubber, build_analyzer, own_recognisers


@pytest.fixture(scope="module")
def analyzer():
    return build_analyzer()


def _scrubber(analyzer, identifiers: PatientIdentifiers, over_cap: bool = False) -> Scrubber:
    return Scrubber(analyzer, AnonymizerEngine(), DatePolicy("shift", 10, False), own_recognisers(identifiers, 3), 0.4,
                    over_cap)


def test_own_identifiers_are_found_wherever_they_occur(analyzer) -> None:
    own = PatientIdentifiers(names={"Rosalind Quennell"}, numbers={"448812"}, birth_dates={"1961-04-17"},
                             phones={"(312) 555-0187"})
    scrubbed = _scrubber(analyzer, own).scrub(
        "Rosalind returned. quennell, rosalind; chart 448 812; born April 17, 1961; call 312.555.0187").text
    for left in ("Rosalind", "rosalind", "quennell", "448 812", "April 17", "555"):
        assert left not in scrubbed, scrubbed
    assert "[NAME] returned." in scrubbed
    assert "born 1961-04-27" in scrubbed  # the birth date shifted with the patient's other dates


def test_patterns_names_and_shifted_dates(analyzer) -> None:
    scrubber = _scrubber(analyzer, PatientIdentifiers())
    text = ("Seen by Dr. Imogen Farquhar on 03/02/2024. Referred by: Lionel Abernathy-Cole. Scott Reynolds MD. "
            "MRN: A77812. 12 Larkspur Lane, Evanston, IL 60201. Tel (312) 555-0187, ik@example.org, "
            "https://portal.example.org/p/77. Serial no: SN-99812. K 5.6 mmol/L (3.5-5.0), BP 128/82, I10.")
    scrubbed = scrubber.scrub(text).text
    for left in ("Imogen", "Farquhar", "Lionel", "Abernathy", "Reynolds", "A77812", "Larkspur", "Evanston", "60201",
                 "555-0187", "example.org", "SN-99812", "03/02/2024"):
        assert left not in scrubbed, (left, scrubbed)
    assert "2024-03-12" in scrubbed  # the date shifted by the patient's offset, not dropped
    for kept in ("5.6 mmol/L (3.5-5.0)", "128/82", "I10"):
        assert kept in scrubbed  # clinical values untouched
    assert {"names", "dates", "geographic", "phone_fax", "email", "url", "device_numbers"} <= set(scrubber.counts)


def test_ages_over_89_and_birth_dates_of_the_very_old(analyzer) -> None:
    own = PatientIdentifiers(birth_dates={"1930-02-03"})
    scrubbed = _scrubber(analyzer, own, over_cap=True).scrub("A 92 year-old man, DOB 02/03/1930; age: 95").text
    assert "92" not in scrubbed and "95" not in scrubbed and "1930" not in scrubbed
    assert "90+ year-old" in scrubbed
    assert "64 year-old" in _scrubber(analyzer, own).scrub("a 64 year-old").text
