"""Render stage: a manifest row -> an 8-bit grayscale page image, or the page's text layer.

PDF pages are rendered with PyMuPDF; PNG, JPEG and TIFF pages (each TIFF frame a page) are
decoded with Pillow, as scanners and phones write them. A born-digital PDF page with a usable
text layer keeps its words and positions, so OCR skips it. Every way a page can be bad ends
as a PageFailure with a reason (the stage base quarantines the row), never a crash.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pipeline.manifest import DANGLING_LINK, SPECIAL_FILE, SYMLINK_LOOP, UNREADABLE_FOLDER
from pipeline.stages.base import PageFailure, Resources, Stage

IMAGE_TYPES = ("image/png", "image/jpeg", "image/tiff")
# Manifest entries that are not files: (error type, message) for each.
DISCOVERY_REASONS = {
    DANGLING_LINK: ("dangling_link", "symbolic link to nothing"),
    SYMLINK_LOOP: ("symlink_loop", "symbolic link back to a folder above it (a loop): not followed"),
    UNREADABLE_FOLDER: ("unreadable_folder", "folder cannot be listed"),
    SPECIAL_FILE: ("not_a_regular_file", "a pipe, socket or device, not a file"),
}


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
        max_image_pixels: int = 120_000_000,
        resources: Resources | None = None,
    ):
        super().__init__(resources or Resources(num_cpus=0.5, batch_size=4))
        if not 72 <= dpi <= 600:
            raise ValueError("render dpi must be within 72..600")
        self.dpi = dpi  # OCR cost grows with pixels: 150 DPI keeps typed text legible
        self.max_side_px = max_side_px  # larger scans are downscaled, bounding OCR time and memory
        self.max_file_bytes = max_file_bytes  # giant files are quarantined, not loaded
        self.min_text_layer_chars = min_text_layer_chars  # fewer: treat the page as a scan
        # Decompression bombs: a page larger than this (from its header) is refused undecoded.
        self.max_image_pixels = max_image_pixels

    def process_page(self, row: dict[str, Any]) -> dict[str, Any]:
        path, media_type = row["source_uri"], row["media_type"]
        if media_type in DISCOVERY_REASONS:
            raise PageFailure(*DISCOVERY_REASONS[media_type])
        if media_type not in IMAGE_TYPES + ("application/pdf",):
            raise PageFailure("unsupported_media_type", f"media type {media_type} is not a page format")
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            if os.path.islink(path):
                raise PageFailure("dangling_link", "the symbolic link's target is gone") from None
            raise PageFailure("missing_file", f"source file is gone since the manifest ({type(exc).__name__})") from None
        try:
            open(path, "rb").close()  # the decoders report a file they may not read as damaged
        except OSError as exc:
            raise PageFailure("unreadable_file", f"source file cannot be opened ({type(exc).__name__})") from None
        if size == 0:
            raise PageFailure("empty_file", "source file has 0 bytes")
        if size > self.max_file_bytes:
            raise PageFailure("file_too_large", f"source file is {size} bytes, limit {self.max_file_bytes}")
        if media_type in IMAGE_TYPES:
            return self._render_image(row)
        return self._render_pdf(row)

    def _render_image(self, row: dict[str, Any]) -> dict[str, Any]:
        """A PNG, JPEG or TIFF page: one frame decoded by Pillow (CCITT G3/G4 and 16-bit TIFF
        included), turned upright by its EXIF orientation, flattened onto white paper."""
        from PIL import Image, ImageOps

        try:
            image = Image.open(row["source_uri"])
        except Image.DecompressionBombError:
            raise PageFailure("image_too_large", "image exceeds the decompression limit") from None
        except Exception as exc:  # Pillow raises many types for damaged files
            raise PageFailure("corrupt_file", f"image cannot be decoded ({type(exc).__name__})") from None
        with image:
            try:
                image.seek(row["page_index"])
            except EOFError:
                raise PageFailure("missing_page", f"page {row['page_index']} requested; the file has fewer") from None
            except Exception as exc:  # the page chain breaks before this page: a file cut short
                raise PageFailure("truncated_file", f"file ends before page {row['page_index']} "
                                                    f"({type(exc).__name__})") from None
            width, height = image.size
            if width * height > self.max_image_pixels:  # from the header: refused before any pixel is decoded
                raise PageFailure("image_too_large", f"page is {width}x{height} pixels, limit {self.max_image_pixels}")
            try:
                image.load()
                upright = ImageOps.exif_transpose(image)
                gray = to_gray(upright)
            except Exception as exc:  # the page's pixels are damaged or cut short
                raise PageFailure("corrupt_page", f"page cannot be decoded ({type(exc).__name__})") from None
            dpi = _image_dpi(image.info.get("dpi"), self.dpi)
        scale = min(1.0, self.max_side_px / max(gray.size))
        if scale < 1.0:
            gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))), Image.LANCZOS)
            dpi = max(1, round(dpi * scale))
        return self._with_image(row, gray.tobytes(), gray.width, gray.height, dpi)

    def _render_pdf(self, row: dict[str, Any]) -> dict[str, Any]:
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
                largest = max((w * h for _, _, w, h, *_ in page.get_images(full=True)), default=0)
                if largest > self.max_image_pixels:  # sizes from the image dictionaries: nothing decoded
                    raise PageFailure("image_too_large", f"page holds a {largest}-pixel image, limit {self.max_image_pixels}")
                longest_in = max(page.rect.width, page.rect.height) / 72
                dpi = min(self.dpi, int(self.max_side_px / longest_in)) if longest_in else self.dpi
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
        import pymupdf

        scale = dpi / 72
        lines = []
        for block in page.get_text("dict")["blocks"]:
            for line in block.get("lines", []):
                text = "".join(span["text"] for span in line["spans"]).strip()
                if not text:
                    continue
                # Text comes in the unrotated page's space; the pixmap is the page as shown (/Rotate).
                shown = pymupdf.Rect(line["bbox"]) * page.rotation_matrix
                x0, y0, x1, y1 = (round(v * scale, 1) for v in (shown.x0, shown.y0, shown.x1, shown.y1))
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


def to_gray(image: Any) -> Any:
    """Any Pillow page as 8-bit grayscale on white paper: 16-bit and 32-bit grey scaled (Pillow
    clips them), transparency (grey + alpha, palette with a transparent index) flattened
    onto white, CMYK, YCCK and bilevel through Pillow's own conversions."""
    from PIL import Image

    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        wide = image.convert("I")
        peak = wide.getextrema()[1]
        # 16-bit scans use 0..65535; a 32-bit one may hold anything: scale its range down to 8 bits.
        return wide.point(lambda value: value * (255 / max(peak, 1) if peak > 65535 else 1 / 256)).convert("L")
    if image.mode in ("LA", "PA", "RGBA", "La", "RGBa") or "transparency" in image.info:
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        paper.alpha_composite(image.convert("RGBA"))
        return paper.convert("L")
    return image.convert("L")


def _image_dpi(recorded: Any, default: int) -> int:
    """The resolution the file records, or the configured one when it records none or nonsense."""
    try:
        dpi = int(round(float(recorded[0])))
    except (TypeError, ValueError, IndexError, OverflowError):
        return default
    return dpi if 30 <= dpi <= 2400 else default
