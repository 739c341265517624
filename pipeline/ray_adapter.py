"""Turns a stage into a Ray Data `map_batches` step with its declared resources.

Stages never import Ray. A stage with `concurrency` set holds a model or an index, so it
runs as an actor pool (setup once per actor); otherwise it runs as stateless tasks.
"""

from __future__ import annotations

import os
from typing import Callable

import pyarrow as pa
import ray.data

from pipeline.stages.base import Stage


class _StageActor:
    """The callable class Ray instantiates once per actor: builds the stage and sets it up."""

    def __init__(self, factory: Callable[[], Stage]):
        self.stage = factory()
        if self.stage.resources.nice:
            os.nice(self.stage.resources.nice)  # before setup: loading models yields to the bottleneck too
        self.stage.setup()
        self.stage._ready = True

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.stage.process_batch(batch)


def _run_stage_task(batch: pa.Table, factory: Callable[[], Stage]) -> pa.Table:
    return factory().process_batch(batch)


def apply_stage(dataset: ray.data.Dataset, factory: Callable[[], Stage]) -> ray.data.Dataset:
    """Append one stage to the dataset's plan, sized by the stage's `resources`."""
    resources = factory().resources
    common = dict(
        batch_format="pyarrow",
        batch_size=resources.batch_size,
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus or None,
        memory=resources.memory_mb * 1024 * 1024 if resources.memory_mb else None,
        zero_copy_batch=True,
    )
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
