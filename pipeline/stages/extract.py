"""Extract stage (lexicon backend): page lines -> entity mentions with assertion.

The dictionaries come from the terminology index, loaded once per actor in setup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pipeline.layout import group_rows
from pipeline.lexicon import LexiconExtractor, Lexicons
from pipeline.records import OcrLine
from pipeline.stages.base import Resources, Stage


MIN_TYPE_CONFIDENCE = 0.6  # below it, a page is read as an untyped document


class LexiconExtractStage(Stage):
    """Sections, dictionary spotting and patterns over OCR rows; CPU only."""

    name: ClassVar[str] = "extract"
    required_columns = Stage.required_columns + ("lines",)

    def __init__(self, index_path: str, resources: Resources | None = None):
        super().__init__(resources or Resources(num_cpus=0.5, batch_size=16, concurrency=1))
        self.index_path = index_path
        self.extractor: LexiconExtractor | None = None

    def setup(self) -> None:
        from pipeline.terminology import TerminologyIndex

        index = TerminologyIndex(Path(self.index_path))
        self.extractor = LexiconExtractor(
            Lexicons(
                diagnoses=index.lexicon("diagnosis"),
                medications=index.lexicon("medication"),
                labs=index.lexicon("lab"),
            )
        )

    def process_page(self, row: dict[str, Any]) -> dict[str, Any]:
        assert self.extractor is not None, "setup() loads the lexicons"
        lines = [OcrLine.from_row(line) for line in row["lines"] or []]
        # The classifier's type says what unheaded rows are; an unsure type is not relied on.
        confident = (row.get("document_type_confidence") or 0.0) >= MIN_TYPE_CONFIDENCE
        document_type = row.get("document_type_predicted") if confident else "other"
        entities = self.extractor.extract(row["document_id"], row["page_index"], group_rows(lines), document_type)
        row["entities"] = [entity.to_row() for entity in entities]
        return row
