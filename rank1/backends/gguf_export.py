"""A model's weights written back into the GGUF format its base came in, requantized, for llama.cpp.

The embedded models come as GGUF files; a student is such a base with an adapter merged in (in float32, see
:mod:`rank1.students`). :func:`exported` writes the merged weights into a copy of the base's GGUF: every
metadata field (architecture sizes, the tokenizer, the chat template) is copied from the base, and each weight
matrix is quantized from the merged float32 weights with the ``gguf`` package's own quantizers
(``q8_0``: int8 in blocks of 32 with one scale each; ``q4_0``: 4-bit in blocks of 32, with the embedding
matrix, which is also the output layer of the tied Qwen2.5 models, kept at ``q8_0``). Norms and biases stay
float32. The copy is cached beside the model, keyed by its fingerprint (:func:`rank1.models.ensure_cached`).

For the ``llama`` architecture the query and key rows are put back in the order llama.cpp's rotary embedding
expects (its converter permutes them; transformers' GGUF loader undoes that). Only models whose base is a GGUF file can be exported this way (embedded models, students, ``.gguf`` files):
the tokenizer metadata is the base's, so nothing is guessed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

from rank1.loading import ModelError
from rank1.models import REGISTRY, ModelRef, _part_paths, copies_root, ensure_cached, read_manifest
from rank1.students import STUDENTS

WEIGHT_FORMATS = ("q8_0", "q4_0")
"""The values of the llama.cpp backend's ``weight_format`` option."""

GGUF_NAME = "model.gguf"
"""The exported file in its cache folder."""

EXPORT_REVISION = 1
"""Revision of how the copy is written, part of its cache key."""


def base_gguf_parts(model: ModelRef) -> list[Path]:
    """The GGUF file (or its parts, in order) that ``model``'s weights and tokenizer came from.

    Raises:
        ModelError: ``model`` did not come from a GGUF file (a Hugging Face folder or hub id), or its base is
            not installed.
    """
    if model.source == "embedded":
        return _part_paths(REGISTRY[model.name])
    if model.source == "student":
        return _part_paths(REGISTRY[STUDENTS[model.name].base])
    if model.source == "gguf":
        source = str((read_manifest(Path(model.path)) or {}).get("source", ""))
        if source.startswith("gguf:") and Path(source[5:]).is_file():
            return [Path(source[5:])]
    raise ModelError(f"the llamacpp backend runs models that come from a GGUF file (embedded models, students, "
                     f".gguf files); {model.name!r} ({model.source}) does not")


def _joined(parts: list[Path], tmp: Path) -> Path:
    """``parts`` as one file (the first part itself when there is one)."""
    if len(parts) == 1:
        return parts[0]
    out = tmp / "base.gguf.part"
    with out.open("wb") as dst:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, dst, 1 << 24)
    return out


def _merged_tensors(folder: Path) -> Iterator[tuple[str, Any]]:
    """``(name, float32 numpy array)`` for every weight of the Hugging Face folder."""
    import torch
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name).to(torch.float32).numpy()


def _tensor_type(gguf_name: str, array: Any, weight_format: str) -> Any:
    """The GGML type a tensor is written in: float32 for vectors, else the format (``q8_0`` for the
    embedding matrix under ``q4_0``)."""
    import gguf

    if array.ndim < 2 or array.shape[-1] % 32:
        return gguf.GGMLQuantizationType.F32
    if weight_format == "q4_0" and gguf_name not in ("token_embd.weight", "output.weight"):
        return gguf.GGMLQuantizationType.Q4_0
    return gguf.GGMLQuantizationType.Q8_0


def _llama_rope_order(array: Any, heads: int) -> Any:
    """A query or key matrix of a ``llama`` model in the row order llama.cpp's rotary embedding expects (the
    permutation llama.cpp's converter applies, which transformers' GGUF loader undoes)."""
    shape = array.shape
    return array.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def write_gguf(model: ModelRef, weight_format: str, out: Path, tmp: Path) -> None:
    """Write ``model``'s weights, quantized to ``weight_format``, with its base's metadata, to ``out``.

    Raises:
        ModelError: The base is not a GGUF file, or a weight has no GGUF name or a shape the base does not have.
    """
    import gguf

    base = _joined(base_gguf_parts(model), tmp)
    reader = gguf.GGUFReader(str(base))
    arch = str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in reader.tensors}
    blocks = int(reader.fields[f"{arch}.block_count"].contents())
    names = gguf.get_tensor_name_map(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), blocks)
    file_type = {"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[weight_format]
    writer = gguf.GGUFWriter(str(out), arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if field.name == gguf.Keys.General.FILE_TYPE:
            writer.add_file_type(file_type)
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
    kv = reader.fields.get(f"{arch}.attention.head_count_kv")
    heads = {"attn_q": n_head, "attn_k": int(kv.contents()) if kv is not None else n_head}
    tied = json.loads((Path(model.path) / "config.json").read_text()).get("tie_word_embeddings", False)
    for name, array in _merged_tensors(Path(model.path)):
        if name == "lm_head.weight" and tied:
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None or shapes.get(target) != array.shape:
            raise ModelError(f"cannot export {model.name!r} to GGUF: weight {name} {array.shape} has no match in "
                             f"the base ({target}: {shapes.get(target)})")
        kind = target.split(".")[-2]
        if arch == "llama" and kind in heads:
            array = _llama_rope_order(array, heads[kind])
        qtype = _tensor_type(target, array, weight_format)
        data = array if qtype == gguf.GGMLQuantizationType.F32 else gguf.quants.quantize(array, qtype)
        writer.add_tensor(target, data, raw_dtype=None if qtype == gguf.GGMLQuantizationType.F32 else qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if base.parent == tmp:
        base.unlink()


def exported(model: ModelRef, weight_format: str) -> Path:
    """The GGUF copy of ``model`` in ``weight_format`` (made on first use, about a minute for 0.5B).

    The copy is ``<name>.gguf-<format>`` beside the model in its cache with the model's ``config.json`` (the
    cache's completeness check) and is made again when the model's fingerprint changes; it is built in a
    temporary folder and renamed into place, so an interrupted export leaves nothing half-written.

    Raises:
        ModelError: gguf is missing, the model did not come from a GGUF file, or it cannot be written.
    """
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight_format must be {' or '.join(WEIGHT_FORMATS)}, not {weight_format!r}")
    base_gguf_parts(model)  # fail before any work
    name = f"{model.name.replace('/', '--')}.gguf-{weight_format}"

    def build(tmp: Path) -> None:
        from rank1.quiet import quiet_step

        with quiet_step(f"Writing {model.name} as GGUF ({weight_format}, once)"):
            write_gguf(model, weight_format, tmp / GGUF_NAME, tmp)
        shutil.copy(Path(model.path) / "config.json", tmp / "config.json")

    key = f"{model.fingerprint}+r{EXPORT_REVISION}"
    try:
        return ensure_cached(name, copies_root(model), key, f"llamacpp:{model.name}", build, dtype=weight_format,
                             weights=GGUF_NAME) / GGUF_NAME
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"cannot write {model.name!r} ({model.path}) as GGUF: {err}") from err
