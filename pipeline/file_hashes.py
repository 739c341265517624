"""Content hashes remembered by the files' stat, so a re-run does not read unchanged files again.

A run plans from content hashes: every input file's sha256, the terminology release files'
and the OCR model files'. Without memory each run reads all of them again: the whole archive
for a re-run that changes nothing in it. A hash is remembered with the stamp of the files it
was computed from (size, mtime, ctime, inode) and trusted while that stamp is unchanged; ctime
and the inode are in it because a file rewritten in place and its mtime set back (`cp -p`,
`rsync -t`) still shows a new ctime, and a file replaced by rename a new inode.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.manifest import file_sha256
from pipeline.store import write_parquet_atomic

HASHES_SCHEMA = pa.schema([pa.field("key", pa.string()), pa.field("stamp", pa.string()), pa.field("value", pa.string())])
# A file changed this recently may change again within the clock's granularity (a few ms on
# Linux, 2 s on FAT) with the same stamp: its hash is used but not remembered (git's "racy" rule).
RACY_SECONDS = 2.0


def _stamp(files: list[Path]) -> tuple[str, int]:
    """The files' stamp and the newest of their mtimes and ctimes (ns)."""
    parts, newest = [], 0
    for path in files:
        info = os.stat(path)
        parts.append(f"{path}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}:{info.st_ino}")
        newest = max(newest, info.st_mtime_ns, info.st_ctime_ns)
    return "|".join(parts), newest


class FileHashes:
    """Values computed from files' content (hashes, page counts), remembered in one Parquet file.

    Saving keeps the values used since loading: what a run did not look up (a file removed,
    an index no longer used) is forgotten."""

    def __init__(self, path: Path, entries: dict[str, tuple[str, str]]):
        self.path = path
        self._remembered = entries  # key -> (stamp, value)
        self._used: dict[str, tuple[str, str]] = {}

    @classmethod
    def load(cls, path: Path) -> "FileHashes":
        """The values remembered at `path`; none when it is absent."""
        if not path.is_file():
            return cls(path, {})
        table = pq.read_table(path, schema=HASHES_SCHEMA).to_pydict()
        return cls(path, {key: (stamp, value) for key, stamp, value in
                          zip(table["key"], table["stamp"], table["value"])})

    def remember(self, key: str, files: list[Path], compute: Callable[[], str]) -> str:
        """The value under `key`, computed from `files` unless they are unchanged since it was."""
        stamp, newest = _stamp(files)
        held = self._used.get(key) or self._remembered.get(key)
        if held is not None and held[0] == stamp:
            self._used[key] = held
            return held[1]
        value = compute()
        if newest < time.time_ns() - RACY_SECONDS * 1e9:
            self._used[key] = (stamp, value)
        return value

    def sha256(self, path: Path) -> str:
        """The file's sha256 (hex)."""
        return self.remember(f"sha256:{path}", [path], lambda: file_sha256(path))

    def save(self) -> None:
        """Write the values used since loading (renamed into place)."""
        keys = sorted(self._used)
        write_parquet_atomic(pa.Table.from_pydict({
            "key": keys, "stamp": [self._used[k][0] for k in keys], "value": [self._used[k][1] for k in keys],
        }, schema=HASHES_SCHEMA), self.path)
