"""Chat prompts for page extraction and for the one repair round.

The page goes in as numbered OCR lines (the ids the model cites as evidence, so every
field keeps its page and bounding box) and the terminology candidates retrieved for the
page as a numbered list (the model picks an index, never writes a code).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.llm.schema import KEY_LEGEND, MAX_ENTITIES_PER_PAGE
from pipeline.records import CodeCandidate, OcrLine

Message = dict[str, str]

SYSTEM_PROMPT = (
    "You extract clinical entities from one OCR'd page of a medical record. "
    "Answer with one JSON object {\"e\":[...]} and nothing else. Keys: " + KEY_LEGEND + ". "
    "Cite the [line ids] each mention is read from. For c, give the index of the candidate "
    "code that means the mention, of the same kind, or null when none does; never invent "
    f"codes. At most {MAX_ENTITIES_PER_PAGE} entities; copy text as written, briefly."
)


@dataclass(frozen=True)
class PageCandidate:
    """A terminology candidate offered to the model for one page, with the kind it codes."""

    kind: str
    candidate: CodeCandidate


def page_messages(document_type: str | None, lines: list[OcrLine], candidates: list[PageCandidate]) -> list[Message]:
    """The chat messages asking for one page's entities."""
    numbered_lines = "\n".join(f"[{line.line_id}] {line.text}" for line in lines)
    numbered_candidates = "\n".join(
        f"{index} {c.kind} {c.candidate.system.rsplit('/', 1)[-1]} {c.candidate.code} {c.candidate.display}"
        for index, c in enumerate(candidates)
    ) or "(none)"
    user = (
        f"Document type: {document_type or 'unknown'}\n"
        f"Lines:\n{numbered_lines}\n"
        f"Candidate codes:\n{numbered_candidates}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def repair_messages(original: list[Message], bad_output: str, problem: str, max_echo_chars: int = 2000) -> list[Message]:
    """The conversation asking once more after output that did not parse or did not fit the page.

    The bad output is echoed (cut to `max_echo_chars`, it may be a runaway) so the model
    sees what to fix; `problem` names what was wrong without page text.
    """
    return original + [
        {"role": "assistant", "content": bad_output[:max_echo_chars]},
        {"role": "user", "content": (
            f"That answer was rejected: {problem}. Answer again with the complete JSON object "
            "only, following the keys above; if it was cut off, list fewer entities with shorter text."
        )},
    ]
