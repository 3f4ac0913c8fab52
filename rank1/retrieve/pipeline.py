"""``retrieve``: corpus + topics -> BM25 run file, with an optional reusable index directory.

This is what ``rank1 retrieve --corpus C --topics T --out run.trec -k 100 [--index DIR]`` calls.

Index reuse. When ``index_dir`` holds an index built with the same tokenizer, it is reused if either

1. its manifest records the same corpus file (resolved path, size, modification time, format): the corpus
   is then not even read; or
2. the corpus read now has the same fingerprint (ids and texts) as the indexed one: the corpus is read but
   not re-tokenized, and the manifest's ``source`` is updated (for a copied or touched file).

Otherwise the index is built and written to ``index_dir`` (an older index there is replaced; a directory
that is not an index is never overwritten). The BM25 parameters are applied at load time, so changing
them never needs a rebuild.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rank1.records import Document
from rank1.retrieve import store
from rank1.retrieve.bm25 import BM25Index, BM25Params, corpus_fingerprint
from rank1.retrieve.tokenize import Tokenizer

__all__ = ["RetrieveResult", "corpus_source", "retrieve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrieveResult:
    """What :func:`retrieve` did.

    Attributes:
        n_docs: Documents in the index.
        n_queries: Queries searched (every topic; a topic without hits still counts).
        seconds: Wall-clock seconds in total.
        index_reused: ``True`` when an existing index was loaded instead of tokenizing the corpus.
        index_seconds: Seconds spent reading/building or loading the index.
        search_seconds: Seconds spent searching.
        out_path: The run file written.
    """

    n_docs: int
    n_queries: int
    seconds: float
    index_reused: bool
    index_seconds: float
    search_seconds: float
    out_path: Path

    def __str__(self) -> str:
        how = "reused" if self.index_reused else "built"
        return (
            f"{self.n_docs} docs, {self.n_queries} queries: index {how} in {self.index_seconds:.2f}s, "
            f"search {self.search_seconds:.2f}s, total {self.seconds:.2f}s"
        )


def corpus_source(corpus_path: str | Path, corpus_format: str = "auto") -> dict[str, Any]:
    """Identify a corpus file cheaply: resolved path, size, modification time (ns) and format."""
    p = Path(corpus_path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "format": corpus_format}


def _reusable(index_dir: Path, tokenizer: Tokenizer, source: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a usable index at ``index_dir`` (same tokenizer), else ``None``."""
    if not (index_dir / store.MANIFEST).exists():
        return None
    try:
        man = store.read_manifest(index_dir)
        store.check_tokenizer(man, tokenizer, "this run's tokenizer")
    except (store.IndexFormatError, store.TokenizerMismatchError) as err:
        log.warning("not reusing the index: %s", err)
        return None
    return man


def retrieve(
    corpus_path: str | Path,
    topics_path: str | Path,
    out_path: str | Path,
    k: int = 100,
    index_dir: str | Path | None = None,
    corpus_format: str = "auto",
    topics_format: str = "auto",
    progress: bool = True,
    tokenizer: Tokenizer | None = None,
    params: BM25Params | None = None,
    tag: str = "rank1-bm25",
) -> RetrieveResult:
    """Run BM25 over a corpus for a set of topics and write a TREC run file atomically.

    Args:
        corpus_path: Corpus file, read with ``rank1.io.iter_corpus``.
        topics_path: Topics file, read with ``rank1.io.read_topics``; ``Query.full_text`` is searched.
        out_path: The run file to write (``rank1.io.write_run``).
        k: Hits per query.
        index_dir: Where to keep the index for later runs (see the module docstring); ``None`` keeps it
            in memory only.
        corpus_format: Format name for ``iter_corpus``.
        topics_format: Format name for ``read_topics``.
        progress: Show progress bars.
        tokenizer: Defaults to ``Tokenizer()``.
        params: Defaults to ``BM25Params()`` (BM25Okapi, k1=0.9, b=0.4).
        tag: Run tag (last column of the run file).

    Returns:
        Counts and timings; ``index_reused`` tells whether tokenization was skipped.

    Raises:
        rank1.io.InputError: A bad corpus or topics file.
        rank1.retrieve.store.IndexFormatError: ``index_dir`` is a non-empty directory that is not an index.
    """
    from rank1.io import iter_corpus, read_topics, write_run

    start = time.perf_counter()
    tokenizer = tokenizer or Tokenizer()
    topics = read_topics(topics_path, topics_format)
    t = time.perf_counter()
    source = corpus_source(corpus_path, corpus_format)
    index_path = Path(index_dir) if index_dir is not None else None
    man = _reusable(index_path, tokenizer, source) if index_path is not None else None
    index: BM25Index | None = None
    reused = False
    if man is not None and man.get("source") == source:
        index, reused = BM25Index.load(index_path, tokenizer, params), True  # type: ignore[arg-type]
    else:
        docs: list[Document] = list(iter_corpus(corpus_path, corpus_format))
        if man is not None and man.get("corpus_fingerprint") == corpus_fingerprint(docs):
            store.update_manifest(index_path, source=source)  # type: ignore[arg-type]
            index, reused = BM25Index.load(index_path, tokenizer, params), True  # type: ignore[arg-type]
        else:
            index = BM25Index.build(docs, tokenizer, params, progress=progress, source=source)
            if index_path is not None:
                index.save(index_path)
    index_seconds = time.perf_counter() - t
    log.info("BM25 index %s: %d docs in %.2fs", "reused" if reused else "built", index.n_docs, index_seconds)

    t = time.perf_counter()
    run = index.search_many(topics, k, progress=progress)
    search_seconds = time.perf_counter() - t
    write_run(out_path, run, tag=tag)
    return RetrieveResult(index.n_docs, len(topics), time.perf_counter() - start, reused,
                          index_seconds, search_seconds, Path(out_path))  # fmt: skip
