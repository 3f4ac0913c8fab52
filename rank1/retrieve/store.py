"""The on-disk format of a BM25 index: plain JSON and ``.npy`` files, no pickle.

An index directory holds::

    manifest.json   format, tokenizer signature and config, BM25 parameters, counts, corpus fingerprint,
                    and where the corpus came from (path, size, mtime) when known
    doc_ids.json    the document ids, in index order
    vocab.json      the terms; a term's id is its position in this list
    tokens.npy      int32 token ids of all documents, concatenated, in text order
    offsets.npy     int64, n_docs + 1 offsets into tokens.npy

A directory is replaced as a whole (written next to the target, then renamed), so a reader sees either the
old index or the new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rank1.io.atomic import atomic_folder, atomic_write
from rank1.retrieve.tokenize import Tokenizer

__all__ = [
    "FORMAT",
    "IndexFormatError",
    "StoredIndex",
    "TokenizerMismatchError",
    "read_index",
    "read_manifest",
    "tokenizer_config",
    "tokenizer_from_manifest",
    "write_index",
]

FORMAT = "rank1-bm25-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class TokenizerMismatchError(ValueError):
    """An index is used with a tokenizer whose signature differs from the one it was built with."""


class IndexFormatError(ValueError):
    """An index directory is missing, incomplete, or not written by this module."""


@dataclass
class StoredIndex:
    """The raw contents of an index directory."""

    manifest: dict[str, Any]
    doc_ids: list[str]
    vocab: list[str]
    tokens: np.ndarray
    offsets: np.ndarray


def tokenizer_config(tok: Tokenizer) -> dict[str, Any]:
    """The JSON form of a tokenizer's configuration (custom stop lists as sorted lists)."""
    stop = tok.stopwords if isinstance(tok.stopwords, str) or tok.stopwords is None else sorted(tok.stopwords)
    return {"lowercase": tok.lowercase, "stopwords": stop, "stemmer": tok.stemmer, "min_length": tok.min_length}


def tokenizer_from_manifest(manifest: dict[str, Any]) -> Tokenizer:
    """Rebuild the tokenizer an index was built with.

    Raises:
        TokenizerMismatchError: This version of :class:`Tokenizer` no longer produces the stored signature.
    """
    cfg = dict(manifest["tokenizer"])
    if isinstance(cfg["stopwords"], list):
        cfg["stopwords"] = frozenset(cfg["stopwords"])
    tok = Tokenizer(**cfg)
    check_tokenizer(manifest, tok, "the stored configuration")
    return tok


def check_tokenizer(manifest: dict[str, Any], tok: Tokenizer, where: str) -> None:
    """Raise :class:`TokenizerMismatchError` unless ``tok`` has the signature stored in ``manifest``."""
    stored = manifest["tokenizer_signature"]
    if tok.signature() != stored:
        raise TokenizerMismatchError(
            f"the index was built with tokenizer {stored!r}, but {where} gives {tok.signature()!r}; "
            "rebuild the index or query it with the same tokenizer"
        )


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` of an index directory.

    Raises:
        IndexFormatError: Missing, unreadable, or not this format and version.
    """
    file = Path(path) / MANIFEST
    try:
        man = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise IndexFormatError(f"{path}: not a BM25 index ({MANIFEST}: {err})") from err
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise IndexFormatError(f"{path}: {MANIFEST} is not a {FORMAT} manifest")
    if man.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(f"{path}: index format version {man.get('format_version')}, expected {FORMAT_VERSION}")
    return man


def write_index(path: str | Path, stored: StoredIndex) -> Path:
    """Write an index directory, replacing an older index at ``path`` as a whole.

    Raises:
        IndexFormatError: ``path`` exists, is not empty and is not an index (it is never overwritten).
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        read_manifest(path)  # refuse to replace something that is not ours
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **stored.manifest}
    with atomic_folder(path) as tmp:
        np.save(tmp / "tokens.npy", np.ascontiguousarray(stored.tokens, dtype=np.int32), allow_pickle=False)
        np.save(tmp / "offsets.npy", np.ascontiguousarray(stored.offsets, dtype=np.int64), allow_pickle=False)
        (tmp / "doc_ids.json").write_text(json.dumps(stored.doc_ids, ensure_ascii=False), encoding="utf-8")
        (tmp / "vocab.json").write_text(json.dumps(stored.vocab, ensure_ascii=False), encoding="utf-8")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def update_manifest(path: str | Path, **changes: Any) -> None:
    """Change top-level manifest fields in place (atomically), e.g. a new ``source``."""
    man = read_manifest(path)
    man.update(changes)
    with atomic_write(Path(path) / MANIFEST) as f:
        f.write(json.dumps(man, indent=2, ensure_ascii=False))


def read_index(path: str | Path) -> StoredIndex:
    """Read and cross-check all files of an index directory.

    Raises:
        IndexFormatError: A file is missing or unreadable, or the files disagree with the manifest.
    """
    path = Path(path)
    man = read_manifest(path)
    try:
        tokens = np.load(path / "tokens.npy", allow_pickle=False)
        offsets = np.load(path / "offsets.npy", allow_pickle=False)
        doc_ids = json.loads((path / "doc_ids.json").read_text(encoding="utf-8"))
        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise IndexFormatError(f"{path}: cannot read the index files: {err}") from err
    consistent = (
        tokens.ndim == offsets.ndim == 1
        and len(doc_ids) == man.get("n_docs") == len(offsets) - 1
        and len(tokens) == man.get("n_tokens") == int(offsets[-1])
        and len(vocab) == man.get("vocab_size")
        and (len(tokens) == 0 or 0 <= int(tokens.min()) <= int(tokens.max()) < len(vocab))
        and bool(np.all(np.diff(offsets) >= 0))
    )
    if not consistent:
        raise IndexFormatError(f"{path}: the index files disagree with {MANIFEST}; rebuild the index")
    return StoredIndex(man, doc_ids, vocab, tokens, offsets)
