"""The memory sampler sees a child process's resident memory and the driver's own."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.memory import MemorySampler

ALLOCATE_MIB = 120


def test_sampler_records_peak_of_child_processes():
    # Bytes written (not a lazily mapped zero buffer), so the pages are resident.
    child = subprocess.Popen([sys.executable, "-c",
                              f"import sys, time; data = b'x' * ({ALLOCATE_MIB} * 1024 * 1024); "
                              "print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with MemorySampler(interval_s=0.05, is_worker=lambda process: process.pid == child.pid) as sampler:
            time.sleep(0.3)
    finally:
        child.kill()
        child.wait()
    peaks = sampler.peaks
    assert peaks.samples >= 3
    assert peaks.workers_rss_mib >= ALLOCATE_MIB
    assert peaks.worker_max_rss_mib == peaks.workers_rss_mib  # one worker
    assert peaks.driver_rss_mib > 10  # this Python process


def test_default_sampler_counts_only_ray_workers():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with MemorySampler(interval_s=0.05) as sampler:
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
    assert sampler.peaks.workers_rss_mib == 0.0  # a plain child is not named ray::...
