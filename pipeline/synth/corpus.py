"""`medrec synth`: a reproducible corpus of synthetic scanned records with gold JSON."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import pymupdf

from pipeline.manifest import document_id_for
from pipeline.synth import catalogue as cat
from pipeline.synth.documents import BUILDERS, HARD_BUILDERS, SynthDocument
from pipeline.synth.patients import make_patient, make_visit
from pipeline.synth.render import write_born_digital_pdf, write_scanned

log = logging.getLogger(__name__)

RECORDS_DIR = "records"
GOLD_DIR = "gold"


def _pick_file_kind(rng: random.Random, document: SynthDocument, born_digital_share: float) -> tuple[str, bool]:
    """(suffix, born_digital): a share of born-digital PDFs, the rest scans."""
    if rng.random() < born_digital_share:
        return ".pdf", True
    if len(document.pages) > 1:
        return rng.choice((".pdf", ".tif")), False
    return rng.choice((".jpg", ".jpg", ".png")), False


def write_bad_files(records: Path) -> list[str]:
    """Inputs an archive really contains: corrupt, encrypted, empty, truncated, unsupported."""
    folder = records / "fac-north" / "bad"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    (folder / "empty.png").write_bytes(b"")
    (folder / "unsupported.docx").write_bytes(b"PK\x03\x04 not a page image")
    encrypted = pymupdf.open()
    encrypted.new_page().insert_text((72, 72), "locked")
    encrypted.save(folder / "encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret",
                   owner_pw="owner")
    truncated = folder / "truncated.jpg"
    from PIL import Image  # local: only this helper needs a throwaway image

    Image.new("L", (400, 300), 200).save(truncated, format="JPEG")
    truncated.write_bytes(truncated.read_bytes()[:300])
    return sorted(str(p.relative_to(records)) for p in folder.iterdir())


# Scan styles: "mixed" (born-digital PDFs and lightly degraded scans in several formats),
# "printed" (clean page images) and "noisy" (`scan_noise`). Printed and noisy corpora of one
# seed hold the same documents, as lossless PNG (one page) or TIFF pages.
SCAN_STYLES = ("mixed", "printed", "noisy")


def generate_corpus(output: Path, n_documents: int, seed: int, dpi: int = 150,
                    include_bad_files: bool = False, document_types: Sequence[str] | None = None,
                    born_digital_share: float = 0.25, style: str = "mixed", hard_cases: bool = False) -> dict:
    """Write `n_documents` documents under output/records and one gold JSON each under output/gold.

    Each patient gets two documents of different types from `document_types` (default all).
    `hard_cases` draws the harder variants (two columns, abbreviations, Yes/No boxes, lab
    rows with a missing cell) where a type has one.
    """
    if style not in SCAN_STYLES:
        raise ValueError(f"unknown scan style {style!r}; known: {SCAN_STYLES}")
    if n_documents < 1:
        raise ValueError("n_documents must be at least 1")
    types = list(document_types or BUILDERS)
    unknown = set(types) - set(BUILDERS)
    if unknown:
        raise ValueError(f"unknown document types {sorted(unknown)}; known: {sorted(BUILDERS)}")
    rng = random.Random(seed)
    records, gold_dir = output / RECORDS_DIR, output / GOLD_DIR
    records.mkdir(parents=True, exist_ok=True)
    gold_dir.mkdir(parents=True, exist_ok=True)
    facilities = list(cat.FACILITIES.items())
    written, pages = 0, 0
    patient_number = 0
    while written < n_documents:
        facility_index = patient_number % len(facilities)
        facility_id, facility_name = facilities[facility_index]
        patient = make_patient(rng, facility_index, patient_number)
        visit = make_visit(rng, patient)
        # Two documents per patient, so assembly must join a patient across documents.
        for document_type in rng.sample(types, min(2, n_documents - written)):
            builder = HARD_BUILDERS.get(document_type, BUILDERS[document_type]) if hard_cases else BUILDERS[document_type]
            document = builder(rng, patient, visit, facility_name)
            if style == "mixed":
                suffix, born_digital = _pick_file_kind(rng, document, born_digital_share)
            else:  # no draw from `rng` here, so every style of one seed gets the same documents
                suffix, born_digital = (".tif" if len(document.pages) > 1 else ".png"), False
            relative = Path(facility_id) / f"{document_type}-{written:04d}{suffix}"
            path = records / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if born_digital:
                write_born_digital_pdf(document, path)
            elif style == "mixed":
                write_scanned(document, path, rng, dpi)
            else:
                write_scanned(document, path, rng, dpi, noise_seed=seed * 100_003 + written * 101,
                              clean=style == "printed")
            gold = {
                "document_id": document_id_for(str(relative)),
                "file": str(relative),
                "facility_id": facility_id,
                "born_digital": born_digital,
                "page_count": len(document.pages),
                **document.gold,
            }
            (gold_dir / f"{gold['document_id']}.json").write_text(json.dumps(gold, indent=1))
            written += 1
            pages += len(document.pages)
        patient_number += 1
    bad = write_bad_files(records) if include_bad_files else []
    summary = {"documents": written, "pages": pages, "patients": patient_number,
               "facilities": len({f for f, _ in facilities[:patient_number]}), "bad_files": bad,
               "records": str(records), "gold": str(gold_dir)}
    log.info("synthetic corpus: %d documents, %d pages, %d patients", written, pages, patient_number)
    return summary
