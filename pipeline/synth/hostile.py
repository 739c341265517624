"""A hostile-input corpus drawn in code: files as scanners, phones and archives really hold them.

Every case says what each of its manifest rows must end as: `read` (processed, the page's
text line found), `processed`, `blank` (processed, no text), or `<stage>:<error_type>` in
quarantine. Pages are small (one text line) so the
OCR cost of a run over the corpus stays a few seconds a page.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image, ImageDraw, ImageFont

TEXT = "BP 132/84 mmHg"
READ, PROCESSED, BLANK = "read", "processed", "blank"


@dataclass(frozen=True)
class HostileCase:
    """One kind of bad input: where it is under the records folder and each row's outcome."""

    kind: str
    path: str  # relative to the records folder (a link's own path, not its target)
    outcomes: tuple[str, ...]  # per manifest row, in page order
    vanish: bool = False  # deleted after the manifest is built, before the run renders it


def _page(size: tuple[int, int] = (420, 90)) -> Image.Image:
    page = Image.new("L", size, 255)
    ImageDraw.Draw(page).text((16, 24), TEXT, fill=0, font=ImageFont.load_default(size=30))
    return page


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` with one row of data: a decompression bomb
    as far as the header goes, a few hundred bytes on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
            + chunk(b"IEND", b""))


def _ycck_jpeg(page: Image.Image) -> bytes:
    """A YCCK JPEG (Adobe transform 2), as some scanners write CMYK: Y, Cb, Cr of the page's
    colours plus K, stored through Pillow's CMYK writer with the Adobe marker's transform set."""
    rgb = np.asarray(page.convert("RGB")).astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    channels = [0.299 * r + 0.587 * g + 0.114 * b,
                128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                128 + 0.5 * r - 0.418688 * g - 0.081312 * b,
                np.zeros_like(r)]
    pixels = np.clip(np.stack(channels, -1).round(), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "CMYK").save(buffer, "JPEG", quality=95)
    data = bytearray(buffer.getvalue())
    adobe = data.find(b"Adobe")
    data[adobe + 11] = 2  # "Adobe", version, flags0, flags1, then the transform byte
    return bytes(data)


def _pdf(path: Path, pages: list[str | None], rotate: int = 0) -> None:
    """A born-digital PDF: one text line per page (None: an empty page, which is a scan to render)."""
    with pymupdf.open() as pdf:
        for text in pages:
            page = pdf.new_page(width=612, height=792)
            if text:
                for n in range(3):  # enough characters to count as a text layer
                    page.insert_text((72, 100 + 20 * n), f"{text} line {n + 1}", fontsize=12)
            if rotate:
                page.set_rotation(rotate)
        pdf.save(path)


def write_hostile_corpus(records: Path) -> list[HostileCase]:
    """Write every hostile case under `records` (and an `outside` folder beside it that only a
    link reaches); returns the cases with their expected outcomes."""
    bad = records / "fac-hostile"
    bad.mkdir(parents=True, exist_ok=True)
    cases: list[HostileCase] = []

    def case(kind: str, name: str, *outcomes: str, vanish: bool = False) -> Path:
        cases.append(HostileCase(kind, f"fac-hostile/{name}", outcomes, vanish))
        return bad / name

    page = _page()
    # Image encodings as scanners and phones write them.
    page.convert("CMYK").save(case("CMYK JPEG", "cmyk.jpg", READ))
    case("YCCK JPEG (Adobe transform 2)", "ycck.jpg", READ).write_bytes(_ycck_jpeg(page))
    Image.fromarray(np.asarray(page).astype(np.uint16) * 257).save(case("16-bit grey PNG", "grey16.png", READ))
    # Grey + alpha: the text is opaque, the paper transparent (black under the alpha).
    alpha = Image.eval(page, lambda v: 255 - v)
    Image.merge("LA", (Image.new("L", page.size, 0), alpha)).save(case("grey + alpha PNG", "grey_alpha.png", READ))
    palette = page.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    palette.save(case("palette PNG with a transparent index", "palette.png", READ),
                 transparency=palette.getpixel((0, 0)))
    page.convert("1").save(case("bilevel CCITT G3 TIFF", "fax_g3.tif", READ), compression="group3")
    page.convert("1").save(case("bilevel CCITT G4 TIFF", "fax_g4.tif", READ), compression="group4")
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: the stored pixels are the page rotated
    page.rotate(90, expand=True).convert("RGB").save(case("phone JPEG with EXIF orientation", "phone.jpg", READ),
                                                     exif=exif)
    _pdf(case("PDF page with /Rotate 90", "rotated.pdf", READ), [TEXT], rotate=90)
    # A 4-page TIFF cut off inside its third page: pages 1-2 read, page 3 damaged, the rest lost.
    frames = [_page() for _ in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    case("multi-page TIFF cut short", "cut_short.tif", READ, READ, "render:corrupt_page",
         "render:truncated_file").write_bytes(data[:int(len(data) * 0.6)])
    case("decompression bomb PNG (60000 x 60000 header)", "bomb.png",
         "render:image_too_large").write_bytes(_png_header_only(60000, 60000))
    bomb_pdf = case("PDF holding a 40000 x 40000 image", "bomb.pdf", "render:image_too_large")
    with pymupdf.open() as pdf:
        pdf_page = pdf.new_page()
        buffer = io.BytesIO()
        Image.new("L", (8, 8), 255).save(buffer, "PNG")
        xref = pdf_page.insert_image(pdf_page.rect, stream=buffer.getvalue())
        pdf.xref_set_key(xref, "Width", "40000")
        pdf.xref_set_key(xref, "Height", "40000")
        pdf.save(bomb_pdf)
    # Pages with nothing on them, or nothing sensible.
    Image.new("L", (420, 300), 255).save(case("blank scan (the back of a sheet)", "blank.png", BLANK))
    _pdf(case("PDF whose second page is empty", "two_pages_one_empty.pdf", READ, BLANK), [TEXT, None])
    Image.new("L", (420, 300), 0).save(case("all-black page", "black.png", BLANK))
    Image.new("L", (1, 1), 255).save(case("one-pixel image", "one_pixel.png", BLANK))
    Image.new("L", (1, 20000), 255).save(case("1 x 20000 strip", "strip.png", BLANK))
    noise = np.random.default_rng(7).integers(0, 256, (200, 300), dtype=np.uint8)
    Image.fromarray(noise).save(case("random noise image", "noise.png", BLANK))
    # Damaged and wrong files.
    rng = np.random.default_rng(11)
    case("random bytes behind a PNG signature", "garbage.png",
         "render:corrupt_file").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(2048))
    case("random bytes behind a JPEG marker", "garbage.jpg",
         "render:corrupt_file").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(2048))
    case("random bytes behind a TIFF header", "garbage.tif",
         "render:corrupt_file").write_bytes(b"II*\x00" + rng.bytes(2048))
    case("random bytes behind a PDF header", "garbage.pdf",
         "render:corrupt_file").write_bytes(b"%PDF-1.7\n" + rng.bytes(2048))
    case("text file named .pdf", "notes.pdf", "render:corrupt_file").write_text("not a pdf at all\n")
    case("empty file", "empty.pdf", "render:empty_file").write_bytes(b"")
    with pymupdf.open() as pdf:
        pdf.new_page().insert_text((72, 72), "locked")
        pdf.save(case("encrypted PDF", "encrypted.pdf", "render:encrypted"), encryption=pymupdf.PDF_ENCRYPT_AES_256,
                 user_pw="secret", owner_pw="owner")
    case("unsupported format", "letter.docx", "render:unsupported_media_type").write_bytes(b"PK\x03\x04 a word file")
    # The folder tree itself.
    os.symlink(bad / "no-such-file.pdf", case("dangling symbolic link", "dangling.pdf", "render:dangling_link"))
    os.symlink(bad / "self_loop.pdf", case("symbolic link to itself", "self_loop.pdf", "render:symlink_loop"))
    loop = bad / "deeper"
    loop.mkdir()
    os.symlink(bad, loop / "up")
    cases.append(HostileCase("folder link back to an ancestor (a loop)", "fac-hostile/deeper/up", ("render:symlink_loop",)))
    outside = records.parent / f"{records.name}-outside"
    outside.mkdir(exist_ok=True)
    _page().save(outside / "linked_scan.png")
    os.symlink(outside, bad / "linked_folder")
    cases.append(HostileCase("folder reached through a symbolic link", "fac-hostile/linked_folder/linked_scan.png",
                             (READ,)))
    os.symlink(outside / "linked_scan.png", bad / "second_link_to_the_same_scan.png")  # listed once
    os.mkfifo(case("named pipe (would block a reader)", "pipe.pdf", "render:not_a_regular_file"))
    _page().save(case("file deleted between manifest and render", "vanishes.png", "render:missing_file", vanish=True))
    return cases
