"""A recognition model that scores only the characters of Latin-script pages (`ocr.rec_charset=latin`).

The PP-OCRv6 small recognition head is a MatMul + Softmax over 18,710 classes (CJK, Latin,
Greek, Cyrillic, symbols) at every time step: with OpenVINO bf16 it is about a quarter of the
model's time on a text line (FullyConnected + Softmax in its per-layer profile), and its output
(time steps x 18,710 floats, ~12 MB for a long line) is copied and reduced by argmax on every call. Medical records in Latin script never
need the CJK columns, so this module keeps the head's columns of the characters below and
drops the rest: the blank, the characters kept and the space keep their weights, the softmax
runs over them alone. A line's best character among those kept is what the full head would
pick whenever that character is a Latin one; a CJK look-alike the full head would pick is
replaced by the best Latin one (README, OCR engine options, measures both).

Built once beside the full dir, stamped with the source's sha256 and the kept ranges.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import yaml

from pipeline.manifest import file_sha256
from pipeline.ocr_models import CONFIG_FILE, MODEL_FILE, OcrModelDirs, _atomic_write

logger = logging.getLogger(__name__)

CHARSETS = ("all", "latin")
STAMP_FILE = "pruned_from.json"
# Code point ranges kept by `latin`: Basic Latin to Latin Extended-B, IPA, spacing and combining
# marks, Greek (units and lab names: µ, α, β); punctuation, super/subscripts, currency, letterlike,
# number forms, arrows, mathematical operators (≤ ≥ ±), technical, box and geometric shapes
# (check boxes), symbols and dingbats (✓ ✗). CJK, Cyrillic, Arabic, Indic and Hangul are dropped.
LATIN_RANGES = ((0x0000, 0x03FF), (0x2000, 0x2BFF))


def charset_rec_dir(dirs: OcrModelDirs, charset: str) -> Path:
    """Where the recognition dir of `dirs` restricted to `charset` lives: beside the full one."""
    return dirs.rec_model_dir.with_name(f"{dirs.rec_model_dir.name}_{charset}")


def kept_characters(characters: list[str]) -> list[int]:
    """Indices into `characters` (the rec dictionary) of the characters in LATIN_RANGES."""
    return [index for index, character in enumerate(characters)
            if len(character) == 1 and any(low <= ord(character) <= high for low, high in LATIN_RANGES)]


def ensure_charset_rec_dir(dirs: OcrModelDirs, charset: str) -> Path:
    """The recognition dir for `charset`: the full one for "all", else built (once) from it."""
    if charset not in CHARSETS:
        raise ValueError(f"ocr rec_charset must be one of {CHARSETS}, got {charset!r}")
    if charset == "all":
        return dirs.rec_model_dir
    target = charset_rec_dir(dirs, charset)
    source = dirs.rec_model_dir / MODEL_FILE
    stamp = {"source_sha256": file_sha256(source), "config_sha256": file_sha256(dirs.rec_model_dir / CONFIG_FILE),
             "charset": charset, "ranges": [list(r) for r in LATIN_RANGES]}
    stamp_path = target / STAMP_FILE
    if (target / MODEL_FILE).is_file() and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        return target
    logger.info("building the %s-only OCR recognition model in %s", charset, target)
    config = yaml.safe_load((dirs.rec_model_dir / CONFIG_FILE).read_text("utf-8"))
    characters = config["PostProcess"]["character_dict"]
    keep = kept_characters(characters)
    config["PostProcess"]["character_dict"] = [characters[i] for i in keep]
    target.mkdir(parents=True, exist_ok=True)
    _atomic_write(target / MODEL_FILE, lambda tmp: prune_rec_head(source, tmp, keep, len(characters)))
    _atomic_write(target / CONFIG_FILE, lambda tmp: tmp.write_text(
        yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8"))
    _atomic_write(stamp_path, lambda tmp: tmp.write_text(json.dumps(stamp)))
    return target


def prune_rec_head(source: Path, output: Path, keep: list[int], dictionary_size: int) -> None:
    """Write the rec graph at `source` with its output head cut to blank + `keep` + space.

    Output class 0 is CTC's blank, class i + 1 the dictionary's character i, and the last one
    the space PaddleX appends: the head's MatMul weight and bias are sliced to those columns.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {init.name: init for init in graph.initializer}
    node = producers[graph.output[0].name]
    if node.op_type != "Softmax":
        raise ValueError(f"{source}: the output is made by {node.op_type}, not the Softmax of a PP-OCR rec head")
    head = [node]
    node = producers[node.input[0]]
    while node.op_type == "Identity":
        head.append(node)
        node = producers[node.input[0]]
    add = node
    matmul = producers[add.input[0]]
    if add.op_type != "Add" or matmul.op_type != "MatMul" or add.input[1] not in initializers \
            or matmul.input[1] not in initializers:
        raise ValueError(f"{source}: no MatMul + bias Add before the output Softmax")
    classes = np.array([0, *[i + 1 for i in keep], dictionary_size + 1])
    weight = numpy_helper.to_array(initializers[matmul.input[1]])
    bias = numpy_helper.to_array(initializers[add.input[1]])
    if weight.shape[-1] != dictionary_size + 2 or bias.shape[-1] != dictionary_size + 2:
        raise ValueError(f"{source}: head has {weight.shape[-1]} classes, dictionary {dictionary_size} + 2")
    for name, array in ((matmul.input[1], weight[..., classes]), (add.input[1], bias[..., classes])):
        initializers[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), name))
    head_tensors = {out for n in (*head, add, matmul) for out in n.output}
    # Shapes recorded for the head's tensors name the old class count: drop them, ONNX infers them again.
    kept_info = [info for info in graph.value_info if info.name not in head_tensors]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    graph.output[0].type.tensor_type.shape.dim[-1].dim_value = len(classes)
    for prop in model.metadata_props:
        if prop.key == "character":
            characters = prop.value.split("\n")
            prop.value = "\n".join(characters[i] for i in keep)
    onnx.save(model, str(output))
