"""build_manifest / write_manifest on a folder tree made in the test: one row per page."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pymupdf
import pytest
from PIL import Image

from pipeline.manifest import (DANGLING_LINK, SPECIAL_FILE, SYMLINK_LOOP, build_manifest,
                               document_id_for, write_manifest)
from pipeline.schemas import MANIFEST_SCHEMA


def write_pdf(path: Path, pages: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pymupdf.open() as pdf:
        for n in range(pages):
            pdf.new_page(width=612, height=792).insert_text((72, 72), f"Page {n + 1}")
        pdf.save(path)


def write_tiff(path: Path, frames: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.new("L", (200, 260), 255 - 40 * n) for n in range(frames)]
    images[0].save(path, format="TIFF", save_all=True, append_images=images[1:])


@pytest.fixture
def records(tmp_path: Path) -> Path:
    root = tmp_path / "records"
    write_pdf(root / "fac-a" / "discharge.pdf", pages=3)
    write_tiff(root / "fac-b" / "scans" / "intake.tif", frames=2)
    Image.new("L", (120, 80), 255).save(root / "fac-b" / "letter.png")
    Image.new("RGB", (120, 80), "white").save(root / "loose.JPG")  # not in a facility folder
    (root / "fac-a" / "broken.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4)
    (root / "fac-a" / "empty.png").write_bytes(b"")
    (root / "fac-b" / "notes.docx").write_bytes(b"PK\x03\x04 a word file")
    (root / "fac-a" / ".DS_Store").write_bytes(b"finder metadata")  # hidden: not a record
    return root


def rows_by_file(table, root: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        out.setdefault(str(Path(row["source_uri"]).relative_to(root.resolve())), []).append(row)
    return out


def test_one_row_per_page_of_multi_page_pdf_and_tiff(records: Path) -> None:
    table = build_manifest(records)
    rows = rows_by_file(table, records)

    assert table.schema == MANIFEST_SCHEMA
    assert [r["page_index"] for r in rows["fac-a/discharge.pdf"]] == [0, 1, 2]
    assert [r["page_index"] for r in rows["fac-b/scans/intake.tif"]] == [0, 1]
    assert [r["page_index"] for r in rows["fac-b/letter.png"]] == [0]
    assert table.num_rows == 3 + 2 + 1 + 1 + 3  # pages + one row for each bad file
    assert ".DS_Store" not in " ".join(rows)


def test_rows_carry_facility_media_type_document_id_and_sha256(records: Path) -> None:
    rows = rows_by_file(build_manifest(records), records)

    for relative, file_rows in rows.items():
        path = records / relative
        assert {r["sha256"] for r in file_rows} == {hashlib.sha256(path.read_bytes()).hexdigest()}
        assert {r["document_id"] for r in file_rows} == {document_id_for(relative)}
        assert {r["source_uri"] for r in file_rows} == {str(path.resolve())}
    facility = {relative: rows[relative][0]["facility_id"] for relative in rows}
    assert facility["fac-a/discharge.pdf"] == "fac-a"
    assert facility["fac-b/scans/intake.tif"] == "fac-b"  # first folder level, not the deepest
    assert facility["loose.JPG"] == "default"
    media = {relative: rows[relative][0]["media_type"] for relative in rows}
    assert media == {
        "fac-a/discharge.pdf": "application/pdf", "fac-a/broken.pdf": "application/pdf",
        "fac-a/empty.png": "image/png", "fac-b/scans/intake.tif": "image/tiff", "fac-b/letter.png": "image/png",
        "fac-b/notes.docx": "application/octet-stream", "loose.JPG": "image/jpeg",
    }


def test_bad_files_still_get_one_row(records: Path) -> None:
    rows = rows_by_file(build_manifest(records), records)

    for bad in ("fac-a/broken.pdf", "fac-a/empty.png", "fac-b/notes.docx"):
        assert [r["page_index"] for r in rows[bad]] == [0], bad


def test_document_ids_are_distinct_and_stable(records: Path) -> None:
    first, second = build_manifest(records), build_manifest(records)

    assert first.equals(second)
    ids = {r["document_id"]: r["source_uri"] for r in first.to_pylist()}
    assert len(ids) == len({r["source_uri"] for r in first.to_pylist()})
    assert all(i.startswith("doc-") and "discharge" not in i for i in ids)  # no file names (PHI) in ids


def test_fixed_facility_overrides_the_folder(records: Path) -> None:
    table = build_manifest(records, facility_id="FAC01")

    assert set(table.column("facility_id").to_pylist()) == {"FAC01"}


def test_write_manifest_writes_parquet(records: Path, tmp_path: Path) -> None:
    output = tmp_path / "out" / "manifest.parquet"

    table = write_manifest(records, output)

    assert pq.read_table(output).equals(table)


def test_empty_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "records" / "fac-a").mkdir(parents=True)

    with pytest.raises(ValueError, match="no files"):
        build_manifest(tmp_path / "records")


def test_missing_folder_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_manifest(tmp_path / "nowhere")


def test_links_are_followed_once_and_link_problems_are_rows(tmp_path: Path) -> None:
    root = tmp_path / "records"
    write_pdf(root / "fac-a" / "visit.pdf", pages=2)
    outside = tmp_path / "elsewhere"
    write_pdf(outside / "scan.pdf", pages=3)
    (root / "fac-b").mkdir()
    (root / "fac-b" / "linked").symlink_to(outside)  # a folder reached only through a link
    (root / "fac-b" / "second.pdf").symlink_to(outside / "scan.pdf")  # the same file a second time
    (root / "fac-b" / "gone.pdf").symlink_to(tmp_path / "nothing.pdf")
    (root / "fac-a" / "up").symlink_to(root)  # a loop
    (root / "fac-a" / "me.pdf").symlink_to(root / "fac-a" / "me.pdf")  # a link to itself
    os.mkfifo(root / "fac-a" / "pipe.png")

    rows = rows_by_file(build_manifest(root), root)

    assert [r["page_index"] for r in rows["fac-b/linked/scan.pdf"]] == [0, 1, 2]
    assert "fac-b/second.pdf" not in rows  # listed once, under the path met first (sorted order)
    assert [r["media_type"] for r in rows["fac-b/gone.pdf"]] == [DANGLING_LINK]
    assert [r["media_type"] for r in rows["fac-a/up"]] == [SYMLINK_LOOP]
    assert [r["media_type"] for r in rows["fac-a/me.pdf"]] == [SYMLINK_LOOP]
    assert [r["media_type"] for r in rows["fac-a/pipe.png"]] == [SPECIAL_FILE]
    assert sum(len(v) for v in rows.values()) == 2 + 3 + 4  # pages on disk + one row per problem


def test_a_truncated_multi_page_tiff_lists_its_readable_pages_and_one_row_for_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "records" / "cut.tif"
    write_tiff(path, frames=4)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.6)])

    assert [r["page_index"] for r in build_manifest(tmp_path / "records").to_pylist()] == [0, 1, 2, 3]


def test_an_unreadable_folder_or_file_is_a_row_that_render_quarantines(tmp_path: Path) -> None:
    """A folder the manifest cannot list, or a file it cannot read, is a row. Root reads
    anything, so as root the manifest and render run in a process without the capabilities
    that bypass file permissions."""
    import subprocess
    import sys

    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is not installed to drop the permission bypass")
        prefix = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
    root = tmp_path / "records"
    write_pdf(root / "fac-a" / "visit.pdf", pages=1)
    write_pdf(root / "fac-a" / "locked" / "inside.pdf", pages=2)
    write_pdf(root / "fac-a" / "secret.pdf", pages=2)
    (root / "fac-a" / "locked").chmod(0o000)
    (root / "fac-a" / "secret.pdf").chmod(0o000)
    code = ("import sys, json; from pathlib import Path; from pipeline.manifest import build_manifest; "
            "from pipeline.stages.render import RenderStage; "
            "out = RenderStage().process_batch(build_manifest(Path(sys.argv[1]))).to_pylist(); "
            "print(json.dumps([(r['source_uri'], r['error_type']) for r in out]))")
    try:
        done = subprocess.run([*prefix, sys.executable, "-c", code, str(root)], capture_output=True, text=True)
    finally:
        (root / "fac-a" / "locked").chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [(Path(uri).relative_to(root.resolve()).as_posix(), error) for uri, error in json.loads(done.stdout)]

    assert rows == [("fac-a/locked", "unreadable_folder"), ("fac-a/secret.pdf", "unreadable_file"),
                    ("fac-a/visit.pdf", None)]
