"""Render stage: a manifest row -> an 8-bit grayscale page image, or the page's text layer.

PDF and TIFF pages are rendered with PyMuPDF; PNG and JPEG are decoded as they are. A
born-digital PDF page with a usable text layer keeps its words and positions, so OCR skips it.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pipeline.stages.base import PageFailure, Resources, Stage

RASTER_TYPES = ("image/png", "image/jpeg")
PAGED_TYPES = ("application/pdf", "image/tiff")


class RenderStage(Stage):
    """Decodes one page per row; bad files become quarantined rows, never a crash."""

    name: ClassVar[str] = "render"
    required_columns = Stage.required_columns + ("source_uri", "media_type")

    def __init__(
        self,
        dpi: int = 150,
        max_side_px: int = 2600,
        max_file_bytes: int = 200 * 1024 * 1024,
        min_text_layer_chars: int = 40,
        resources: Resources | None = None,
    ):
        super().__init__(resources or Resources(num_cpus=0.5, batch_size=4))
        if not 72 <= dpi <= 600:
            raise ValueError("render dpi must be within 72..600")
        self.dpi = dpi  # OCR cost grows with pixels: 150 DPI keeps typed text legible
        self.max_side_px = max_side_px  # larger scans are downscaled, bounding OCR time and memory
        self.max_file_bytes = max_file_bytes  # giant files are quarantined, not loaded
        self.min_text_layer_chars = min_text_layer_chars  # fewer: treat the page as a scan

    def process_page(self, row: dict[str, Any]) -> dict[str, Any]:
        return self._guarded(self._render, row)

    def _render(self, row: dict[str, Any]) -> dict[str, Any]:
        path, media_type = row["source_uri"], row["media_type"]
        if media_type not in RASTER_TYPES + PAGED_TYPES:
            raise PageFailure("unsupported_media_type", f"media type {media_type} is not a page format")
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise PageFailure("missing_file", f"cannot stat source file ({type(exc).__name__})") from None
        if size == 0:
            raise PageFailure("empty_file", "source file has 0 bytes")
        if size > self.max_file_bytes:
            raise PageFailure("file_too_large", f"source file is {size} bytes, limit {self.max_file_bytes}")
        if media_type in RASTER_TYPES:
            return self._render_raster(row)
        return self._render_paged(row)

    def _render_raster(self, row: dict[str, Any]) -> dict[str, Any]:
        from PIL import Image

        if row["page_index"] != 0:
            raise PageFailure("missing_page", f"page {row['page_index']} requested from a single-page image")
        try:
            with Image.open(row["source_uri"]) as image:
                image.load()
                gray = _eight_bit(image).convert("L")
                dpi = int(round(image.info.get("dpi", (self.dpi, self.dpi))[0])) or self.dpi
        except Image.DecompressionBombError:
            raise PageFailure("image_too_large", "image exceeds the decompression limit") from None
        except Exception as exc:  # Pillow raises many types for damaged files
            raise PageFailure("corrupt_file", f"image cannot be decoded ({type(exc).__name__})") from None
        scale = min(1.0, self.max_side_px / max(gray.size))
        if scale < 1.0:
            gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.LANCZOS)
            dpi = round(dpi * scale)
        return self._with_image(row, gray.tobytes(), gray.width, gray.height, dpi)

    def _render_paged(self, row: dict[str, Any]) -> dict[str, Any]:
        import pymupdf

        try:
            document = pymupdf.open(row["source_uri"])
        except Exception as exc:  # PyMuPDF raises several types for damaged files
            raise PageFailure("corrupt_file", f"document cannot be opened ({type(exc).__name__})") from None
        with document:
            if document.needs_pass:
                raise PageFailure("encrypted", "document is password protected")
            if row["page_index"] >= document.page_count:
                raise PageFailure("missing_page", f"page {row['page_index']} of {document.page_count}")
            try:
                page = document[row["page_index"]]
                # A scan is rendered at its own resolution; a PDF page at the configured DPI.
                if row["media_type"] == "application/pdf":
                    dpi = self.dpi
                else:
                    dpi = _native_dpi(row["source_uri"], row["page_index"], page.rect.width)
                longest_in = max(page.rect.width, page.rect.height) / 72
                dpi = min(dpi, int(self.max_side_px / longest_in)) if longest_in else dpi
                if row["media_type"] == "application/pdf":
                    lines = self._text_layer(page, dpi)
                    if lines is not None:
                        width, height = round(page.rect.width * dpi / 72), round(page.rect.height * dpi / 72)
                        row.update(text_source="text_layer", lines=lines, image=None, image_width=width,
                                   image_height=height, dpi=dpi)
                        if page.get_drawings():
                            # Drawn check boxes have no text: the OCR stage reads them from pixels.
                            pixmap = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False)
                            row.update(image=bytes(pixmap.samples), image_width=pixmap.width,
                                       image_height=pixmap.height)
                        return row
                pixmap = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False)
            except PageFailure:
                raise
            except Exception as exc:
                raise PageFailure("corrupt_page", f"page cannot be rendered ({type(exc).__name__})") from None
            return self._with_image(row, pixmap.samples, pixmap.width, pixmap.height, dpi)

    def _text_layer(self, page: Any, dpi: int) -> list[dict[str, Any]] | None:
        """Lines of a born-digital page in pixel coordinates, or None for a scanned page."""
        scale = dpi / 72
        lines = []
        for block in page.get_text("dict")["blocks"]:
            for line in block.get("lines", []):
                text = "".join(span["text"] for span in line["spans"]).strip()
                if not text:
                    continue
                x0, y0, x1, y1 = (round(v * scale, 1) for v in line["bbox"])
                lines.append({"text": text, "confidence": 1.0, "bbox": [x0, y0, x1, y1],
                              "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
        if sum(len(line["text"]) for line in lines) < self.min_text_layer_chars:
            return None
        lines.sort(key=lambda line: (line["bbox"][1], line["bbox"][0]))
        for line_id, line in enumerate(lines):
            line["line_id"] = line_id
        return lines

    @staticmethod
    def _with_image(row: dict[str, Any], pixels: bytes, width: int, height: int, dpi: int) -> dict[str, Any]:
        row.update(text_source="ocr", image=bytes(pixels), image_width=width, image_height=height, dpi=dpi)
        return row


def _eight_bit(image: Any) -> Any:
    """16-bit grayscale scaled to 8 bits: Pillow clips (not scales) it when converting to L."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        return image.convert("I").point(lambda value: value * (1 / 256))
    return image


def _native_dpi(path: str, page_index: int, width_pt: float) -> int:
    """The DPI at which PyMuPDF renders a TIFF page back to its own pixels (whatever
    resolution PyMuPDF assumed when the file records none)."""
    from PIL import Image

    with Image.open(path) as image:
        image.seek(page_index)
        width_px = image.size[0]
    return max(1, round(width_px * 72 / width_pt))
