"""Classify stage: the document type of each page from its words, with a confidence."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pipeline.stages.base import Resources, Stage

DOCUMENT_TYPES = ("discharge_summary", "lab_report", "prescription", "referral_letter", "progress_note",
                  "intake_form", "consent", "billing", "other")

# Phrases that mark a type; a title phrase weighs more than a body cue.
CUES: dict[str, tuple[tuple[str, float], ...]] = {
    "discharge_summary": (("discharge summary", 3.0), ("discharge diagnos", 1.5), ("admission date", 1.0),
                          ("hospital course", 1.0)),
    "lab_report": (("laboratory report", 3.0), ("reference range", 2.0), ("specimen", 1.0), ("collected", 1.0)),
    "prescription": (("prescription", 3.0), ("rx:", 1.5), ("refills", 1.5), ("sig:", 1.0), ("dispense", 1.0)),
    "referral_letter": (("referral", 3.0), ("dear ", 1.0), ("referring", 1.5), ("kind regards", 1.0)),
    "progress_note": (("progress note", 3.0), ("subjective", 1.0), ("assessment", 1.0), ("soap", 1.0)),
    "intake_form": (("intake form", 3.0), ("check all that apply", 2.0), ("emergency contact", 1.0)),
    "consent": (("consent", 3.0), ("i authorize", 1.5), ("signature of patient", 1.0)),
    "billing": (("invoice", 3.0), ("amount due", 2.0), ("billing", 2.0), ("cpt", 1.0)),
}
_SPACES = re.compile(r"\s+")


def classify_text(text: str) -> tuple[str, float]:
    """(document type, confidence in [0, 1]); 'other' when no cue is present."""
    lowered = _SPACES.sub(" ", text.lower())
    scores = {kind: sum(weight for cue, weight in cues if cue in lowered) for kind, cues in CUES.items()}
    best = max(scores, key=scores.get)
    total = sum(scores.values())
    if scores[best] == 0:
        return "other", 0.0
    # Share of the evidence, damped when there is little of it.
    return best, round(scores[best] / total * min(1.0, scores[best] / 3.0), 3)


class ClassifyStage(Stage):
    """Keyword-cue classifier over the page text: cheap, CPU only, no model."""

    name: ClassVar[str] = "classify"
    required_columns = Stage.required_columns + ("lines",)

    def __init__(self, resources: Resources | None = None):
        super().__init__(resources or Resources(num_cpus=0.25, batch_size=32))

    def process_page(self, row: dict[str, Any]) -> dict[str, Any]:
        text = " ".join(line["text"] for line in row["lines"] or [])
        kind, confidence = classify_text(text)
        row["document_type_predicted"], row["document_type_confidence"] = kind, confidence
        return row
