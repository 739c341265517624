"""Which release files an index is built from: the config's view of a build, kept apart from the
builder so that reading the config (every Ray worker does) does not import LanceDB (issue 15:
about a CPU second per worker process on the 2-core machine)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IndexSources:
    """Which release files go into the index; None leaves a source out.

    The starter LOINC/RxNorm sets and the clinical ICD-10-CM synonyms are always included.
    """

    icd10cm_xml: str | None = "bundled"  # "bundled": the CDC XML inside simple-icd-10-cm
    icd10cm_tsv: str | None = None
    icd10cm_order_file: str | None = None
    rxnorm_rrf_dir: str | None = None
    rxnorm_concepts_tsv: str | None = None
    rxnorm_relations_tsv: str | None = None
    loinc_table: str | None = None
    snomed_rf2: str | None = None  # sct2_Description_Snapshot-en_*.txt, where licensed
    cpt_csv: str | None = None  # code,description CSV, where licensed
    # Index kinds whose billable terms also get sentence embeddings for semantic search;
    # empty: full-text only (about 320 terms/s to embed on two CPU cores).
    embed_kinds: tuple[str, ...] = ()
