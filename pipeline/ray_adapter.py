"""Turns a stage into a Ray Data `map_batches` step with its declared resources.

Stages never import Ray. A stage with `concurrency` set holds a model or an index, so it
runs as an actor pool (setup once per actor); otherwise it runs as stateless tasks.

Every call goes through `run_isolated`, the block level of fault isolation (the page level
is `Stage.isolated_pages`): a block that still raises quarantines its pages instead of
erroring the block (Ray Data's `max_errored_blocks` would end the job at the first one, or,
raised, drop the block's pages unrecorded), and pages that kill their worker are found
through the attempts ledger and quarantined, while Ray's own retries restart the worker.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any, Callable, Mapping

import pyarrow as pa
import ray
import ray.data

from pipeline.attempts import AttemptLedger
from pipeline.placement import SlotAssigner, enter_slot, open_cards, wait_for_cards
from pipeline.schemas import page_rows_to_table
from pipeline.stages.base import BLOCK_FAILED, WORKER_DIED, Stage, mark_failed

log = logging.getLogger(__name__)

# Exit status of a worker the adapter ends on a fatal stage error: Ray restarts it.
_FATAL_EXIT = 70


class LedgerClient:
    """The run's attempts ledger as the workers see it: a Ray actor every worker can reach."""

    def __init__(self, handle: Any):
        self.handle = handle

    @classmethod
    def create(cls, max_alone_deaths: int) -> "LedgerClient":
        # Zero CPUs: it must start beside pools that hold every CPU. Restarted if lost (it
        # then forgets deaths, which costs retries, never pages).
        actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(AttemptLedger)
        return cls(actor.remote(max_alone_deaths))

    def plan(self, keys: list[str]) -> tuple[list[int], list[list[int]]]:
        return ray.get(self.handle.plan.remote(keys))

    def start(self, keys: list[str]) -> None:
        ray.get(self.handle.start.remote(keys))

    def finish(self, keys: list[str]) -> None:
        # Not awaited: the worker's next call to the ledger is queued behind it (Ray keeps one
        # caller's actor calls in order); lost to a death right after, it costs one split, no page.
        self.handle.finish.remote(keys)

    def deaths(self, key: str) -> int:
        return ray.get(self.handle.deaths.remote(key))


def page_key(stage: str, row: dict[str, Any]) -> str:
    """The ledger key of a page at a stage: ids only, no source path (PHI)."""
    return f"{stage}|{row['facility_id']}|{row['document_id']}|{row['page_index']}"


def run_isolated(stage: Stage, batch: pa.Table, ledger: AttemptLedger | LedgerClient) -> pa.Table:
    """`stage.process_batch` over a block, in the chunks the ledger plans; no page is lost.

    A chunk that raises (our bug outside the page loop) has its healthy pages quarantined as
    `block_failed`. A fatal error (the worker is broken) ends this process so Ray restarts it
    and retries the block; the chunk's pages stay in flight in the ledger, which counts the
    death and isolates the page that causes it.
    """
    rows = batch.select([c for c in ("facility_id", "document_id", "page_index") if c in batch.column_names]).to_pylist()
    if not rows or "page_index" not in rows[0]:
        return stage.process_batch(batch)  # no lineage to key on: the stage's column check raises
    keys = [page_key(stage.name, row) for row in rows]
    killers, chunks = ledger.plan(keys)  # also starts the first chunk
    if len(chunks) == 1 and not killers:
        return _run_chunk(stage, batch, keys, ledger, started=True)
    out: dict[int, dict[str, Any]] = {}
    if killers:
        dead = batch.take(killers).to_pylist()
        for position, row in zip(killers, dead):
            log.error("stage %s: %s page %s ended its worker %d times; quarantined", stage.name,
                      row["document_id"], row["page_index"], ledger.deaths(keys[position]))
            out[position] = row if row.get("error_stage") else mark_failed(
                row, stage.name, WORKER_DIED, f"the page ended its {stage.name} worker process every attempt")
    for number, chunk in enumerate(chunks):
        done = _run_chunk(stage, batch.take(chunk), [keys[i] for i in chunk], ledger, started=number == 0)
        out.update(zip(chunk, done.to_pylist()))
    return page_rows_to_table([out[i] for i in range(len(keys))])


def _run_chunk(stage: Stage, chunk: pa.Table, keys: list[str], ledger: AttemptLedger | LedgerClient,
               started: bool) -> pa.Table:
    if not started:
        ledger.start(keys)
    try:
        done = stage.process_batch(chunk)
    except stage.fatal_errors as error:
        log.error("stage %s: %s; ending the worker so Ray restarts it", stage.name, type(error).__name__)
        os._exit(_FATAL_EXIT)  # in-flight pages stay in the ledger: the retry counts this death
    except Exception as error:  # a block that fails as a whole: its pages are quarantined, none dropped
        log.error("stage %s: block of %d pages failed (%s); quarantining them", stage.name, chunk.num_rows,
                  type(error).__name__)
        done = page_rows_to_table([
            row if row.get("error_stage") else mark_failed(row, stage.name, BLOCK_FAILED, type(error).__name__)
            for row in chunk.to_pylist()])
    ledger.finish(keys)
    return done


class _StageActor:
    """The callable class Ray instantiates once per actor: builds its stages and sets them up.

    Several stages in one actor (`apply_stages`) run one after another on each batch, each
    through `run_isolated` as if it were its own pool. `defer_setup`: the stages load their
    models on the first batch, not when the pool starts (light stages after OCR then leave the
    cores to the OCR actors' start-up); a setup that raises still fails the call, never a page.
    The pool's niceness applies after setup: a niced setup beside busy OCR actors got so little
    CPU that the fused light pool gave its first page after OCR's last (issue 15).
    `before` runs on each input batch before the first stage, `then` on the last stage's
    output, both in this actor (see `Then`).
    """

    def __init__(self, factory: Callable[[], Stage] | tuple[Callable[[], Stage], ...], ledger: LedgerClient,
                 defer_setup: bool = False, then: Then | None = None, before: Then | None = None):
        enter_slot()  # a member placed on the GPU plan's cards learns which ones
        self.stages = [make() for make in (factory if isinstance(factory, tuple) else (factory,))]
        self.ledger, self.then, self.before = ledger, then, before
        self.nice = min(stage.resources.nice for stage in self.stages)
        wait_for_cards()  # an OCR actor on an LLM's card loads after the engine took its memory
        if not defer_setup:
            self._setup()
        open_cards()

    def _setup(self) -> None:
        if all(stage._ready for stage in self.stages):
            return
        for stage in self.stages:
            if not stage._ready:
                stage.setup()
                stage._ready = True
        # What setup loaded (lexicons, term maps: millions of objects) lives as long as the actor:
        # frozen, no later collection walks it again (refcounting still frees what is dropped).
        gc.freeze()
        if self.nice:
            os.nice(self.nice)  # once set up, the pool yields the CPU to the bottleneck (OCR)
            self.nice = 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        self._setup()  # outside `run_isolated`: a stage that cannot load fails the call, not its pages
        if self.before:
            batch = self.before(batch)
        for stage in self.stages:
            batch = run_isolated(stage, batch, self.ledger)
        return self.then(batch) if self.then else batch


# A batch function run in a stage's own process: on its output, the store's commit; on its
# input, the read of stored OCR output. As a Ray task of its own the commit waited for a free
# CPU token, which the OCR and light pools hold until OCR ends on a small node: no page was
# committed before then (issue 15); the read started a task worker beside the pool (issue 12).
Then = Callable[[pa.Table], pa.Table]


class StageBefore:
    """A task stage run as another stage's `before`, in that stage's process on each input batch
    (render inside the OCR actor: `resources.render_in_ocr_pool`), isolated as in its own task."""

    def __init__(self, factory: Callable[[], Stage], ledger: LedgerClient):
        self.factory, self.ledger = factory, ledger

    def __call__(self, batch: pa.Table) -> pa.Table:
        return run_isolated(self.factory(), batch, self.ledger)


def _run_stage_task(batch: pa.Table, factory: Callable[[], Stage], ledger: LedgerClient,
                    then: Then | None = None, before: Then | None = None) -> pa.Table:
    batch = run_isolated(factory(), before(batch) if before else batch, ledger)
    return then(batch) if then else batch


def apply_stage(dataset: ray.data.Dataset, factory: Callable[[], Stage],
                placed: Mapping[str, SlotAssigner] | None = None, ledger: LedgerClient | None = None,
                then: Then | None = None, before: Then | None = None,
                blocks_as_batches: bool = False) -> ray.data.Dataset:
    """Append one stage to the dataset's plan, sized by the stage's `resources`; a pool in
    `placed` (by stage name) puts each member on the card the GPU plan gives it.

    `ledger`: the run's attempts ledger (one per graph); None starts one for this stage.
    `then` / `before`: run on each output / input batch by the same worker (see `Then`).
    `blocks_as_batches`: each incoming block is one batch, never bundled up to the stage's
    batch size: the read's block plan (a one-page first block) reaches the stage as it is.
    """
    stage = factory()
    resources = stage.resources
    ledger = ledger or LedgerClient.create(max_alone_deaths=2)
    common = dict(
        batch_format="pyarrow",
        batch_size=None if blocks_as_batches else resources.batch_size,
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus or None,
        memory=resources.memory_mb * 1024 * 1024 if resources.memory_mb else None,
        zero_copy_batch=True,
    )
    assigner = (placed or {}).get(stage.name)
    if assigner is not None:
        if resources.concurrency != len(assigner.pool.slots):
            raise ValueError(f"stage {stage.name}: pool of {resources.concurrency} actors, "
                             f"but the GPU plan places {len(assigner.pool.slots)}")
        # Each member's own bundle, GPU share and environment (pipeline.placement says why).
        common.update(num_cpus=assigner.pool.num_cpus, num_gpus=assigner.pool.num_gpus or None,
                      ray_remote_args_fn=assigner)
    if resources.concurrency:
        return dataset.map_batches(
            _StageActor,
            fn_constructor_kwargs={"factory": factory, "ledger": ledger, "then": then, "before": before},
            compute=ray.data.ActorPoolStrategy(size=resources.concurrency),
            # A dead actor (a crashed engine exits its process) is restarted and the batch it
            # held retried: Ray Data's defaults for actor pools, stated so they cannot drift.
            # The ledger stops the retries of a page that kills its actor every time.
            max_restarts=-1,
            max_task_retries=-1,
            **common,
        )
    return dataset.map_batches(_run_stage_task,
                               fn_kwargs={"factory": factory, "ledger": ledger, "then": then, "before": before},
                               **common)


def apply_stages(dataset: ray.data.Dataset, factories: list[Callable[[], Stage]], ledger: LedgerClient | None = None,
                 defer_setup: bool = False, then: Then | None = None,
                 before: Then | None = None, actors: int | None = None) -> ray.data.Dataset:
    """Append CPU pool stages as one actor pool whose actors run them in order on each batch.

    One process instead of one per stage: on a few cores every pool costs a Python start,
    the package imports and a share of the CPU while the OCR actors load. The pool asks for
    the stages' CPUs and memory together, as many actors as the largest pool, the batch size
    of the first stage; each stage keeps its own ledger keys, timings and page isolation.
    `then` / `before`: run on each output / input batch by the same actor (see `Then`).
    `actors`: the pool starts this many actors where resources allow, and runs with one at least.
    """
    stages = [factory() for factory in factories]
    not_fusable = [s.name for s in stages if not s.resources.concurrency or s.resources.num_gpus]
    if not_fusable:
        raise ValueError(f"stages {not_fusable} are not CPU actor pools: they cannot share one")
    ledger = ledger or LedgerClient.create(max_alone_deaths=2)
    memory = sum(s.resources.memory_mb or 0 for s in stages)
    size = max(s.resources.concurrency for s in stages)
    # A wider pool than configured is a ceiling, not a demand: actors that do not fit (CPU or
    # memory) stay pending while the others run.
    pool = (ray.data.ActorPoolStrategy(size=size) if not actors or actors <= size else
            ray.data.ActorPoolStrategy(min_size=1, initial_size=actors, max_size=actors))
    return dataset.map_batches(
        _StageActor,
        fn_constructor_kwargs={"factory": tuple(factories), "ledger": ledger, "defer_setup": defer_setup,
                               "then": then, "before": before},
        compute=pool,
        max_restarts=-1,
        max_task_retries=-1,
        batch_format="pyarrow",
        batch_size=stages[0].resources.batch_size,
        num_cpus=round(sum(s.resources.num_cpus for s in stages), 4),
        memory=memory * 1024 * 1024 if memory else None,
        zero_copy_batch=True,
    )
