"""The `deid` config group composes, validates its bounds, and reads the key file from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.config import CONF_DIR, load_config


@pytest.mark.parametrize("option", sorted(path.stem for path in (CONF_DIR / "deid").glob("*.yaml")))
def test_every_deid_option_composes(option: str) -> None:
    deid = load_config([f"deid={option}"]).deid
    assert deid.dates.mode in ("shift", "year") and len(deid.restricted_zip3) == 17


def test_key_file_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDREC_DEID_KEY_FILE", raising=False)
    assert load_config([]).deid.key_file is None
    monkeypatch.setenv("MEDREC_DEID_KEY_FILE", "/secure/site.key")
    assert load_config([]).deid.key_file == "/secure/site.key"


@pytest.mark.parametrize("override", ["deid.restricted_zip3=[36]", "deid.reference_date=2026-13-01",
                                      "deid.dates.mode=month", "deid.images=all", "deid.pseudonym_chars=8"])
def test_bad_values_fail_at_start_up(override: str) -> None:
    with pytest.raises(ValidationError):
        load_config([override])
