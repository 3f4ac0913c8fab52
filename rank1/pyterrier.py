"""rank1 as a PyTerrier transformer: ``bm25 >> Rank1Reranker(...)`` in ``pt.Experiment``.

The transformer takes PyTerrier's result frame (``qid, query, docno, text``, with the first stage's
``score`` or ``rank`` when present) and returns it re-scored and re-ranked by
:meth:`rank1.reranker.Reranker.rerank_run`, so its scores are exactly those of the Python API and the CLI
with the same settings (fusion with the first-stage score included), and the score store can be used.
Only ``pt.Transformer`` and data frames are used: no Terrier index, no Java.

Needs the ``pyterrier`` extra: ``pip install 'rank1[pyterrier]'``.

Example:
    >>> import pyterrier as pt                                              # doctest: +SKIP
    >>> from rank1.pyterrier import Rank1Reranker, qrels_frame, run_frame, topics_frame
    >>> bm25 = pt.Transformer.from_df(run_frame(run, corpus, topics))  # any first stage; here a run file's
    >>> rank1 = Rank1Reranker(mode="direct", store="scores.sqlite")
    >>> pt.Experiment([bm25, bm25 % 20 >> rank1], topics_frame(topics), qrels_frame(qrels), [nDCG @ 10])
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd

try:
    import pyterrier as pt
except ImportError as err:  # pragma: no cover (the message is the point)
    raise ImportError(f"rank1.pyterrier needs PyTerrier: pip install 'rank1[pyterrier]' ({err})") from err

from rank1.records import Document, Query
from rank1.reranker import Reranker
from rank1.store import ScoreStore, default_store_path

__all__ = ["Rank1Reranker", "qrels_frame", "run_frame", "topics_frame"]


class Rank1Reranker(pt.Transformer):
    """Re-scores a PyTerrier result frame with a rank1 :class:`~rank1.reranker.Reranker`.

    Args:
        reranker: A reranker (loaded or not); ``None`` makes one from ``settings``, which loads its model at
            once without a ``store`` and on first use with one (a fully stored experiment never loads it).
            With both, the settings are applied with :meth:`Reranker.replace` (the model is shared).
        depth: Rerank the top ``depth`` documents of each query (by the first-stage score); the rest keep
            their order below, with scores -1, -2, ... as in :meth:`Reranker.rerank_run`. ``None``: all.
        store: Score store: a :class:`~rank1.store.ScoreStore`, a file path, ``True`` for the default
            store (``$RANK1_SCORE_CACHE`` or ``~/.cache/rank1/scores.sqlite``), or ``None`` for none.
        reasoning: Add a ``reasoning`` column (empty for direct judgements and unjudged documents).
        text_field: The column holding the passage text.
        progress: Draw rank1's progress bar.
        **settings: Fields of :class:`~rank1.reranker.RerankerConfig` (``model``, ``mode``, ``budget``...).
    """

    def __init__(self, reranker: Reranker | None = None, *, depth: int | None = None,
                 store: ScoreStore | str | Path | bool | None = None, reasoning: bool = False,
                 text_field: str = "text", progress: bool = False, **settings: Any) -> None:
        if reranker is None:
            reranker = Reranker(load=store is None or store is False, **settings)
        elif settings:
            reranker = reranker.replace(**settings)
        if depth is not None and depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.reranker, self.depth, self.store = reranker, depth, store
        self.reasoning, self.text_field, self.progress = reasoning, text_field, progress

    def __repr__(self) -> str:
        c = self.reranker.config
        return f"Rank1Reranker({self.reranker.model_ref.name}, mode={c.mode}, fusion_weight={c.fusion_weight})"

    @contextlib.contextmanager
    def _open_store(self) -> Iterator[ScoreStore | None]:
        """The store for one call: the one given, or a file opened for the call and closed after it."""
        if isinstance(self.store, ScoreStore) or self.store is None or self.store is False:
            yield self.store or None
            return
        with ScoreStore(default_store_path() if self.store is True else self.store) as store:
            yield store

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Re-score ``inp``: the same rows with ``score`` (P(true), or fused with the first stage as the
        reranker's ``fusion_weight`` says) and ``rank`` replaced, best first within each query.

        Raises:
            pyterrier.validate.InputValidationError: A required column is missing.
            ValueError: A (qid, docno) pair occurs twice, or a qid or docno with two different texts.
        """
        pt.validate.result_frame(inp, extra_columns=["query", self.text_field])
        out = inp.reset_index(drop=True).copy()
        if out.empty:
            out = out.drop(columns=["score", "rank"], errors="ignore")
            out["score"] = pd.Series(dtype="float64")
            if self.reasoning:
                out["reasoning"] = pd.Series(dtype="object")
            out["rank"] = pd.Series(dtype="int64")
            return out
        run, corpus, topics = self._inputs(out)
        depth = self.depth or max(len(docs) for docs in run.values())
        with self._open_store() as store:
            result = self.reranker.rerank_run(run, corpus, topics, depth=depth, progress=self.progress, store=store)
        ranked = {(qid, d.doc_id): (rank, d) for qid, docs in result.run.items() for rank, d in enumerate(docs)}
        rows = [ranked[(q, d)] for q, d in zip(out["qid"].astype(str), out["docno"].astype(str))]
        out = out.drop(columns=["score", "rank"], errors="ignore")
        out["score"] = [d.score for _, d in rows]
        if self.reasoning:
            out["reasoning"] = [d.judgement.reasoning if d.judgement else "" for _, d in rows]
        out["rank"] = [rank + pt.model.FIRST_RANK for rank, _ in rows]  # rerank_run's order: ties to the smaller docno
        order = {qid: i for i, qid in enumerate(dict.fromkeys(out["qid"]))}
        return (out.assign(_order=out["qid"].map(order)).sort_values(["_order", "rank"], kind="stable")
                .drop(columns="_order").reset_index(drop=True))

    def _inputs(self, frame: pd.DataFrame) -> tuple[dict[str, dict[str, float]], dict[str, Document], dict[str, Query]]:
        """The frame as ``rerank_run``'s run, corpus and topics; the first-stage score is ``score``, else
        ``-rank``, else the frame's order within each query."""
        if "score" in frame.columns:
            first = frame["score"].astype(float)
        elif "rank" in frame.columns:
            first = -frame["rank"].astype(float)
        else:
            first = -frame.groupby("qid", sort=False).cumcount().astype(float)
        run: dict[str, dict[str, float]] = {}
        corpus: dict[str, Document] = {}
        topics: dict[str, Query] = {}
        for qid, query, docno, text, score in zip(frame["qid"].astype(str), frame["query"],
                                                  frame["docno"].astype(str), frame[self.text_field], first):
            docs = run.setdefault(qid, {})
            if docno in docs:
                raise ValueError(f"document {docno!r} occurs twice for query {qid!r}")
            docs[docno] = float(score)
            text = "" if pd.isna(text) else str(text)
            _put_once(corpus, docno, Document(docno, text), "document")
            _put_once(topics, qid, Query(qid, str(query)), "query")
        return run, corpus, topics


def _put_once(table: dict[str, Any], key: str, value: Any, what: str) -> None:
    """``table[key] = value``, unless ``key`` holds another value already."""
    if table.setdefault(key, value) != value:
        raise ValueError(f"{what} {key!r} occurs with two different texts")


def topics_frame(topics: Mapping[str, Query]) -> pd.DataFrame:
    """PyTerrier's query frame (``qid, query``) of rank1 topics (the query with its instruction)."""
    return pd.DataFrame({"qid": list(topics), "query": [q.full_text for q in topics.values()]})


def qrels_frame(qrels: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """PyTerrier's qrels frame (``qid, docno, label``) of ``{qid: {docid: relevance}}``."""
    return pd.DataFrame([(q, d, rel) for q, docs in qrels.items() for d, rel in docs.items()],
                        columns=["qid", "docno", "label"])


def run_frame(run: Mapping[str, Mapping[str, float]], corpus: Mapping[str, Document],
              topics: Mapping[str, Query]) -> pd.DataFrame:
    """PyTerrier's result frame (``qid, query, docno, text, score, rank``) of a rank1 run, best first
    within each query (ties to the smaller docid), e.g. for ``pt.Transformer.from_df``.

    Raises:
        KeyError: A query missing from the topics or a document missing from the corpus.
    """
    rows = [(qid, topics[qid].full_text, docid, corpus[docid].full_text, score, rank)
            for qid, docs in run.items()
            for rank, (docid, score) in enumerate(sorted(docs.items(), key=lambda kv: (-kv[1], kv[0])))]
    return pd.DataFrame(rows, columns=["qid", "query", "docno", "text", "score", "rank"])
