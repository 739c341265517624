"""Page images for the item view, rendered on demand by the pipeline's own render stage.

The output folder stores no images: a page is addressed by its pages-table row
(source_uri + page_index) and rendered again at the DPI the run recorded, so the
bounding boxes of the tables (pixels at that DPI) fall where they did. A born-digital
PDF page, which the run read from its text layer, is rasterised the same way.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any

from PIL import Image

from pipeline.config import RenderConfig
from pipeline.stages.render import RenderStage

PNG = "image/png"


class PageImages:
    """Renders pages to PNG, keeping the last few in memory (a reviewer flips between items of one page)."""

    def __init__(self, render: RenderConfig, cache_pages: int = 16):
        self.render = render
        self.cache_pages = cache_pages
        self._cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def png(self, page: dict[str, Any]) -> bytes:
        """The page as PNG; raises LookupError (no PHI in it) when the source cannot be rendered."""
        key = (page["source_uri"], int(page["page_index"]), int(page["dpi"] or self.render.dpi))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = self._render(page, key[2])
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.cache_pages:
                self._cache.popitem(last=False)
        return data

    def _render(self, page: dict[str, Any], dpi: int) -> bytes:
        # min_text_layer_chars beyond any page: the stage rasterises instead of reading text.
        stage = RenderStage(dpi=min(max(dpi, 72), 600), max_side_px=self.render.max_side_px,
                            max_file_bytes=self.render.max_file_bytes, min_text_layer_chars=10**9)
        row = stage.process_page({"facility_id": page["facility_id"], "document_id": page["document_id"],
                                  "page_index": int(page["page_index"]), "source_uri": page["source_uri"],
                                  "media_type": page["media_type"]})
        if row.get("error_stage") or not row.get("image"):
            raise LookupError(f"page cannot be rendered ({row.get('error_type') or 'no image'})")
        image = Image.frombytes("L", (row["image_width"], row["image_height"]), row["image"])
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=False, compress_level=3)
        return buffer.getvalue()
