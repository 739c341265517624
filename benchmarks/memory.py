"""Peak resident memory of the driver and of its worker processes, sampled in a thread.

Ray's local cluster runs as descendants of the driver (gcs, raylet, then the workers the
raylet forks), so the workers are the driver's descendants whose process name starts with
`ray::` (Ray renames a worker after the task or actor it runs). Other Ray clusters on the
same machine are not descendants and are never counted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import psutil

MIB = 1024 * 1024


def is_ray_worker(process: psutil.Process) -> bool:
    return process.name().startswith("ray::")


@dataclass
class MemoryPeaks:
    """Peaks in MiB over one sampling window. Worker RSS counts the object-store pages a
    worker has mapped, so the sum over workers can exceed the memory really in use."""

    driver_rss_mib: float = 0.0
    workers_rss_mib: float = 0.0  # the largest sum over the workers alive at one sample
    worker_max_rss_mib: float = 0.0  # the largest single worker
    samples: int = 0


class MemorySampler:
    """`with MemorySampler() as sampler: ...` then `sampler.peaks`; samples every `interval_s`."""

    def __init__(self, interval_s: float = 0.5, is_worker: Callable[[psutil.Process], bool] = is_ray_worker):
        self.interval_s = interval_s
        self.is_worker = is_worker
        self.peaks = MemoryPeaks()
        self._driver = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> "MemorySampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        driver = self._driver.memory_info().rss / MIB
        workers = []
        for child in self._driver.children(recursive=True):
            try:  # a worker may exit between listing and reading
                if self.is_worker(child):
                    workers.append(child.memory_info().rss / MIB)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        peaks = self.peaks
        peaks.driver_rss_mib = max(peaks.driver_rss_mib, round(driver, 1))
        peaks.workers_rss_mib = max(peaks.workers_rss_mib, round(sum(workers), 1))
        peaks.worker_max_rss_mib = max(peaks.worker_max_rss_mib, round(max(workers, default=0.0), 1))
        peaks.samples += 1
