"""Turns a stage into a Ray Data `map_batches` step with its declared resources.

Stages never import Ray. A stage with `concurrency` set holds a model or an index, so it
runs as an actor pool (setup once per actor); otherwise it runs as stateless tasks.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import pyarrow as pa
import ray.data

from pipeline.placement import SlotAssigner, enter_slot, open_cards, wait_for_cards
from pipeline.stages.base import Stage


class _StageActor:
    """The callable class Ray instantiates once per actor: builds the stage and sets it up."""

    def __init__(self, factory: Callable[[], Stage]):
        enter_slot()  # a member placed on the GPU plan's cards learns which ones
        self.stage = factory()
        if self.stage.resources.nice:
            os.nice(self.stage.resources.nice)  # before setup: loading models yields to the bottleneck too
        wait_for_cards()  # an OCR actor on an LLM's card loads after the engine took its memory
        self.stage.setup()
        self.stage._ready = True
        open_cards()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.stage.process_batch(batch)


def _run_stage_task(batch: pa.Table, factory: Callable[[], Stage]) -> pa.Table:
    return factory().process_batch(batch)


def apply_stage(dataset: ray.data.Dataset, factory: Callable[[], Stage],
                placed: Mapping[str, SlotAssigner] | None = None) -> ray.data.Dataset:
    """Append one stage to the dataset's plan, sized by the stage's `resources`; a pool in
    `placed` (by stage name) puts each member on the card the GPU plan gives it."""
    stage = factory()
    resources = stage.resources
    common = dict(
        batch_format="pyarrow",
        batch_size=resources.batch_size,
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
            fn_constructor_kwargs={"factory": factory},
            compute=ray.data.ActorPoolStrategy(size=resources.concurrency),
            # A dead actor (a crashed engine exits its process) is restarted and the batch it
            # held retried: Ray Data's defaults for actor pools, stated so they cannot drift.
            max_restarts=-1,
            max_task_retries=-1,
            **common,
        )
    return dataset.map_batches(_run_stage_task, fn_kwargs={"factory": factory}, **common)
