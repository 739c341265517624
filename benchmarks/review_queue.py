"""How fast the review workbench opens a large queue and one of its items.

`python -m benchmarks.review_queue [rows=1000000] [small=10] [repeats=5] [output=DIR]`

Generates an output folder whose review queue, entities and pages tables have `rows`
flagged fields (one entity each, 20 per page, every page the same born-digital PDF so
the page image renders), and one with `small` rows, then times through the real
application (FastAPI TestClient, in-process): loading the queue at start, the first queue
screen, a filtered screen, a screen deep in the queue (keyset paging), an item view and
its page image. Wall and CPU seconds per step (median of `repeats`), CPU time being the
steadier figure on a shared machine. Writes `review_queue.json` and `review_queue.md`.

Requirement: every screen and item of the large queue answers within 1 s (median wall).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REQUIRED_MAX_SECONDS = 1.0
ROWS_PER_PAGE = 20
PAGES_PER_DOCUMENT = 4
PASSWORD = "benchmark-password"
KINDS = ("medication", "lab", "diagnosis", "vital", "allergy")
REASONS = ("low_confidence: 0.52 < 0.75", "dose-metformin: Metformin dose outside 250-2000 mg",
           "uncoded", "lab-potassium-mmoll: Potassium value does not fit mmol/L")


def write_output(root: Path, rows: int, pdf: Path) -> Path:
    """An output folder with `rows` queue items, written in chunks (memory stays flat)."""
    from pipeline.schemas import ENTITIES_TABLE_SCHEMA, PAGES_TABLE_SCHEMA, REVIEW_QUEUE_SCHEMA

    tables = root / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    (root / "fhir").mkdir(exist_ok=True)
    chunk = 100_000
    line = {"line_id": 0, "text": "a line of the page", "confidence": 0.9, "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
            "bbox": [72.0, 100.0, 400.0, 120.0]}
    with pq.ParquetWriter(tables / "review_queue.parquet", REVIEW_QUEUE_SCHEMA) as queue, \
            pq.ParquetWriter(tables / "entities.parquet", ENTITIES_TABLE_SCHEMA) as entities, \
            pq.ParquetWriter(tables / "pages.parquet", PAGES_TABLE_SCHEMA) as pages:
        for start in range(0, rows, chunk):
            ids = range(start, min(rows, start + chunk))
            doc_numbers = [i // (ROWS_PER_PAGE * PAGES_PER_DOCUMENT) for i in ids]
            docs = [f"doc-{n:07d}" for n in doc_numbers]
            facilities = [f"fac-{n % 7}" for n in doc_numbers]
            page_of = [(i // ROWS_PER_PAGE) % PAGES_PER_DOCUMENT for i in ids]
            queue.write_table(pa.table({
                "facility_id": facilities, "document_id": docs, "page_index": page_of,
                "bbox": [[72.0, 100.0, 400.0, 120.0]] * len(ids), "entity_id": [f"ent-{i:08d}" for i in ids],
                "kind": [KINDS[i % len(KINDS)] for i in ids], "field": ["value"] * len(ids),
                "value": [f"{i % 997}" for i in ids], "confidence": [0.5] * len(ids),
                "reason": [REASONS[i % len(REASONS)] for i in ids],
                "priority": [round(((i * 2654435761) % 1_000_003) / 1_000_003, 4) for i in ids]},
                schema=REVIEW_QUEUE_SCHEMA))
            entities.write_table(pa.Table.from_pylist([
                {"facility_id": facility, "document_id": doc, "patient_key": f"{facility}|doc:{doc}",
                 "entity_id": f"ent-{i:08d}", "kind": KINDS[i % len(KINDS)], "text": "a mention", "section": "",
                 "assertion": "present", "page_index": page, "line_ids": [0], "bbox": [72.0, 100.0, 400.0, 120.0],
                 "ocr_confidence": 0.9, "value": f"{i % 997}", "confidence": 0.5, "requires_review": True}
                for i, facility, doc, page in zip(ids, facilities, docs, page_of)], schema=ENTITIES_TABLE_SCHEMA))
            page_rows = [{"facility_id": facility, "document_id": doc, "page_index": page, "source_uri": str(pdf),
                          "sha256": "0" * 64, "media_type": "application/pdf", "image_width": 1275, "image_height": 1650,
                          "dpi": 150, "text_source": "text_layer", "lines": [line],
                          "document_type_predicted": "discharge_summary", "document_type_confidence": 0.9}
                         for i, facility, doc, page in zip(ids, facilities, docs, page_of) if i % ROWS_PER_PAGE == 0]
            pages.write_table(pa.Table.from_pylist(page_rows, schema=PAGES_TABLE_SCHEMA))
    return root


def _timed(fn, repeats: int) -> tuple[float, float, object]:
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def measure(output: Path, users_file: Path, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per step, through the application."""
    import re

    from fastapi.testclient import TestClient

    from pipeline.config import RenderConfig, ReviewConfig
    from pipeline.review.app import Workbench, create_app
    from pipeline.review.queue import QueueFilter
    from pipeline.review.users import UserStore

    steps: dict[str, dict[str, float]] = {}
    # No image cache: every page image request renders the page again (the cold figure).
    wall, cpu, workbench = _timed(lambda: Workbench([output], UserStore(users_file), b"b" * 32,
                                                    ReviewConfig(image_cache_pages=0), RenderConfig(), None), 1)
    steps["load queue at start"] = {"wall_s": wall, "cpu_s": cpu}
    client = TestClient(create_app(workbench), follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf": token})
    first = client.get("/queue")
    item_path = re.search(r'href="(/item/0/[0-9a-f]+)', first.text).group(1)
    deep = max(1, workbench.queue.counts(QueueFilter())["open"] - 100)
    for name, path in (("queue, first screen", "/queue"), ("queue, filtered (kind + reason)", "/queue?kind=lab&reason=uncoded"),
                       ("queue, screen deep in the list", f"/queue?after={deep}"), ("item view", item_path),
                       ("item page image (PNG, rendered)", item_path + "/page.png")):
        wall, cpu, answer = _timed(lambda: client.get(path), repeats)
        assert answer.status_code == 200, (path, answer.status_code)
        steps[name] = {"wall_s": wall, "cpu_s": cpu}
    return steps


def main(argv: list[str]) -> int:
    import tempfile

    from pipeline.review.users import add_user

    options = dict(a.split("=", 1) for a in argv)
    rows, small, repeats = int(options.get("rows", 1_000_000)), int(options.get("small", 10)), int(options.get("repeats", 5))
    results = Path(options.get("output", f"benchmarks/results/review-queue-{time.strftime('%Y%m%d-%H%M%S')}"))
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        pdf = root / "page.pdf"
        _write_pdf(pdf)
        users = root / "users.yaml"
        add_user(users, "bench", "reviewer", PASSWORD)
        figures = {}
        for label, count in (("large", rows), ("small", small)):
            started = time.perf_counter()
            output = write_output(root / label, count, pdf)
            print(f"{label}: {count} rows generated in {time.perf_counter() - started:.1f} s", flush=True)
            figures[label] = {"rows": count, "steps": measure(output, users, repeats)}
    worst = max(s["wall_s"] for name, s in figures["large"]["steps"].items() if name != "load queue at start")
    report = {"rows": rows, "small_rows": small, "repeats": repeats, "figures": figures,
              "requirement": {"max_wall_s_per_screen": REQUIRED_MAX_SECONDS, "worst_wall_s": worst,
                              "passed": worst <= REQUIRED_MAX_SECONDS}}
    (results / "review_queue.json").write_text(json.dumps(report, indent=1))
    lines = [f"# Review workbench: a queue of {rows:,} rows vs {small}", "",
             f"Median of {repeats} requests through the application (in-process TestClient); "
             "CPU seconds are this process's.", "",
             "| step | large wall s | large CPU s | small wall s | small CPU s |", "|---|---|---|---|---|"]
    for name, large in figures["large"]["steps"].items():
        tiny = figures["small"]["steps"][name]
        lines.append(f"| {name} | {large['wall_s']:.3f} | {large['cpu_s']:.3f} | {tiny['wall_s']:.3f} | {tiny['cpu_s']:.3f} |")
    lines += ["", f"Requirement: every screen of the large queue within {REQUIRED_MAX_SECONDS:.1f} s: "
              f"{'passed' if report['requirement']['passed'] else 'FAILED'} (worst {worst:.3f} s)."]
    (results / "review_queue.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"results: {results}")
    return 0 if report["requirement"]["passed"] else 1


def _write_pdf(path: Path) -> None:
    import pymupdf

    document = pymupdf.open()
    for _ in range(PAGES_PER_DOCUMENT):
        page = document.new_page(width=612, height=792)
        for number in range(30):
            page.insert_text((72, 72 + 22 * number), f"Line {number} of a generated benchmark page", fontsize=11)
    document.save(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
