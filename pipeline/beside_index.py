"""Values derived from a terminology index, kept as pickles in the index folder.

Deriving the extract stage's lexicons or the code stage's term maps from an index takes a few
CPU seconds; every actor of every run would pay them. Each is built once (with the index, or
by `prepare_models` on the driver after a code change) and loaded by the actors. The file's
name holds the index version and a hash of the code that derives the value, so a new index or
new code never loads a stale one.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from terminology_index.build import RELEASES_FILE

PACKAGE = Path(__file__).parent


@dataclass(frozen=True)
class KeptBesideIndex:
    """One kind of derived value: its file prefix, the package files whose code derives it,
    and how to build it from the index folder."""

    prefix: str  # e.g. "lexicons-"
    code_files: tuple[str, ...]  # relative to the package
    build: Callable[[Path], Any]

    def path(self, index_path: Path) -> Path:
        """Where the value of the index at `index_path` is kept."""
        version = json.loads((index_path / RELEASES_FILE).read_text())["version"]
        digest = hashlib.sha256(version.encode())
        for name in self.code_files:
            digest.update((PACKAGE / name).read_bytes())
        return index_path / f"{self.prefix}{digest.hexdigest()[:16]}.pickle"

    def ensure(self, index_path: Path) -> Path:
        """Build and keep the value unless it is kept already; older ones are removed."""
        path = self.path(index_path)
        if path.is_file():
            return path
        value = self.build(index_path)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        tmp.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)  # a reader sees the whole file or none
        for old in index_path.glob(f"{self.prefix}*.pickle"):
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def load_if_kept(self, index_path: Path) -> Any | None:
        """The kept value, or None when it is not there (yet). Pickle: the file is medrec's
        own, written beside the index it was built from."""
        path = self.path(index_path)
        return load_paused(path) if path.is_file() else None


def load_paused(path: Path) -> Any:
    """Unpickle with the cyclic collector paused. A kept value is millions of small objects with
    no cycles among them; left on, the collector ran over everything loaded so far again and
    again, three quarters of the load's CPU time (2.3 of 3 s for the lexicons and term maps)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.loads(path.read_bytes())
    finally:
        if enabled:
            gc.enable()
