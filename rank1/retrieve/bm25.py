"""A BM25 index over a tokenized corpus, scored by ``rank_bm25``.

The index keeps the corpus as token ids (a flat ``int32`` array plus per-document offsets) and a vocabulary
(see :mod:`rank1.retrieve.store` for the files). From these it builds the ``rank_bm25`` model
(``BM25Okapi`` with Anserini's k1=0.9, b=0.4 by default) and a small inverted index that only selects a
query's *candidates*: the documents containing at least one query term. The candidates are scored by
``rank_bm25``'s own ``get_batch_scores`` (for BM25Okapi and BM25L term by term on the term's postings, as
documents without the term get 0 from it), which gives the same scores as ``get_scores`` on those documents
while skipping the rest of the corpus; documents without any query term are never returned. Top-k
selection uses ``numpy.partition``.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rank_bm25
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from rank1.progress import make_progress
from rank1.records import Document, Query
from rank1.retrieve import store
from rank1.retrieve.tokenize import Tokenizer

__all__ = ["BM25Index", "BM25Params", "corpus_fingerprint", "progress_iter"]

_VARIANTS: dict[str, type[rank_bm25.BM25]] = {
    "okapi": rank_bm25.BM25Okapi,
    "bm25l": rank_bm25.BM25L,
    "bm25plus": rank_bm25.BM25Plus,
}
_ALIASES = {"bm25okapi": "okapi", "l": "bm25l", "plus": "bm25plus", "bm25+": "bm25plus"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class BM25Params:
    """Which ``rank_bm25`` class scores, and with which parameters.

    Attributes:
        variant: ``"okapi"`` (``BM25Okapi``), ``"bm25l"`` (``BM25L``) or ``"bm25plus"`` (``BM25Plus``);
            rank_bm25's class names are accepted too.
        k1: Term-frequency saturation; 0.9 is the Anserini/Pyserini default.
        b: Length normalisation; 0.4 is the Anserini/Pyserini default.
        epsilon: ``BM25Okapi`` only: negative idf values are raised to ``epsilon * mean idf``.
        delta: ``BM25L``/``BM25Plus`` only; ``None`` keeps rank_bm25's defaults (0.5 and 1).
    """

    variant: str = "okapi"
    k1: float = 0.9
    b: float = 0.4
    epsilon: float = 0.25
    delta: float | None = None

    def __post_init__(self) -> None:
        name = _ALIASES.get(self.variant.lower(), self.variant.lower())
        if name not in _VARIANTS:
            raise ValueError(f"unknown BM25 variant {self.variant!r}; use one of {sorted(_VARIANTS)}")
        object.__setattr__(self, "variant", name)

    def make_model(self, corpus: list[list[str]]) -> rank_bm25.BM25:
        """Build the ``rank_bm25`` model of a tokenized corpus."""
        kwargs: dict[str, float] = {"k1": self.k1, "b": self.b}
        if self.variant == "okapi":
            kwargs["epsilon"] = self.epsilon
        elif self.delta is not None:
            kwargs["delta"] = self.delta
        return _VARIANTS[self.variant](corpus, **kwargs)


def _fingerprint_update(h: Any, doc: Document) -> None:
    h.update(f"{doc.doc_id}\x1f{doc.full_text}\x1e".encode())


def corpus_fingerprint(docs: Iterable[Document]) -> str:
    """SHA-256 over the ids and ``full_text`` of the documents, in order: everything an index depends on."""
    h = hashlib.sha256()
    for d in docs.values() if isinstance(docs, Mapping) else docs:
        _fingerprint_update(h, d)
    return h.hexdigest()


def progress_iter(items: Iterable[_T], description: str, total: int | None, enabled: bool) -> Iterator[_T]:
    """Yield ``items``, showing a transient rich progress bar when ``enabled``."""
    if not enabled:
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with make_progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


@dataclass(eq=False)
class BM25Index:
    """An in-memory BM25 index; make one with :meth:`build` or :meth:`load`.

    Attributes:
        doc_ids: Document ids in index order.
        vocab: The terms; ``tokens`` holds positions in this list.
        tokens: Token ids of all documents, concatenated (``int32``).
        offsets: ``n_docs + 1`` offsets into ``tokens``.
        tokenizer: The tokenizer the corpus was analysed with; queries are analysed with it too.
        params: BM25 variant and parameters.
        fingerprint: :func:`corpus_fingerprint` of the indexed documents.
        source: Where the corpus came from (free-form, saved in the manifest).
        model: The ``rank_bm25`` model (derived).
    """

    doc_ids: list[str]
    vocab: list[str]
    tokens: np.ndarray
    offsets: np.ndarray
    tokenizer: Tokenizer
    params: BM25Params = field(default_factory=BM25Params)
    fingerprint: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    model: rank_bm25.BM25 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.doc_ids)
        if n == 0:
            raise ValueError("cannot index an empty corpus")
        if len(set(self.doc_ids)) != n:
            raise ValueError("the corpus has duplicate document ids")
        if len(self.tokens) == 0:
            raise ValueError("the corpus has no tokens after analysis; nothing to index")
        self.term_ids = {t: i for i, t in enumerate(self.vocab)}
        terms = np.asarray(self.vocab, dtype=object)[self.tokens].tolist()
        bounds = self.offsets.tolist()
        self.model = self.params.make_model([terms[s:e] for s, e in zip(bounds, bounds[1:])])
        self.model.doc_len = np.asarray(self.model.doc_len)  # rank_bm25 converts it on every call otherwise
        # Inverted index, CSR (term id -> ascending doc indices); it only selects candidates.
        doc_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.offsets))
        pairs = np.unique(self.tokens.astype(np.int64) * n + doc_of)
        self._post_docs = (pairs % n).astype(np.int64)
        self._post_ptr = np.searchsorted(pairs // n, np.arange(len(self.vocab) + 1))
        self._id_rank = np.argsort(np.argsort(np.asarray(self.doc_ids, dtype=object), kind="stable"))

    @property
    def n_docs(self) -> int:
        """Number of indexed documents."""
        return len(self.doc_ids)

    @classmethod
    def build(
        cls,
        docs: Iterable[Document] | Mapping[str, Document],
        tokenizer: Tokenizer | None = None,
        params: BM25Params | None = None,
        progress: bool = True,
        source: Mapping[str, Any] | None = None,
    ) -> BM25Index:
        """Tokenize a corpus (``Document.full_text``) and index it.

        Args:
            docs: The documents, or a mapping of id to document (as ``rank1.io.read_corpus`` returns).
            tokenizer: Defaults to ``Tokenizer()``.
            params: Defaults to ``BM25Params()``.
            progress: Show a progress bar.
            source: Where the corpus came from, stored in the manifest.

        Raises:
            ValueError: The corpus is empty, has duplicate ids, or no tokens at all.
        """
        tokenizer = tokenizer or Tokenizer()
        if isinstance(docs, Mapping):
            docs = docs.values()
        total = len(docs) if hasattr(docs, "__len__") else None  # type: ignore[arg-type]
        doc_ids: list[str] = []
        term_ids: dict[str, int] = {}
        flat = array("i")  # token ids of all documents
        lengths: list[int] = []
        hasher = hashlib.sha256()
        batch: list[str] = []

        def flush() -> None:
            for toks in tokenizer.tokenize_many(batch):
                flat.extend([term_ids.setdefault(t, len(term_ids)) for t in toks])
                lengths.append(len(toks))
            batch.clear()

        for d in progress_iter(docs, "BM25 indexing", total, progress):
            doc_ids.append(d.doc_id)
            _fingerprint_update(hasher, d)
            batch.append(d.full_text)
            if len(batch) >= 4096:
                flush()
        flush()
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.asarray(flat, dtype=np.int32)
        return cls(doc_ids, list(term_ids), tokens, offsets, tokenizer, params or BM25Params(),
                   hasher.hexdigest(), dict(source or {}))  # fmt: skip

    def score_tokens(self, query_tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Score, with rank_bm25, the documents containing at least one of ``query_tokens``.

        Args:
            query_tokens: Analysed query terms; repeated terms count repeatedly, as in rank_bm25.

        Returns:
            ``(doc_indices, scores)``: ascending candidate indices and their scores.
        """
        ids = {t: self.term_ids[t] for t in query_tokens if t in self.term_ids}
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        ptr, post = self._post_ptr, self._post_docs
        postings = {t: post[ptr[i] : ptr[i + 1]] for t, i in ids.items()}
        cand = np.unique(np.concatenate(list(postings.values())))
        if self.params.variant == "bm25plus":  # tf=0 still scores idf*delta: score all candidates at once
            return cand, np.asarray(self.model.get_batch_scores(query_tokens, cand.tolist()), dtype=np.float64)
        # BM25Okapi/BM25L give 0 where tf=0, so score each term on its own postings only, and add the
        # contributions in query order, as get_scores does: the sums are bit-identical to get_scores.
        parts = {t: np.asarray(self.model.get_batch_scores([t], p.tolist())) for t, p in postings.items()}
        scores = np.zeros(self.n_docs)
        for t in query_tokens:
            if t in parts:
                scores[postings[t]] += parts[t]
        return cand, scores[cand]

    def search_tokens(self, query_tokens: list[str], k: int = 100) -> list[tuple[str, float]]:
        """Top ``k`` for already analysed query terms: ``(doc_id, score)``, best first, ties by doc id."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        cand, scores = self.score_tokens(query_tokens)
        if len(cand) > k:
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = np.flatnonzero(scores >= kth)
            cand, scores = cand[keep], scores[keep]
        order = np.lexsort((self._id_rank[cand], -scores))[:k]
        return [(self.doc_ids[i], s) for i, s in zip(cand[order].tolist(), scores[order].tolist())]

    def search(self, query_text: str, k: int = 100) -> list[tuple[str, float]]:
        """Retrieve the top ``k`` documents for a query string.

        Args:
            query_text: Raw text, analysed with the index's tokenizer.
            k: Maximum number of hits.

        Returns:
            ``(doc_id, score)`` pairs, best first, ties by doc id; empty when no query term is indexed.
        """
        return self.search_tokens(self.tokenizer.tokenize(query_text), k)

    def search_many(
        self, queries: Mapping[str, Query], k: int = 100, progress: bool = True
    ) -> dict[str, dict[str, float]]:
        """Retrieve the top ``k`` documents for each query's ``full_text``.

        Args:
            queries: Query id to query.
            k: Maximum hits per query.
            progress: Show a progress bar.

        Returns:
            A run, query id to {doc id: score}; a query without any indexed term maps to ``{}``.
        """
        qids = list(queries)
        analysed = self.tokenizer.tokenize_many(queries[q].full_text for q in qids)
        items = progress_iter(zip(qids, analysed), "BM25 search", len(qids), progress)
        return {qid: dict(self.search_tokens(toks, k)) for qid, toks in items}

    def save(self, path: str | Path) -> Path:
        """Write the index to directory ``path`` (replacing an older index there as a whole).

        Raises:
            rank1.retrieve.store.IndexFormatError: ``path`` is a non-empty directory that is not an index.
        """
        manifest = {
            "tokenizer_signature": self.tokenizer.signature(),
            "tokenizer": store.tokenizer_config(self.tokenizer),
            "bm25": asdict(self.params),
            "n_docs": self.n_docs,
            "n_tokens": len(self.tokens),
            "vocab_size": len(self.vocab),
            "corpus_fingerprint": self.fingerprint,
            "source": self.source,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return store.write_index(path, store.StoredIndex(manifest, self.doc_ids, self.vocab, self.tokens, self.offsets))

    @classmethod
    def load(cls, path: str | Path, tokenizer: Tokenizer | None = None, params: BM25Params | None = None) -> BM25Index:
        """Load an index written by :meth:`save`; the corpus is not re-tokenized.

        Args:
            path: The index directory.
            tokenizer: The tokenizer for queries; it must match the stored signature. ``None`` rebuilds the
                stored configuration.
            params: Override the stored BM25 parameters (they do not depend on the tokens).

        Raises:
            rank1.retrieve.store.IndexFormatError: Not a complete index.
            rank1.retrieve.store.TokenizerMismatchError: The tokenizer's signature differs.
        """
        man = store.read_manifest(path)
        if tokenizer is None:
            tokenizer = store.tokenizer_from_manifest(man)
        else:
            store.check_tokenizer(man, tokenizer, "the given tokenizer")
        raw = store.read_index(path)
        params = params or BM25Params(**raw.manifest["bm25"])
        return cls(raw.doc_ids, raw.vocab, raw.tokens, raw.offsets, tokenizer, params,
                   raw.manifest.get("corpus_fingerprint", ""), raw.manifest.get("source") or {})  # fmt: skip
