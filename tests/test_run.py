"""The local Ray that `medrec run` starts: task workers survive the pauses between render tasks, and
the steps after the graph run their tasks side by side."""

from __future__ import annotations

import os
import sys
import time

import pyarrow as pa
import ray

from pipeline.config import TaskConfig, load_config
from pipeline.run import assembly_step, init_ray


@ray.remote(num_cpus=0.5)
class _Idle:
    def ready(self) -> bool:
        return True


@ray.remote(num_cpus=0.1)
def _worker_pid() -> int:
    return os.getpid()


def test_a_task_worker_idle_beside_more_actors_than_cpus_is_reused_not_restarted() -> None:
    init_ray(load_config(["resources.num_cpus=2"]))
    try:
        actors = [_Idle.remote() for _ in range(3)]  # more worker processes than CPUs, as the pools make
        ray.get([actor.ready.remote() for actor in actors])
        first = ray.get(_worker_pid.remote())
        time.sleep(3)  # Ray's default ends a worker idle for 1 s here
        assert ray.get(_worker_pid.remote()) == first
    finally:
        ray.shutdown()


@ray.remote(num_cpus=0.1)
def _offline_variables() -> dict[str, str | None]:
    from pipeline.offline import OFFLINE_ENV

    return {name: os.environ.get(name) for name in OFFLINE_ENV}


def test_the_local_rays_workers_run_with_the_offline_environment(monkeypatch) -> None:
    from pipeline.offline import OFFLINE_ENV

    for name in OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)  # init_ray sets them before Ray starts
    init_ray(load_config(["resources.num_cpus=2"]))
    try:
        assert ray.get(_offline_variables.remote()) == OFFLINE_ENV
    finally:
        ray.shutdown()


def _hold_a_second(batch: pa.Table) -> pa.Table:
    started = time.time()
    time.sleep(1.0)
    return pa.table({"started": [started] * batch.num_rows, "ended": [time.time()] * batch.num_rows})


def test_an_assembly_step_runs_as_many_tasks_at_once_as_the_cluster_has_cpus() -> None:
    init_ray(load_config(["resources.num_cpus=2"]))
    try:
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
        rows: list[dict] = []
        assembly_step([{"shard": 0}, {"shard": 1}], _hold_a_second, TaskConfig(assembly_cpus=1.0),
                      batch_size=1, fn_kwargs={}, on_rows=rows.extend)
    finally:
        ray.shutdown()
    first, second = sorted(rows, key=lambda row: row["started"])
    # As a Ray Data step, the per-operator reservation started the second one-CPU task after the first ended.
    assert second["started"] < first["ended"]


def _items_with_setting(batch: pa.Table, setting: str) -> pa.Table:
    return pa.table({"shard": batch.column("shard"), "setting": [setting] * batch.num_rows})


def test_an_assembly_step_hands_every_item_to_its_function_once_in_batches() -> None:
    init_ray(load_config(["resources.num_cpus=2"]))
    try:
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        batches: list[list[dict]] = []
        assembly_step([{"shard": s} for s in range(5)], _items_with_setting, TaskConfig(assembly_cpus=1.0),
                      batch_size=2, fn_kwargs={"setting": "x"}, on_rows=batches.append)
    finally:
        ray.shutdown()
    assert sorted(len(b) for b in batches) == [1, 2, 2]
    assert sorted(row["shard"] for b in batches for row in b) == [0, 1, 2, 3, 4]
    assert {row["setting"] for b in batches for row in b} == {"x"}
