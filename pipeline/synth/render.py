"""Writes synthetic documents as files: born-digital PDFs and scanned-looking images."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pipeline.synth.documents import CheckboxLine, Line, SynthDocument

PAGE_WIDTH_IN, PAGE_HEIGHT_IN = 8.5, 11.0
FONT_PT = 11.0
TOP_MARGIN_IN = 0.7
LINE_PITCH_IN = 0.29


def _line_y_in(index: int) -> float:
    return TOP_MARGIN_IN + index * LINE_PITCH_IN


def draw_page(page: list[Line | CheckboxLine], dpi: int) -> Image.Image:
    """Draw one page as a clean grayscale image at `dpi`."""
    width, height = int(PAGE_WIDTH_IN * dpi), int(PAGE_HEIGHT_IN * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font_px = round(FONT_PT * dpi / 72)
    regular = ImageFont.load_default(size=font_px)
    for index, line in enumerate(page):
        y = _line_y_in(index) * dpi
        if isinstance(line, CheckboxLine):
            if line.prompt:
                draw.text((0.08 * width, y), line.prompt, fill=0, font=regular)
            for box in line.boxes:
                x = box.x * width
                draw.rectangle((x, y, x + font_px, y + font_px), outline=0, width=2)
                if box.checked:
                    draw.line((x + 3, y + 3, x + font_px - 3, y + font_px - 3), fill=0, width=3)
                    draw.line((x + 3, y + font_px - 3, x + font_px - 3, y + 3), fill=0, width=3)
                draw.text((x + 1.6 * font_px, y), box.label, fill=0, font=regular)
            continue
        for x_frac, text in line.runs:
            if text:
                draw.text((x_frac * width, y), text, fill=0, font=regular, stroke_width=1 if line.bold else 0,
                          stroke_fill=0)
    return image


def degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """Make a clean page look scanned: slight skew, blur, speckle noise, uneven exposure."""
    skewed = image.rotate(rng.uniform(-1.2, 1.2), resample=Image.BICUBIC, fillcolor=255, expand=False)
    blurred = skewed.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 0.9)))
    pixels = np.asarray(blurred, dtype=np.float32)
    np_rng = np.random.default_rng(rng.randrange(2**32))
    pixels = pixels * rng.uniform(0.88, 1.0) + np_rng.normal(0, rng.uniform(4, 10), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def scan_noise(image: Image.Image, seed: int) -> Image.Image:
    """A poor scan of a clean page, the same for the same seed: one to two degrees of skew,
    blur, lower contrast on greyed paper, speckle, sensor noise and heavy JPEG artefacts."""
    rng = random.Random(seed)
    angle = rng.uniform(1.0, 2.0) * rng.choice((-1, 1))
    skewed = image.rotate(angle, resample=Image.BICUBIC, fillcolor=255, expand=False)
    blurred = skewed.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.7, 1.1)))
    np_rng = np.random.default_rng(rng.randrange(2**32))
    paper, ink = rng.uniform(215, 235), rng.uniform(60, 90)  # contrast squeezed from 255..0
    pixels = ink + np.asarray(blurred, dtype=np.float32) / 255 * (paper - ink)
    pixels += np_rng.normal(0, rng.uniform(5, 9), pixels.shape)
    speckle = np_rng.random(pixels.shape) < rng.uniform(0.0005, 0.0015)
    pixels[speckle] = np_rng.uniform(0, 90, int(speckle.sum()))
    noisy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=rng.randint(30, 45))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def _jpeg_roundtrip(image: Image.Image, rng: random.Random) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(55, 85))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def write_born_digital_pdf(document: SynthDocument, path: Path) -> None:
    """A PDF with a real text layer, as an EHR export would produce."""
    pdf = pymupdf.open()
    for page_lines in document.pages:
        page = pdf.new_page(width=PAGE_WIDTH_IN * 72, height=PAGE_HEIGHT_IN * 72)
        for index, line in enumerate(page_lines):
            baseline = (_line_y_in(index)) * 72 + FONT_PT
            if isinstance(line, CheckboxLine):
                if line.prompt:
                    page.insert_text((0.08 * page.rect.width, baseline), line.prompt, fontsize=FONT_PT, fontname="helv")
                for box in line.boxes:
                    x = box.x * page.rect.width
                    rect = pymupdf.Rect(x, baseline - FONT_PT, x + FONT_PT, baseline)
                    page.draw_rect(rect, color=(0, 0, 0), width=1)
                    if box.checked:
                        page.draw_line(rect.tl, rect.br)
                        page.draw_line(rect.bl, rect.tr)
                    page.insert_text((x + 1.6 * FONT_PT, baseline), box.label, fontsize=FONT_PT, fontname="helv")
                continue
            for x_frac, text in line.runs:
                if text:
                    page.insert_text((x_frac * page.rect.width, baseline), text, fontsize=FONT_PT,
                                     fontname="hebo" if line.bold else "helv")
    pdf.save(path)


def write_scanned(document: SynthDocument, path: Path, rng: random.Random, dpi: int,
                  noise_seed: int | None = None, clean: bool = False) -> None:
    """Scanned-looking pages as JPEG/PNG (one page), multi-page TIFF, or an image-only PDF.

    By default pages are lightly degraded with `rng`; `clean` writes them as printed, and
    `noise_seed` applies `scan_noise` (page by page, seeded from it) instead.
    """
    drawn = [draw_page(p, dpi) for p in document.pages]
    if clean:
        pages = drawn
    elif noise_seed is not None:
        pages = [scan_noise(image, noise_seed + index) for index, image in enumerate(drawn)]
    else:
        pages = [_jpeg_roundtrip(degrade(image, rng), rng) for image in drawn]
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        pages[0].save(path, format="JPEG", quality=rng.randint(60, 85), dpi=(dpi, dpi))
    elif suffix == ".png":
        pages[0].save(path, format="PNG", dpi=(dpi, dpi))
    elif suffix in (".tif", ".tiff"):
        pages[0].save(path, format="TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate",
                      dpi=(dpi, dpi))
    elif suffix == ".pdf":
        pdf = pymupdf.open()
        for image in pages:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
            page = pdf.new_page(width=PAGE_WIDTH_IN * 72, height=PAGE_HEIGHT_IN * 72)
            page.insert_image(page.rect, stream=buffer.getvalue())
        pdf.save(path)
    else:
        raise ValueError(f"no scanned writer for {suffix}")
