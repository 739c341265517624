"""The page schema: compact keys, compiles with xgrammar (vLLM's grammar engine), sample outputs fit."""

from __future__ import annotations

import json

import pytest
from sample_page import mention

from pipeline.llm.schema import LlmPage, page_json_schema

GOOD = {"e": [mention("diagnosis", "Essential hypertension", [2], c=0),
              mention("medication", "Metformin 500 mg PO BID", [5], c=1, v="500", u="mg")]}


def property_names(schema: dict) -> set[str]:
    names: set[str] = set()
    for node in [schema, *schema.get("$defs", {}).values()]:
        names |= set(node.get("properties", {}))
    return names


def test_every_output_key_is_one_letter() -> None:
    assert property_names(page_json_schema()) == {"e", "k", "t", "l", "a", "c", "v", "u"}


def test_the_schema_forbids_extra_keys_and_requires_every_key() -> None:
    schema = page_json_schema()
    item = schema["$defs"]["LlmMention"]

    assert schema["additionalProperties"] is False and item["additionalProperties"] is False
    assert set(item["required"]) == set(item["properties"])


def test_sample_outputs_parse_with_pydantic() -> None:
    page = LlmPage.model_validate_json(json.dumps(GOOD))

    assert [(m.k, m.c, m.v) for m in page.e] == [("diagnosis", 0, None), ("medication", 1, "500")]


@pytest.fixture(scope="module")
def grammar():
    xgrammar = pytest.importorskip("xgrammar", reason="xgrammar not installed: pip install -e '.[grammar]'")
    # disable_any_whitespace=True in vLLM compiles the schema with any_whitespace=False.
    return xgrammar, xgrammar.Grammar.from_json_schema(json.dumps(page_json_schema()), any_whitespace=False)


def accepts(grammar, text: str) -> bool:
    xgrammar, compiled = grammar
    return xgrammar.testing._is_grammar_accept_string(compiled, text)


def test_the_schema_compiles_with_xgrammar_and_accepts_sample_output(grammar) -> None:
    # xgrammar without free whitespace emits its fixed separators ", " and ": ".
    assert accepts(grammar, json.dumps(GOOD))
    assert accepts(grammar, json.dumps({"e": []}))


@pytest.mark.parametrize("bad", [
    {"e": [{**mention("diagnosis", "HTN", [2]), "a": "maybe"}]},  # assertion outside the enum
    {"e": [{**mention("vital", "BP 120/80", [2])}]},  # a kind the LLM does not extract
    {"e": [{k: v for k, v in mention("diagnosis", "HTN", [2]).items() if k != "c"}]},  # a key missing
    {"e": [{**mention("diagnosis", "HTN", [2]), "code": "I10"}]},  # a free-form code
    {"e": [mention("diagnosis", "HTN", [])]},  # no evidence line
])
def test_the_grammar_rejects_what_the_schema_forbids(grammar, bad: dict) -> None:
    assert not accepts(grammar, json.dumps(bad))


def test_the_grammar_allows_no_free_whitespace(grammar) -> None:
    assert not accepts(grammar, json.dumps(GOOD, indent=2))
