"""The run report: conservation of pages, counts by stage and kind, throughput; JSON + Markdown."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.stages.base import PIPELINE_FAILURES
from pipeline.tables import PageTableWriter, StageTiming


def stage_figures(timings: dict[str, StageTiming], graph_started: float, graph_seconds: float,
                  workers: dict[str, int]) -> dict[str, dict[str, float | int | None]]:
    """Per-stage throughput figures, in graph order, from the streamed timing sums.

    utilisation = busy seconds / (workers x graph seconds): the share of its pool's time a
    stage spent working. A task stage (no pool) counts as one worker, so its figure is the
    mean number of its tasks busy at once. Output times are seconds after the graph started.
    """
    figures = {}
    for stage, timing in timings.items():
        pool = workers.get(stage, 1)
        seen = timing.last_ended >= timing.first_ended
        figures[stage] = {
            "workers": pool,
            "busy_seconds": round(timing.busy_seconds, 2),
            "utilisation": round(timing.busy_seconds / (pool * graph_seconds), 3) if graph_seconds else None,
            "pages_in": timing.pages_in,
            "pages_out": timing.pages_out,
            "first_output_seconds": round(timing.first_ended - graph_started, 2) if seen else None,
            "last_output_seconds": round(timing.last_ended - graph_started, 2) if seen else None,
        }
    return figures


@dataclass
class RunReport:
    pages_in: int
    pages_processed: int
    pages_quarantined: int
    pages_unaccounted: int
    documents: int
    quarantine_by_reason: dict[str, int]
    entities_by_kind: dict[str, int]
    entities_requiring_review: int
    flags: int
    resources_by_type: dict[str, int]
    resources_failed_validation: int
    entities_not_written_by_reason: dict[str, int]
    stage_busy_seconds: dict[str, float]
    wall_seconds: float
    setup_seconds: float  # manifest, terminology index and OCR model preparation, Ray start
    processing_seconds: float  # graph, tables and FHIR assembly
    graph_seconds: float
    first_output_seconds: float | None
    pages_per_minute: float
    pipeline_version: str
    terminology_version: str
    output: str
    llm_pages_by_source: dict[str, int] | None = None  # LLM backends: llm / llm_repaired / llm_fallback
    llm_output_tokens: int | None = None
    review_queue_fields: int = 0  # rows of tables/review_queue.parquet: flagged fields
    # Per stage: workers, busy seconds, utilisation, pages in/out, first and last output time.
    stages: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    pages_blank: int = 0  # processed pages with no text and no check box
    # Quarantined pages the pipeline failed on (internal errors, failed blocks, worker deaths),
    # as opposed to inputs rejected with a reason (corrupt, encrypted, unsupported ...).
    pages_failed: int = 0
    max_page_error_rate: float = 1.0
    documents_held_back: int = 0  # too many pages quarantined: kept out of FHIR, entities flagged

    @property
    def conserved(self) -> bool:
        return self.pages_unaccounted == 0 and self.pages_in == self.pages_processed + self.pages_quarantined

    @property
    def page_error_rate(self) -> float:
        return self.pages_failed / self.pages_in if self.pages_in else 0.0

    @property
    def passed(self) -> bool:
        """What the exit status says: every page accounted for, and failures within the bound."""
        return self.conserved and self.page_error_rate <= self.max_page_error_rate

    @classmethod
    def build(cls, *, pages_in: int, tables: PageTableWriter, entity_counts: dict[str, int], resources: dict[str, int],
              resource_failures: int, skipped: dict[str, int], wall_seconds: float, setup_seconds: float,
              processing_seconds: float, graph_seconds: float,
              first_output_seconds: float | None, pipeline_version: str, terminology_version: str,
              output: Path, graph_started: float, stage_workers: dict[str, int],
              max_page_error_rate: float = 1.0) -> "RunReport":
        quarantine = pq.read_table(output / "quarantine.parquet", columns=["stage", "error_type", "resource_type"])
        reasons = Counter(
            f"{stage}:{error}" for stage, error, resource in zip(*(c.to_pylist() for c in quarantine.columns))
            if resource is None
        )
        processed = tables.pages.rows
        quarantined = sum(reasons.values())
        failed = sum(count for reason, count in reasons.items() if reason.split(":", 1)[1] in PIPELINE_FAILURES)
        counts = dict(entity_counts)
        return cls(
            pages_in=pages_in,
            pages_processed=processed,
            pages_quarantined=quarantined,
            pages_unaccounted=pages_in - processed - quarantined,
            documents=len(tables.documents),
            quarantine_by_reason=dict(sorted(reasons.items())),
            entities_by_kind={k: v for k, v in sorted(counts.items())
                              if k not in ("requires_review", "flags", "review_queue", "documents_held_back")},
            entities_requiring_review=counts.get("requires_review", 0),
            flags=counts.get("flags", 0),
            resources_by_type=dict(sorted(resources.items())),
            resources_failed_validation=resource_failures,
            entities_not_written_by_reason=dict(sorted(skipped.items())),
            stage_busy_seconds={k: round(v.busy_seconds, 2) for k, v in tables.stage_timings.items()},
            wall_seconds=round(wall_seconds, 2),
            setup_seconds=round(setup_seconds, 2),
            processing_seconds=round(processing_seconds, 2),
            graph_seconds=round(graph_seconds, 2),
            first_output_seconds=round(first_output_seconds, 2) if first_output_seconds else None,
            pages_per_minute=round(pages_in / processing_seconds * 60, 2) if processing_seconds else 0.0,
            pipeline_version=pipeline_version,
            terminology_version=terminology_version,
            output=str(output),
            llm_pages_by_source=dict(sorted(tables.llm_pages.items())) or None,
            llm_output_tokens=tables.llm_output_tokens if tables.llm_pages else None,
            review_queue_fields=counts.get("review_queue", 0),
            stages=stage_figures(tables.stage_timings, graph_started, graph_seconds, stage_workers),
            pages_blank=tables.blank_pages,
            pages_failed=failed,
            max_page_error_rate=max_page_error_rate,
            documents_held_back=counts.get("documents_held_back", 0),
        )


def render_markdown(report: RunReport) -> str:
    lines = [
        "# medrec run report",
        "",
        f"- pipeline: {report.pipeline_version}; terminology index: {report.terminology_version}",
        f"- pages in {report.pages_in} = processed {report.pages_processed} + quarantined "
        f"{report.pages_quarantined} ({'conserved' if report.conserved else 'NOT CONSERVED: ' + str(report.pages_unaccounted) + ' unaccounted'})",
        f"- of the processed pages {report.pages_blank} blank; of the quarantined pages {report.pages_failed} failed "
        f"in the pipeline (error rate {report.page_error_rate:.4f}, limit {report.max_page_error_rate}: "
        f"{'within' if report.page_error_rate <= report.max_page_error_rate else 'EXCEEDED'}), the rest rejected inputs",
        f"- documents {report.documents} ({report.documents_held_back} held back: too many pages quarantined); wall {report.wall_seconds}s = set-up {report.setup_seconds}s + "
        f"processing {report.processing_seconds}s (graph {report.graph_seconds}s)",
        f"- {report.pages_per_minute} pages/min over processing; first output {report.first_output_seconds}s "
        "after the graph started",
        "",
        *render_stage_table(report.stages),
        "",
        "| quarantine reason | pages |",
        "|---|---:|",
        *[f"| {reason} | {count} |" for reason, count in report.quarantine_by_reason.items()],
        "",
        "| entity kind | mentions |",
        "|---|---:|",
        *[f"| {kind} | {count} |" for kind, count in report.entities_by_kind.items()],
        f"| (requiring review) | {report.entities_requiring_review} |",
        f"| (flagged fields in the review queue) | {report.review_queue_fields} |",
        "",
        "| FHIR resource | count |",
        "|---|---:|",
        *[f"| {kind} | {count} |" for kind, count in report.resources_by_type.items()],
        f"| (failed validation, quarantined) | {report.resources_failed_validation} |",
        "",
    ]
    if report.llm_pages_by_source:
        lines += [f"- LLM extraction: pages by source {report.llm_pages_by_source}; "
                  f"{report.llm_output_tokens} output tokens", ""]
    return "\n".join(lines)


STAGE_COLUMNS = ("workers", "busy_seconds", "utilisation", "pages_in", "pages_out",
                 "first_output_seconds", "last_output_seconds")


def render_stage_table(stages: dict[str, dict[str, float | int | None]]) -> list[str]:
    """Markdown rows of the per-stage figures (shared by the run report and `medrec bench`)."""
    return [
        "| stage | " + " | ".join(c.replace("_", " ") for c in STAGE_COLUMNS) + " |",
        "|---|" + "---:|" * len(STAGE_COLUMNS),
        *[f"| {stage} | " + " | ".join(str(figures.get(c, "")) for c in STAGE_COLUMNS) + " |"
          for stage, figures in stages.items()],
    ]


def write_report(report: RunReport, output: Path) -> None:
    payload = {**asdict(report), "conserved": report.conserved, "page_error_rate": round(report.page_error_rate, 6),
               "passed": report.passed}
    (output / "report.json").write_text(json.dumps(payload, indent=1))
    (output / "report.md").write_text(render_markdown(report))
