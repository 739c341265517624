"""Page images for the research copy: re-rendered from the sources, every scrubbed line blacked out.

The output folder keeps no pixels (the image column is dropped after OCR), so the pages are
rendered again from `source_uri` with the render stage, at the run's settings. A line whose
text lost any span to the scrubber is covered whole: its OCR box is the finest box the
pipeline knows, and a part-line box guessed from character offsets could leave a letter of a
name showing. Text the OCR never read (handwriting, stamps) is not covered: a site that
releases images should review them.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Protocol

import pyarrow.parquet as pq

from pipeline.config import RenderConfig
from pipeline.stages.render import RenderStage
from pipeline.store import output_table, table_parts

log = logging.getLogger(__name__)

PAGE_COLUMNS = ["facility_id", "document_id", "page_index", "source_uri", "media_type", "image_width", "image_height",
                "error_stage"]


class _Redactions(Protocol):
    redactions: dict[tuple[str, int], list[list[float]]]

    def pseudonym(self, kind: str, value: str | None) -> str | None: ...


def write_redacted_images(source: Path, target: Path, deid: _Redactions, render: RenderConfig) -> Counter[str]:
    """PNG per processed page under target/<document pseudonym>/; counts written and skipped by reason."""
    from PIL import Image, ImageDraw

    stage = RenderStage(dpi=render.dpi, max_side_px=render.max_side_px, max_file_bytes=render.max_file_bytes,
                        min_text_layer_chars=render.min_text_layer_chars)
    counts: Counter[str] = Counter()
    batches = (b for part in table_parts(output_table(source / "tables", "pages"))
               for b in pq.ParquetFile(part).iter_batches(batch_size=16, columns=PAGE_COLUMNS))
    for batch in batches:
        for row in batch.to_pylist():
            if row["error_stage"] or not row["image_width"]:
                counts["skipped_failed_page"] += 1
                continue
            rendered = stage.process_page(dict(row))
            if rendered.get("error_type") or not rendered.get("image"):
                counts["skipped_source_unreadable"] += 1
                continue
            width, height = rendered["image_width"], rendered["image_height"]
            image = Image.frombytes("L", (width, height), rendered["image"])
            scale_x, scale_y = width / row["image_width"], height / row["image_height"]
            draw = ImageDraw.Draw(image)
            boxes = deid.redactions.get((row["document_id"], row["page_index"]), [])
            for x0, y0, x1, y1 in boxes:
                draw.rectangle([x0 * scale_x - 2, y0 * scale_y - 2, x1 * scale_x + 2, y1 * scale_y + 2], fill=0)
            folder = target / str(deid.pseudonym("document", row["document_id"]))
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"page-{row['page_index']:04d}.png")
            counts["written"] += 1
            counts["boxes_blacked_out"] += len(boxes)
    log.info("research images: %s", dict(counts))
    return counts
