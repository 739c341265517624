"""Keyed pseudonyms and date offsets drawn from the site key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.deid.keys import SiteKey

KEY_A = b"a" * 32 + b"-site-a-secret"
KEY_B = b"b" * 32 + b"-site-b-secret"


def test_same_key_same_pseudonym_other_key_unrelated() -> None:
    a1, a2, b = SiteKey(KEY_A), SiteKey(KEY_A), SiteKey(KEY_B)
    assert a1.pseudonym("patient", "fac|mrn:1") == a2.pseudonym("patient", "fac|mrn:1")
    assert a1.pseudonym("patient", "fac|mrn:1") != b.pseudonym("patient", "fac|mrn:1")
    assert a1.pseudonym("patient", "x") != a1.pseudonym("document", "x")  # namespaces apart
    assert len(a1.pseudonym("patient", "x")) == 32


def test_date_offset_is_stable_bounded_and_never_zero() -> None:
    key = SiteKey(KEY_A)
    offsets = [key.date_offset_days(f"patient-{i}", 30) for i in range(2000)]
    assert offsets == [key.date_offset_days(f"patient-{i}", 30) for i in range(2000)]
    assert 0 not in offsets and min(offsets) == -30 and max(offsets) == 30
    assert offsets != [SiteKey(KEY_B).date_offset_days(f"patient-{i}", 30) for i in range(2000)]


def test_key_file_is_read_stripped_and_short_keys_refused(tmp_path: Path) -> None:
    path = tmp_path / "site.key"
    path.write_bytes(KEY_A + b"\n")
    assert SiteKey.from_file(path).pseudonym("p", "1") == SiteKey(KEY_A).pseudonym("p", "1")
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SiteKey.from_file(path)
    with pytest.raises(FileNotFoundError, match="urandom"):
        SiteKey.from_file(tmp_path / "missing.key")
