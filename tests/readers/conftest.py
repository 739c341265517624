"""The reader tests' fixture: the lexicon extractor as the extract stage runs it."""

from __future__ import annotations

import pytest
from reader_pages import extractor_run


@pytest.fixture
def read():
    return extractor_run()
