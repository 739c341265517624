"""The small stage contract every stage follows, and the page-failure convention.

A stage is a plain class: its constructor takes its config, `setup` loads anything heavy
once per worker, `process_batch` maps an Arrow batch of page rows to a batch of the same
schema. Stages never call Ray; `pipeline.ray_adapter` turns them into `map_batches`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from pipeline.schemas import page_rows_to_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs; the adapter maps it onto Ray."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 4
    memory_mb: int | None = None  # resident working set per worker; Ray reserves it
    # None: stateless tasks. An int: an actor pool of that many actors (model holders).
    concurrency: int | None = None
    # OS scheduling niceness of the pool's actors: on a few cores, light stages that run
    # beside the bottleneck (OCR) yield the CPU to it instead of taking turns with it.
    nice: int = 0


class PageFailure(Exception):
    """Raised by a stage for a bad page (corrupt, unsupported, unreadable input).

    The page is marked with the stage and reason, skips the later stages and lands in
    quarantine. Messages must not carry page text (PHI). Model stages that hold an engine
    let the engine's own failures propagate, so Ray restarts the actor.
    """

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class Stage:
    """Base for stages: column checks, error pass-through, per-stage timing."""

    name: ClassVar[str] = "stage"
    required_columns: ClassVar[tuple[str, ...]] = ("facility_id", "document_id", "page_index")

    def __init__(self, resources: Resources | None = None):
        self.resources = resources or Resources()
        self._ready = False

    def setup(self) -> None:
        """Load models or indexes; called once per worker before the first batch."""

    def process_page(self, row: dict[str, Any]) -> dict[str, Any]:
        """Process one page row that has no error; return the updated row."""
        raise NotImplementedError

    def process_pages(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Process the healthy rows of a batch; override to batch model calls."""
        return [self._guarded(self.process_page, row) for row in rows]

    def process_batch(self, batch: pa.Table) -> pa.Table:
        if not self._ready:
            self.setup()
            self._ready = True
        missing = [c for c in self.required_columns if c not in batch.column_names]
        if missing:
            raise KeyError(f"stage {self.name} is missing input columns {missing}")
        rows = batch.to_pylist()
        healthy = [r for r in rows if not r.get("error_stage")]
        # Wall-clock (epoch) start and end of the batch: comparable across worker processes
        # on one node, so the driver can place every stage's work on one time line.
        started = time.time()
        processed = iter(self.process_pages(healthy)) if healthy else iter(())
        ended = time.time()
        per_page = (ended - started) / max(len(healthy), 1)
        out = []
        for row in rows:
            if row.get("error_stage"):
                out.append(row)
                continue
            done = next(processed)
            done["timings"] = list(done.get("timings") or []) + [
                {"stage": self.name, "seconds": per_page, "started": started, "ended": ended}
            ]
            out.append(done)
        return page_rows_to_table(out)

    def _guarded(self, fn, row: dict[str, Any], *args: Any) -> dict[str, Any]:
        """Run `fn` on a row: a PageFailure, or any unexpected error this page alone
        causes, becomes an error-marked row; running out of memory still propagates."""
        try:
            return fn(row, *args)
        except PageFailure as failure:
            return mark_failed(row, self.name, failure.error_type, failure.message)
        except MemoryError:
            raise
        except Exception as exc:  # a bug met on one page must not sink the run: quarantine it
            log.warning("stage %s failed on %s page %s: %s", self.name, row.get("document_id"),
                        row.get("page_index"), type(exc).__name__)
            return mark_failed(row, self.name, "internal_error", type(exc).__name__)


def mark_failed(row: dict[str, Any], stage: str, error_type: str, message: str) -> dict[str, Any]:
    """Mark a page row as failed at `stage`; its image is dropped to free memory."""
    row = dict(row)
    row.update(error_stage=stage, error_type=error_type, error_message=message, image=None)
    return row
