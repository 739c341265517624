"""Classify stage: the document type of each page and document, with a confidence.

Weighted cue scoring: a cue counts three times in the title (the first rows of a page),
one and a half times in a heading (a short line ending in a colon or in capitals) and once
in the body. The scores of the pages of one document are summed, so its pages agree (a
"Page 2 of 3" page takes its document's type). The confidence is a softmax over the type
scores, with "other" scoring a fixed baseline, so thin or split evidence gives a low
confidence and too little of it gives "other".
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any, ClassVar

from pipeline.stages.base import Resources, Stage

DOCUMENT_TYPES = ("discharge_summary", "lab_report", "prescription", "referral_letter", "progress_note",
                  "intake_form", "consent", "billing", "other")

# Phrases that mark a type, with their weight as body text.
CUES: dict[str, tuple[tuple[str, float], ...]] = {
    "discharge_summary": (("discharge summary", 3.0), ("discharge diagnos", 1.5), ("discharge medications", 1.5),
                          ("admission date", 1.0), ("discharge date", 1.0), ("hospital course", 1.5),
                          ("discharge instructions", 1.0), ("date of discharge", 1.0)),
    "lab_report": (("laboratory report", 3.0), ("lab report", 3.0), ("laboratory results", 2.0),
                   ("reference range", 2.0), ("specimen", 1.0), ("collected", 1.0), ("ref range", 1.5),
                   ("result", 0.5)),
    "prescription": (("prescription", 3.0), ("rx:", 1.5), ("refills", 1.5), ("sig:", 1.5), ("dispense", 1.5),
                     ("dea", 1.0), ("substitution", 1.0)),
    "referral_letter": (("referral", 3.0), ("dear ", 1.0), ("referring", 1.5), ("kind regards", 1.0),
                        ("yours sincerely", 1.0), ("thank you for seeing", 2.0), ("reason for referral", 2.0)),
    "progress_note": (("progress note", 3.0), ("subjective", 1.0), ("objective", 1.0), ("assessment", 1.0),
                      ("soap", 1.0), ("follow-up", 0.5), ("interval history", 1.0), ("clinic note", 2.0)),
    "intake_form": (("intake form", 3.0), ("check all that apply", 2.0), ("emergency contact", 1.0),
                    ("new patient", 1.5), ("registration", 1.5), ("insurance", 0.5)),
    "consent": (("consent", 3.0), ("i authorize", 1.5), ("signature of patient", 1.0), ("i understand", 1.0),
                ("risks and benefits", 1.5), ("witness", 0.5)),
    "billing": (("invoice", 3.0), ("amount due", 2.0), ("billing", 2.0), ("statement of account", 2.0),
                ("cpt", 1.0), ("balance", 1.0), ("payment", 1.0)),
}
REGION_WEIGHTS = {"title": 3.0, "heading": 1.5, "body": 1.0}
TITLE_ROWS = 3  # the first lines of a page carry its title
OTHER_BASELINE = 3.0  # what "other" scores: one title cue alone does not make a type
SOFTMAX_SCALE = 1.0  # score units per e-fold of odds
_SPACES = re.compile(r"\s+")
_CUE_PATTERNS = {kind: tuple((re.compile(rf"(?<![a-z]){re.escape(cue.strip())}"), weight) for cue, weight in cues)
                 for kind, cues in CUES.items()}


def _region(index: int, text: str) -> str:
    if index < TITLE_ROWS:
        return "title"
    stripped = text.strip()
    if len(stripped) <= 40 and (stripped.endswith(":") or (stripped.isupper() and len(stripped) > 3)):
        return "heading"
    return "body"


def cue_scores(lines: list[str]) -> dict[str, float]:
    """Evidence per type: each cue counted once per line, weighted by where the line stands.

    A cue OCR split over two lines ("DISCHARGE" / "SUMMARY") still counts once, as body text.
    """
    scores = dict.fromkeys(CUES, 0.0)
    unmatched = {(kind, index) for kind, cues in _CUE_PATTERNS.items() for index in range(len(cues))}
    for line_index, text in enumerate(lines):
        lowered = _SPACES.sub(" ", text.lower())
        region = REGION_WEIGHTS[_region(line_index, text)]
        for kind, cues in _CUE_PATTERNS.items():
            for index, (pattern, weight) in enumerate(cues):
                if pattern.search(lowered):
                    scores[kind] += weight * region
                    unmatched.discard((kind, index))
    joined = _SPACES.sub(" ", " ".join(lines).lower())
    for kind, index in unmatched:
        pattern, weight = _CUE_PATTERNS[kind][index]
        if pattern.search(joined):
            scores[kind] += weight * REGION_WEIGHTS["body"]
    return scores


def decide(scores: dict[str, float]) -> tuple[str, float]:
    """(type, confidence): softmax over the type scores plus the "other" baseline."""
    logits = {**scores, "other": OTHER_BASELINE}
    top = max(logits.values())
    weights = {kind: math.exp((score - top) / SOFTMAX_SCALE) for kind, score in logits.items()}
    total = sum(weights.values())
    best = max(logits, key=lambda kind: (logits[kind], kind == "other"))
    if best == "other" and max(scores.values(), default=0.0) == 0:
        return "other", 0.0  # nothing on the page speaks for any type
    return best, round(weights[best] / total, 3)


def classify_text(text: str) -> tuple[str, float]:
    """(document type, confidence in [0, 1]) of one text, its lines split on newlines."""
    return decide(cue_scores(text.splitlines()))


class ClassifyStage(Stage):
    """Cue classifier over the page text, agreed per document within a batch; CPU only, no model."""

    name: ClassVar[str] = "classify"
    required_columns = Stage.required_columns + ("lines",)

    def __init__(self, resources: Resources | None = None):
        super().__init__(resources or Resources(num_cpus=0.25, batch_size=32))

    def process_pages(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        page_scores = [cue_scores([line["text"] for line in row["lines"] or []]) for row in rows]
        document_scores: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: dict.fromkeys(CUES, 0.0))
        for row, scores in zip(rows, page_scores):
            totals = document_scores[(row["facility_id"], row["document_id"])]
            for kind, score in scores.items():
                totals[kind] += score
        for row in rows:
            kind, confidence = decide(document_scores[(row["facility_id"], row["document_id"])])
            row["document_type_predicted"], row["document_type_confidence"] = kind, confidence
        return rows
