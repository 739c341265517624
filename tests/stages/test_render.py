"""RenderStage on files made in the test: page images, PDF text layers, and quarantined bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymupdf
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.manifest import MEDIA_TYPES, UNSUPPORTED_MEDIA_TYPE
from pipeline.schemas import page_rows_to_table
from pipeline.stages.render import RenderStage

DPI = 150
SECRET = "Janet Johnson MRN 3000002"  # text inside files that must never reach an error message
TEXT_LINES = [  # (x, baseline y) in PDF points, text
    ((72, 100), "DISCHARGE SUMMARY"),
    ((72, 130), "Patient: Johnson, Janet"),
    ((300, 130), "MRN: 3000002"),
    ((72, 160), "Diagnosis: Essential hypertension"),
]


def page_row(path: Path, page_index: int = 0, media_type: str | None = None, **values) -> dict:
    return {
        "facility_id": "fac-1",
        "document_id": "doc-1",
        "page_index": page_index,
        "source_uri": str(path),
        "sha256": "0" * 64,
        "media_type": media_type or MEDIA_TYPES.get(path.suffix.lower(), UNSUPPORTED_MEDIA_TYPE),
        **values,
    }


def render(rows: list[dict], **config) -> list[dict]:
    return RenderStage(dpi=DPI, **config).process_batch(page_rows_to_table(rows)).to_pylist()


def drawn_page(size: tuple[int, int], mode: str = "L") -> Image.Image:
    image = Image.new(mode, size, "white")
    ImageDraw.Draw(image).text((10, 10), SECRET, fill="black", font=ImageFont.load_default(size=18))
    return image


def born_digital_pdf(path: Path) -> Path:
    with pymupdf.open() as pdf:
        page = pdf.new_page(width=612, height=792)
        for point, text in TEXT_LINES:
            page.insert_text(point, text, fontsize=12)
        pdf.save(path)
    return path


def scanned_pdf(path: Path, pages: int = 1) -> Path:
    """Image-only pages, as a scanner writes them: no text layer."""
    png = path.with_suffix(".png")
    drawn_page((850, 1100)).save(png, dpi=(100, 100))
    with pymupdf.open() as pdf:
        for _ in range(pages):
            pdf.new_page(width=612, height=792).insert_image(pymupdf.Rect(0, 0, 612, 792), filename=str(png))
        pdf.save(path)
    png.unlink()
    return path


def assert_grayscale_page(row: dict) -> None:
    assert row["error_stage"] is None, row["error_message"]
    assert row["text_source"] == "ocr"
    assert row["image_width"] > 0 and row["image_height"] > 0
    assert len(row["image"]) == row["image_width"] * row["image_height"]  # 8-bit, one channel
    assert min(row["image"]) < 128 < max(row["image"])  # the drawn text survived


# Page images -----------------------------------------------------------------------------


def test_png_renders_to_grayscale_bytes(tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    drawn_page((400, 300), "RGB").save(path, dpi=(200, 200))

    (row,) = render([page_row(path)])

    assert_grayscale_page(row)
    assert (row["image_width"], row["image_height"], row["dpi"]) == (400, 300, 200)
    assert [t["stage"] for t in row["timings"]] == ["render"]


def test_jpeg_without_dpi_uses_the_configured_dpi(tmp_path: Path) -> None:
    path = tmp_path / "page.jpg"
    drawn_page((320, 240), "RGB").save(path, format="JPEG")

    (row,) = render([page_row(path)])

    assert_grayscale_page(row)
    assert (row["image_width"], row["image_height"], row["dpi"]) == (320, 240, DPI)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_scan_keeps_its_ink(tmp_path: Path, suffix: str) -> None:
    # Archival scanners write 16-bit grayscale; gray ink (40 of 255) must not turn into white paper.
    page = Image.new("L", (300, 200), 235)
    ImageDraw.Draw(page).rectangle((50, 50, 250, 150), fill=40)
    path = tmp_path / f"scan16{suffix}"
    Image.fromarray(np.asarray(page).astype(np.uint16) * 257).save(path, dpi=(DPI, DPI))
    assert Image.open(path).mode == "I;16"

    (row,) = render([page_row(path)])

    assert_grayscale_page(row)
    pixels = np.frombuffer(row["image"], np.uint8)
    assert abs(int(pixels.min()) - 40) <= 2 and abs(int(pixels.max()) - 235) <= 2
    assert (pixels < 128).mean() == pytest.approx(201 * 101 / (300 * 200), abs=0.01)


def test_large_scan_is_downscaled_to_max_side(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    drawn_page((1200, 600)).save(path, dpi=(300, 300))

    (row,) = render([page_row(path)], max_side_px=600)

    assert_grayscale_page(row)
    assert (row["image_width"], row["image_height"], row["dpi"]) == (600, 300, 150)


def test_each_page_of_a_multi_page_tiff_renders(tmp_path: Path) -> None:
    path = tmp_path / "scan.tif"
    frames = [drawn_page((300, 400)), drawn_page((300, 400))]
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:], dpi=(DPI, DPI))

    rows = render([page_row(path, 0), page_row(path, 1)])

    for row in rows:
        assert_grayscale_page(row)
        assert (row["image_width"], row["image_height"]) == (300, 400)


def test_scanned_pdf_pages_render_for_ocr(tmp_path: Path) -> None:
    path = scanned_pdf(tmp_path / "scan.pdf", pages=2)

    rows = render([page_row(path, 0), page_row(path, 1)])

    for row in rows:
        assert_grayscale_page(row)
        assert row["lines"] is None
        # Letter at 150 DPI: 8.5 x 11 in.
        assert (row["image_width"], row["image_height"], row["dpi"]) == (1275, 1650, DPI)


# Born-digital PDF text layer -------------------------------------------------------------


def test_born_digital_pdf_keeps_its_text_layer_in_pixel_space(tmp_path: Path) -> None:
    path = born_digital_pdf(tmp_path / "typed.pdf")
    scale = DPI / 72

    (row,) = render([page_row(path)])

    assert row["error_stage"] is None
    assert row["text_source"] == "text_layer"
    assert row["image"] is None
    assert (row["image_width"], row["image_height"], row["dpi"]) == (1275, 1650, DPI)
    lines = {line["text"]: line for line in row["lines"]}
    assert set(lines) == {text for _, text in TEXT_LINES}
    assert [line["line_id"] for line in row["lines"]] == list(range(len(TEXT_LINES)))
    for (x, baseline), text in TEXT_LINES:
        x0, y0, x1, y1 = lines[text]["bbox"]
        assert x0 == pytest.approx(x * scale, abs=2)
        assert y0 < baseline * scale < y1  # the baseline lies inside the box
        assert 0.8 * 12 * scale < y1 - y0 < 1.6 * 12 * scale  # one 12 pt line (ascent + descent), in pixels
        assert x1 <= row["image_width"] and y1 <= row["image_height"]
        assert lines[text]["polygon"] == [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        assert lines[text]["confidence"] == 1.0
    # Reading order: top to bottom, then left to right.
    assert [line["text"] for line in row["lines"]][:3] == [
        "DISCHARGE SUMMARY", "Patient: Johnson, Janet", "MRN: 3000002"]


def test_born_digital_form_with_drawn_boxes_keeps_its_pixels_for_the_check_box_reader(tmp_path: Path) -> None:
    path = born_digital_pdf(tmp_path / "form.pdf")
    with pymupdf.open(path) as pdf:
        pdf[0].draw_rect(pymupdf.Rect(72, 180, 83, 191), color=(0, 0, 0), width=1)
        pdf.saveIncr()

    (row,) = render([page_row(path)])

    assert row["text_source"] == "text_layer" and len(row["lines"]) == len(TEXT_LINES)
    assert len(row["image"]) == row["image_width"] * row["image_height"] == 1275 * 1650


def test_pdf_with_too_little_text_is_treated_as_a_scan(tmp_path: Path) -> None:
    path = tmp_path / "stamp.pdf"
    with pymupdf.open() as pdf:
        pdf.new_page().insert_text((72, 72), "Page 1")
        pdf.save(path)

    (row,) = render([page_row(path)])

    assert_grayscale_page(row)
    assert row["lines"] is None


# Bad files -------------------------------------------------------------------------------


def bad_file(tmp_path: Path, kind: str) -> Path:
    if kind == "corrupt":
        path = tmp_path / "corrupt.pdf"
        path.write_bytes(b"%PDF-1.7\n" + SECRET.encode() * 20 + bytes(range(256)) * 4)
    elif kind == "encrypted":
        path = tmp_path / "encrypted.pdf"
        with pymupdf.open() as pdf:
            pdf.new_page().insert_text((72, 72), SECRET)
            pdf.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner")
    elif kind == "empty":
        path = tmp_path / "empty.png"
        path.write_bytes(b"")
    elif kind == "truncated":
        path = tmp_path / "truncated.jpg"
        drawn_page((400, 300)).save(path, format="JPEG")
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "corrupt_png":
        path = tmp_path / "garbage.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + SECRET.encode() * 10)
    elif kind == "unsupported":
        path = tmp_path / "notes.docx"
        path.write_bytes(b"PK\x03\x04" + SECRET.encode())
    else:
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize(
    "kind, error_type",
    [
        ("corrupt", "corrupt_file"),
        ("encrypted", "encrypted"),
        ("empty", "empty_file"),
        ("truncated", "corrupt_file"),
        ("corrupt_png", "corrupt_file"),
        ("unsupported", "unsupported_media_type"),
    ],
)
def test_bad_file_becomes_a_render_error_row(tmp_path: Path, kind: str, error_type: str) -> None:
    path = bad_file(tmp_path, kind)

    (row,) = render([page_row(path)])

    assert (row["error_stage"], row["error_type"]) == ("render", error_type)
    assert row["image"] is None
    assert row["error_message"]
    assert "Janet" not in row["error_message"] and "3000002" not in row["error_message"]


def test_file_over_the_size_limit_is_quarantined_unread(tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    drawn_page((400, 300)).save(path)

    (row,) = render([page_row(path)], max_file_bytes=100)

    assert (row["error_stage"], row["error_type"]) == ("render", "file_too_large")
    assert row["image"] is None


def test_missing_file_and_missing_page_are_quarantined(tmp_path: Path) -> None:
    png = tmp_path / "page.png"
    drawn_page((100, 100)).save(png)
    pdf = scanned_pdf(tmp_path / "one.pdf", pages=1)

    rows = render([page_row(tmp_path / "gone.png"), page_row(png, page_index=1), page_row(pdf, page_index=3)])

    assert [(r["error_stage"], r["error_type"]) for r in rows] == [
        ("render", "missing_file"), ("render", "missing_page"), ("render", "missing_page")]


def test_one_bad_file_does_not_stop_the_batch(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    drawn_page((200, 100)).save(good)
    bad = bad_file(tmp_path, "truncated")

    rows = render([page_row(good), page_row(bad), page_row(good)])

    assert [r["error_type"] for r in rows] == [None, "corrupt_file", None]
    assert_grayscale_page(rows[0])
    assert_grayscale_page(rows[2])


def test_rows_failed_upstream_pass_through_untouched(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    drawn_page((200, 100)).save(good)
    failed = page_row(good, error_stage="manifest", error_type="unreadable", error_message="failed before render")
    batch = page_rows_to_table([failed])

    out = RenderStage(dpi=DPI).process_batch(batch)

    assert out.to_pylist() == batch.to_pylist()


@pytest.mark.parametrize("dpi", [50, 1200])
def test_dpi_out_of_bounds_is_rejected(dpi: int) -> None:
    with pytest.raises(ValueError, match="dpi"):
        RenderStage(dpi=dpi)


def test_tiff_without_dpi_keeps_its_pixel_size(tmp_path):
    path = tmp_path / "nodpi.tif"
    Image.new("L", (300, 200), 128).save(path, format="TIFF")
    row = {"facility_id": "f", "document_id": "d", "page_index": 0, "source_uri": str(path), "sha256": "x",
           "media_type": "image/tiff"}
    out = RenderStage().process_batch(page_rows_to_table([row])).to_pylist()[0]
    assert (out["image_width"], out["image_height"]) == (300, 200)
    assert len(out["image"]) == 300 * 200


def test_every_hostile_case_renders_or_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    """The hostile corpus through manifest and render only (no OCR): the quick check of the
    outcomes tests/test_hostile_corpus.py sees end to end."""
    from pipeline.manifest import build_manifest, document_id_for
    from pipeline.synth.hostile import write_hostile_corpus

    records = tmp_path / "records"
    cases = write_hostile_corpus(records)
    manifest = build_manifest(records)
    for case in cases:
        if case.vanish:
            (records / case.path).unlink()
    rows = render(manifest.to_pylist())

    by_page = {(row["document_id"], row["page_index"]): row for row in rows}
    for case in cases:
        for page_index, expected in enumerate(case.outcomes):
            row = by_page.pop((document_id_for(case.path), page_index))
            got = f"render:{row['error_type']}" if row["error_type"] else "rendered"
            assert got == (expected if expected.startswith("render:") else "rendered"), case.kind
            if got == "rendered" and row["image"] is not None:
                assert len(row["image"]) == row["image_width"] * row["image_height"]
    assert not by_page  # nothing listed that no case accounts for


def test_upright_pages_from_exif_orientation_and_transparency_on_white(tmp_path: Path) -> None:
    page = Image.new("L", (300, 100), 255)
    ImageDraw.Draw(page).rectangle((10, 10, 60, 90), fill=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    page.rotate(90, expand=True).convert("RGB").save(tmp_path / "phone.jpg", exif=exif)
    Image.merge("LA", (Image.new("L", page.size, 0), Image.eval(page, lambda v: 255 - v))).save(tmp_path / "la.png")

    phone, alpha = render([page_row(tmp_path / "phone.jpg"), page_row(tmp_path / "la.png")])

    assert (phone["image_width"], phone["image_height"]) == (300, 100)
    pixels = np.frombuffer(phone["image"], np.uint8).reshape(100, 300)
    assert pixels[:, :80].mean() < pixels[:, 100:].mean()  # the ink stays on the left, as on the page
    paper = np.frombuffer(alpha["image"], np.uint8).reshape(100, 300)
    assert paper[:, 100:].min() > 240 and paper[20:80, 20:50].max() < 20  # transparent paper is white, ink black


def test_pdf_rotate_puts_text_boxes_on_the_page_as_shown(tmp_path: Path) -> None:
    path = tmp_path / "rotated.pdf"
    with pymupdf.open() as pdf:
        page = pdf.new_page(width=612, height=792)
        for n, (_, text) in enumerate(TEXT_LINES):
            page.insert_text((72, 100 + 30 * n), text)
        page.set_rotation(90)
        pdf.save(path)

    (row,) = render([page_row(path)])

    assert (row["image_width"], row["image_height"]) == (1650, 1275)  # landscape, as shown
    for line in row["lines"]:
        x0, y0, x1, y1 = line["bbox"]
        assert 0 <= x0 < x1 <= row["image_width"] and 0 <= y0 < y1 <= row["image_height"]
