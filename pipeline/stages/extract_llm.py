"""Extract stage (LLM backends): an LLM reads the page and is checked against the lexicon.

It runs after the lexicon extract stage and a code stage, so each page arrives with the
lexicon's coded mentions; their candidates are the page's candidate list. Per batch: one
engine call reads every page, rejected output gets one repair call, and a page rejected
twice keeps the lexicon result, flagged as a fallback. The engine (vLLM in-process or an
OpenAI-compatible endpoint) is started once per actor; the CPU work (lexicon, index
lookups) stays in the stages before it, so the GPU actor does little besides generating.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from pipeline.llm.engines import LlmEngine
from pipeline.llm.parse import (MergeSettings, OutputRejected, mark_fallback, merge_with_lexicon,
                                parse_page_output)
from pipeline.llm.prompt import Message, PageCandidate, page_messages, repair_messages
from pipeline.llm.schema import LLM_KINDS, LlmPage
from pipeline.records import Entity, OcrLine
from pipeline.stages.base import Resources, Stage

log = logging.getLogger(__name__)

# `extract_source` values: which extractor's word the page's entities rest on.
SOURCE_LLM, SOURCE_REPAIRED, SOURCE_FALLBACK = "llm", "llm_repaired", "llm_fallback"


@dataclass
class _PageWork:
    """One page on its way through the batch."""

    lines: list[OcrLine]
    lexicon: list[Entity]
    candidates: list[PageCandidate]
    messages: list[Message]
    llm: LlmPage | None = None
    repair: list[Message] = field(default_factory=list)
    source: str = SOURCE_LLM
    output_tokens: int = 0


class LlmExtractStage(Stage):
    """Entities from an LLM bound to the page schema, checked against the lexicon's."""

    name: ClassVar[str] = "extract_llm"
    required_columns = Stage.required_columns + ("lines", "entities")

    def __init__(self, engine_factory: Callable[[], LlmEngine], merge: MergeSettings = MergeSettings(),
                 resources: Resources | None = None):
        super().__init__(resources or Resources(num_cpus=1, batch_size=64, concurrency=1))
        self.engine_factory, self.merge = engine_factory, merge
        self.engine: LlmEngine | None = None

    def setup(self) -> None:
        self.engine = self.engine_factory()
        self.engine.start()

    def process_pages(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        work: dict[int, _PageWork] = {}

        def prepare(row: dict[str, Any], position: int) -> dict[str, Any]:
            work[position] = prepare_page(row)
            return row

        rows = [self._guarded(prepare, row, position) for position, row in enumerate(rows)]
        pages = list(work.values())
        self._generate(pages, repairing=False)
        self._generate([page for page in pages if page.repair], repairing=True)
        for page in pages:
            if page.llm is None:
                page.source = SOURCE_FALLBACK
        log.info("llm extract: %d pages, %d repaired, %d fell back to the lexicon", len(pages),
                 sum(p.source == SOURCE_REPAIRED for p in pages), sum(p.source == SOURCE_FALLBACK for p in pages))
        return [self._guarded(self._finish, row, work[position]) if position in work else row
                for position, row in enumerate(rows)]

    def _generate(self, pages: list[_PageWork], repairing: bool) -> None:
        """One engine call for the pages' first attempt, or for their repair turn."""
        if not pages:
            return
        assert self.engine is not None, "setup() starts the engine"
        completions = self.engine.generate([page.repair if repairing else page.messages for page in pages])
        for page, completion in zip(pages, completions, strict=True):
            page.output_tokens += completion.output_tokens
            try:
                page.llm = parse_page_output(completion, page.lines, page.candidates)
            except OutputRejected as rejected:
                if not repairing:
                    page.repair = repair_messages(page.messages, completion.text, rejected.problem)
                continue
            if repairing:
                page.source = SOURCE_REPAIRED

    def _finish(self, row: dict[str, Any], page: _PageWork) -> dict[str, Any]:
        if page.llm is None:
            entities = mark_fallback(page.lexicon)
        else:
            entities = merge_with_lexicon(row["document_id"], row["page_index"], page.lines, page.llm,
                                          page.lexicon, page.candidates, self.merge)
        row["entities"] = [entity.to_row() for entity in entities]
        row["extract_source"] = page.source
        row["llm_output_tokens"] = page.output_tokens
        return row


def prepare_page(row: dict[str, Any]) -> _PageWork:
    """The page's lines, the lexicon's coded mentions, their candidates and the prompt."""
    lines = [OcrLine.from_row(line) for line in row["lines"] or []]
    lexicon = [Entity.from_row(entity) for entity in row["entities"] or []]
    candidates = page_candidates(lexicon)
    messages = page_messages(row.get("document_type_predicted"), lines, candidates)
    return _PageWork(lines=lines, lexicon=lexicon, candidates=candidates, messages=messages)


def page_candidates(lexicon: list[Entity]) -> list[PageCandidate]:
    """The distinct candidates the index proposed for the page's lexicon mentions, in page order."""
    seen: set[tuple[str, str]] = set()
    found = []
    for entity in lexicon:
        if entity.kind not in LLM_KINDS:
            continue
        for candidate in entity.candidates:
            if (candidate.system, candidate.code) not in seen:
                seen.add((candidate.system, candidate.code))
                found.append(PageCandidate(entity.kind, candidate))
    return found
