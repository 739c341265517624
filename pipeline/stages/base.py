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


# Error types of pages the pipeline failed on (not inputs it rejected with a reason): their
# share is what `faults.max_page_error_rate` bounds.
INTERNAL_ERROR = "internal_error"  # an exception a stage did not expect, met on this page alone
BLOCK_FAILED = "block_failed"  # a whole block failed outside the page loop; every page of it quarantined
WORKER_DIED = "worker_died"  # the page killed its worker process (abort, segfault, OOM kill) every attempt
PIPELINE_FAILURES = (INTERNAL_ERROR, BLOCK_FAILED, WORKER_DIED)


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
    # Errors that mean the worker itself is broken, not the page: they leave the stage, and
    # the adapter ends the worker so Ray restarts it (the attempts ledger bounds the retries).
    fatal_errors: ClassVar[tuple[type[BaseException], ...]] = (MemoryError,)
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
        processed = iter(self.isolated_pages(healthy)) if healthy else iter(())
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

    def isolated_pages(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`process_pages` over the batch; if the batch call raises, page by page, so only a
        page that fails alone is quarantined (with the exception's type, never its text,
        which may quote the page). The one place page-level isolation lives: batch paths of
        every stage (OCR's single predict call included) are covered without a try of their own."""
        try:
            return self._checked(self.process_pages([dict(row) for row in rows]), len(rows))
        except self.fatal_errors:
            raise
        except Exception as batch_error:
            if len(rows) == 1:
                return [self._failed(rows[0], batch_error)]
            log.warning("stage %s: batch of %d pages failed (%s); retrying page by page", self.name, len(rows),
                        type(batch_error).__name__)
        out = []
        for row in rows:
            try:
                out += self._checked(self.process_pages([dict(row)]), 1)
            except self.fatal_errors:
                raise
            except Exception as page_error:
                out.append(self._failed(row, page_error))
        return out

    def _checked(self, done: list[dict[str, Any]], expected: int) -> list[dict[str, Any]]:
        if len(done) != expected:  # our bug, not the page's: isolation retries page by page
            raise RuntimeError(f"stage {self.name} returned {len(done)} rows for {expected}")
        return done

    def _failed(self, row: dict[str, Any], error: Exception) -> dict[str, Any]:
        if isinstance(error, PageFailure):
            return mark_failed(row, self.name, error.error_type, error.message)
        log.warning("stage %s failed on %s page %s: %s", self.name, row.get("document_id"), row.get("page_index"),
                    type(error).__name__)
        return mark_failed(row, self.name, INTERNAL_ERROR, type(error).__name__)

    def _guarded(self, fn, row: dict[str, Any], *args: Any) -> dict[str, Any]:
        """Run `fn` on one row of a batch a stage walks itself, so the row's neighbours in the
        batch keep their work: a PageFailure or any error this page alone causes becomes an
        error-marked row; a fatal error (the worker is broken) still propagates."""
        try:
            return fn(row, *args)
        except self.fatal_errors:
            raise
        except Exception as exc:  # a bug met on one page must not sink the run: quarantine it
            return self._failed(row, exc)


def mark_failed(row: dict[str, Any], stage: str, error_type: str, message: str) -> dict[str, Any]:
    """Mark a page row as failed at `stage`; its image is dropped to free memory."""
    row = dict(row)
    row.update(error_stage=stage, error_type=error_type, error_message=message, image=None)
    return row
