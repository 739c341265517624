"""Node-wide slots: holders beyond the slot count wait their turn; a killed holder frees its slot."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.node_slots import node_slot


def _enter_in_thread(folder: Path, slots: int) -> tuple[threading.Thread, threading.Event]:
    entered = threading.Event()

    def take() -> None:
        with node_slot("build", slots, folder):
            entered.set()

    thread = threading.Thread(target=take)
    thread.start()
    return thread, entered


def test_a_second_holder_waits_until_the_only_slot_is_released(tmp_path: Path) -> None:
    with node_slot("build", 1, tmp_path):
        thread, entered = _enter_in_thread(tmp_path, 1)
        assert not entered.wait(0.3)
    assert entered.wait(5)
    thread.join()


def test_holders_up_to_the_slot_count_run_at_once(tmp_path: Path) -> None:
    with node_slot("build", 2, tmp_path):
        thread, entered = _enter_in_thread(tmp_path, 2)
        assert entered.wait(5)
    thread.join()


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    ready = tmp_path / "holding"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib\n"
        "from pipeline.node_slots import node_slot\n"
        f"with node_slot('build', 1, pathlib.Path({str(tmp_path)!r})):\n"
        f"    pathlib.Path({str(ready)!r}).touch()\n"
        "    time.sleep(60)\n")])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and holder.poll() is None, "the holder never took its slot"
            time.sleep(0.05)
        holder.kill()
        holder.wait()
        started = time.monotonic()
        with node_slot("build", 1, tmp_path):
            assert time.monotonic() - started < 5
    finally:
        holder.kill()


def test_no_slot_is_refused() -> None:
    with pytest.raises(ValueError, match="slots"):
        with node_slot("build", 0):
            pass
