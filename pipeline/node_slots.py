"""Node-wide slots for heavy start-up work: the processes of one machine take turns through file locks.

On a node of few cores, OCR actors that build their engines side by side (beside render and
the light pool's start) each take as long as all the builds together; taking turns, the
first actor OCRs after one build (issue 15). A lock dies with its process, so a killed
holder never blocks the others.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _take(path: Path, block: bool) -> IO[str] | None:
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextmanager
def node_slot(name: str, slots: int, folder: Path | None = None) -> Iterator[None]:
    """Run the block in one of `slots` slots named `name` on this machine; wait while all are held."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    # Per user: another user's lock file in the shared temp folder could not be opened.
    paths = [Path(folder or tempfile.gettempdir()) / f"medrec-{os.getuid()}-{name}-{index}.lock"
             for index in range(slots)]
    handle = next((h for h in (_take(path, block=False) for path in paths) if h is not None), None)
    if handle is None:
        handle = _take(paths[os.getpid() % slots], block=True)
    try:
        yield
    finally:
        handle.close()  # closing the file releases its lock
