"""`medrec manifest`: a folder tree of record files -> a Parquet manifest, one row per page.

A file that cannot be opened still gets a row (page 0), so the render stage quarantines it
with a reason and the run accounts for every input.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schemas import MANIFEST_SCHEMA

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
    """Pages in a file; 1 where the file cannot be opened (render will quarantine it)."""
    try:
        if media_type in ("application/pdf", "image/tiff"):
            import pymupdf  # the renderer's own count, so every page it can render is listed

            with pymupdf.open(path) as document:
                return max(document.page_count, 1)
    except Exception as exc:  # an unreadable file is still one row, quarantined at render
        # File names in archives often hold patient names: log the document id only.
        log.warning("cannot count pages of %s: %s", document_id, type(exc).__name__)
    return 1


def build_manifest(input_dir: Path, facility_id: str | None = None) -> pa.Table:
    """One row per page of every file under `input_dir`.

    The facility is the first folder level below `input_dir` unless `facility_id` is given.
    """
    input_dir = input_dir.resolve()
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    rows = []
    for path in sorted(p for p in input_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = path.relative_to(input_dir)
        facility = facility_id or (relative.parts[0] if len(relative.parts) > 1 else "default")
        media_type = MEDIA_TYPES.get(path.suffix.lower(), UNSUPPORTED_MEDIA_TYPE)
        document_id = document_id_for(str(relative))
        try:
            pages = count_pages(path, media_type, document_id) if path.stat().st_size else 1
            sha = file_sha256(path)
        except OSError as exc:  # unreadable now: one row, which render quarantines
            log.warning("cannot read %s: %s", document_id, type(exc).__name__)
            pages, sha = 1, ""
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
