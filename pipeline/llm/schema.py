"""The JSON schema LLM output is bound to, generated from pydantic models with compact keys.

Output tokens are about half the LLM time, so every key is one letter and the decoder
allows no optional whitespace. The legend the prompt gives the model lives here too, so
keys and their explanation cannot drift apart.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Kinds the LLM extracts. Demographics, encounter fields and vitals are key-value patterns
# the lexicon reads exactly; they pass through from the lexicon unchanged.
LLM_KINDS = ("diagnosis", "medication", "allergy", "lab", "procedure")
ASSERTIONS = ("present", "negated", "historical", "family", "hypothetical")
MAX_ENTITIES_PER_PAGE = 80
MAX_EVIDENCE_LINES = 8


class LlmMention(BaseModel):
    """One entity mention as the model writes it."""

    model_config = ConfigDict(extra="forbid")

    k: Literal[LLM_KINDS] = Field(description="kind")
    t: str = Field(max_length=160, description="text as written on the page")
    l: list[int] = Field(min_length=1, max_length=MAX_EVIDENCE_LINES, description="evidence line ids")  # noqa: E741
    a: Literal[ASSERTIONS] = Field(description="assertion")
    c: int | None = Field(description="index of the chosen candidate code, null when none fits")
    v: str | None = Field(description="value as written: dose, result or date; null when none")
    u: str | None = Field(description="unit as written; null when none")


class LlmPage(BaseModel):
    """Every mention on one page."""

    model_config = ConfigDict(extra="forbid")

    e: list[LlmMention] = Field(max_length=MAX_ENTITIES_PER_PAGE, description="entities")


KEY_LEGEND = (
    "k=kind (" + "|".join(LLM_KINDS) + "), t=text as written, l=evidence line ids, "
    "a=assertion (" + "|".join(ASSERTIONS) + "), c=candidate index or null, "
    "v=value as written or null, u=unit or null"
)


@lru_cache(maxsize=1)
def page_json_schema() -> dict[str, Any]:
    """The JSON schema of `LlmPage` as vLLM's structured-output decoder receives it."""
    return LlmPage.model_json_schema()
