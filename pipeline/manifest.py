"""`medrec manifest`: a folder tree of record files -> a Parquet manifest, one row per page.

A file that cannot be opened still gets a row (page 0), so the render stage quarantines it
with a reason and the run accounts for every input.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schemas import MANIFEST_SCHEMA

if TYPE_CHECKING:  # file_hashes imports this module
    from pipeline.file_hashes import FileHashes

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
UNSUPPORTED_MEDIA_TYPE = "application/octet-stream"


def document_id_for(relative_path: str) -> str:
    """A stable document id from the file's path under the input root (no PHI in ids)."""
    return "doc-" + hashlib.sha1(relative_path.replace("\\", "/").encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def count_pages(path: Path, media_type: str, document_id: str) -> int:
    """Pages in a file, counted by the library that renders them; 1 where the file cannot be
    opened (render quarantines it). A TIFF whose page chain breaks (a file cut short) counts
    the pages before the break plus one row for the rest, which render quarantines."""
    try:
        if media_type == "application/pdf":
            import pymupdf

            with pymupdf.open(path) as document:
                return max(document.page_count, 1)
        if media_type == "image/tiff":
            return _tiff_pages(path)
    except Exception as exc:  # an unreadable file is still one row, quarantined at render
        # File names in archives often hold patient names: log the document id only.
        log.warning("cannot count pages of %s: %s", document_id, type(exc).__name__)
    return 1


def _tiff_pages(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        page = 0
        while True:
            try:
                image.seek(page)
            except EOFError:
                return max(page, 1)
            except Exception:  # the chain breaks here: one more row stands for the lost rest
                return page + 1
            page += 1


# Manifest rows for what discovery found but cannot read as a file; render quarantines them
# with the reason (ids and these types only: the path stays in source_uri, out of the logs).
DANGLING_LINK = "inode/x-dangling-link"  # a symbolic link to nothing
SYMLINK_LOOP = "inode/x-symlink-loop"  # a link back to a folder above it, or to itself
UNREADABLE_FOLDER = "inode/x-unreadable-folder"  # a folder that cannot be listed
SPECIAL_FILE = "inode/x-special-file"  # a pipe, socket or device: opening a pipe would block the run
DISCOVERY_PROBLEMS = (DANGLING_LINK, SYMLINK_LOOP, UNREADABLE_FOLDER, SPECIAL_FILE)


@dataclass
class Discovery:
    """What a walk of the input tree found: files and problem entries, in sorted order."""

    entries: list[tuple[Path, str | None]] = field(default_factory=list)  # (path, problem media type or None)
    hidden: int = 0  # dot files (OS metadata such as .DS_Store): not records
    duplicates: int = 0  # files or folders reached a second time through a link, listed once


def discover(input_dir: Path) -> Discovery:
    """Every file under `input_dir`, following symbolic links to folders and files.

    A folder reached twice (two links to it) is walked once, a file reached twice is listed
    once; a link back to a folder above it is a loop, listed as a problem, not followed.
    """
    found = Discovery()
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            found.entries.append((folder, UNREADABLE_FOLDER))
            return
        for name in names:
            if name.startswith("."):
                found.hidden += 1
                continue
            path = folder / name
            try:
                info = path.stat()  # follows links
            except OSError as exc:
                if path.is_symlink():
                    found.entries.append((path, SYMLINK_LOOP if exc.errno == errno.ELOOP else DANGLING_LINK))
                else:  # vanished while listed, or a name the OS cannot stat
                    found.entries.append((path, DANGLING_LINK if not os.path.lexists(path) else UNREADABLE_FOLDER))
                continue
            identity = (info.st_dev, info.st_ino)
            if stat.S_ISDIR(info.st_mode):
                if identity in ancestors:
                    found.entries.append((path, SYMLINK_LOOP))
                elif identity in seen:
                    found.duplicates += 1
                else:
                    seen.add(identity)
                    walk(path, ancestors | {identity})
            elif identity in seen:
                found.duplicates += 1
            else:
                seen.add(identity)
                found.entries.append((path, None if stat.S_ISREG(info.st_mode) else SPECIAL_FILE))

    root = os.stat(input_dir)
    seen.add((root.st_dev, root.st_ino))
    walk(input_dir, frozenset({(root.st_dev, root.st_ino)}))
    return found


def build_manifest(input_dir: Path, facility_id: str | None = None, hashes: FileHashes | None = None) -> pa.Table:
    """One row per page of every file under `input_dir`, and one row for every entry that
    cannot be read (dangling link, loop, unreadable folder, pipe), so render quarantines it.

    The facility is the first folder level below `input_dir` unless `facility_id` is given.
    `hashes`: content hashes and page counts remembered from an earlier run (a file unchanged
    since is not read again).
    """
    input_dir = input_dir.resolve()
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    found = discover(input_dir)
    rows = []
    for path, problem in found.entries:
        relative = path.relative_to(input_dir)
        facility = facility_id or (relative.parts[0] if len(relative.parts) > 1 else "default")
        media_type = problem or MEDIA_TYPES.get(path.suffix.lower(), UNSUPPORTED_MEDIA_TYPE)
        document_id = document_id_for(str(relative))
        pages, sha = 1, ""
        if problem is None:
            try:
                if hashes is None:
                    pages = count_pages(path, media_type, document_id) if path.stat().st_size else 1
                    sha = file_sha256(path)
                else:
                    pages = int(hashes.remember(f"pages:{path}", [path], lambda: str(
                        count_pages(path, media_type, document_id) if path.stat().st_size else 1)))
                    sha = hashes.sha256(path)
            except OSError as exc:  # unreadable now: one row, which render quarantines
                log.warning("cannot read %s: %s", document_id, type(exc).__name__)
                pages, sha = 1, ""
        else:
            log.warning("input entry %s: %s", document_id, problem)
        for page_index in range(pages):
            rows.append(
                {
                    "facility_id": facility,
                    "document_id": document_id,
                    "page_index": page_index,
                    "source_uri": str(path),
                    "sha256": sha,
                    "media_type": media_type,
                    "mrn": None,
                    "document_type": None,
                }
            )
    if found.hidden or found.duplicates:
        log.info("manifest: skipped %d hidden files and %d entries reached twice through links",
                 found.hidden, found.duplicates)
    if not rows:
        raise ValueError(f"no files under {input_dir}")
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def write_manifest(input_dir: Path, output: Path, facility_id: str | None = None) -> pa.Table:
    table = build_manifest(input_dir, facility_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, output)
    log.info("manifest: %d pages from %d documents -> %s", table.num_rows,
             len(set(table.column("document_id").to_pylist())), output)
    return table
