"""The local Ray that `medrec run` starts: task workers survive the pauses between render tasks."""

from __future__ import annotations

import os
import time

import ray

from pipeline.config import load_config
from pipeline.run import init_ray


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
