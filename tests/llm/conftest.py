"""Fixtures of the sample page (tests/llm/sample_page.py)."""

from sample_page import lexicon_entities, page_candidates, page_lines  # noqa: F401  (fixtures)
