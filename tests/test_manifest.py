"""build_manifest / write_manifest on a folder tree made in the test: one row per page."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pymupdf
import pytest
from PIL import Image

from pipeline.manifest import build_manifest, document_id_for, write_manifest
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
