"""The collections of the test-time-compute curve (``benchmarks.ttc``): candidates, units and per-unit quality.

Every collection is cut into *units*, what its quality is averaged over and what the bootstrap resamples: a
query for the ranked collections (nDCG@10), a NevIR pair (paired accuracy: two queries, two passages, four
judgements) or an answer-vs-trap item (ExcluIR, BoolQuestions NOT: the answer passage strictly above the trap,
two judgements). A unit counts only once every judgement it needs is there, so a partly judged point is the
quality of its complete units, with its coverage beside it.

The first-stage scores are BM25 throughout (rank1's BM25, k1=0.9 and b=0.4 as in ``benchmarks.bm25_compare``):
the candidates of DL19/DL20 (BM25 top-100 files) and Vaswani (retrieved here), and for the two-passage sets a
BM25 index over the set's own passages, so that every collection has a BM25 line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Container, Iterable, Mapping, Sequence

from benchmarks._common import NEVIR_TEST, SHARED, load_trec_dl, top
from benchmarks.student import msmarco_dev, per_query
from rank1.metrics import paired_accuracy, read_nevir_pairs, read_trap_items, trap_accuracy
from rank1.records import Document, Query

Run = dict[str, dict[str, float]]
Pair = tuple[str, str]
"""A (query id, document id) pair: one judgement."""

RANKED = ("dl19", "dl20", "vaswani")
PAIRED = ("nevir",)
TRAPS = {"excluir": "excluir_manual_1000_seed42.jsonl", "boolq": "boolquestions_not_323.jsonl"}
NAMES = (*RANKED[:2], *PAIRED, *TRAPS, RANKED[2])
"""The test collections, in the order they are run."""
DEV = "msmarco-dev"
BM25_K1, BM25_B = 0.9, 0.4


@dataclass
class Collection:
    """One collection of the curve.

    Attributes:
        name: Its name (``dl19``, ``nevir``, ``msmarco-dev``...).
        metric: What ``values`` measures.
        run: ``{qid: {docid: BM25 score}}``: the candidates to judge.
        corpus: The passages.
        topics: The queries.
        units: ``{unit: the (qid, docid) pairs it needs}``; passages with empty text are never judged (they rank
            last), so they are in no unit.
        values: Per-unit quality of a scored run (``{qid: {docid: score}}``) over the units it holds.
    """

    name: str
    metric: str
    run: Run
    corpus: dict[str, Document]
    topics: dict[str, Query]
    units: dict[str, list[Pair]]
    values: Callable[[Run], dict[str, float]]

    @property
    def pairs(self) -> list[Pair]:
        """Every judgement the collection needs, each once, in run order."""
        return list(dict.fromkeys(p for pairs in self.units.values() for p in pairs))

    def candidates(self, qids: Container[str] | None = None) -> Run:
        """The first-stage run of the pairs it needs (of the queries in ``qids``; all without)."""
        out: Run = {}
        for q, d in self.pairs:
            if qids is None or q in qids:
                out.setdefault(q, {})[d] = self.run[q][d]
        return out

    def scored(self, scores: Mapping[Pair, float], units: Iterable[str]) -> Run:
        """The run of ``units`` scored with ``scores`` (every pair of those units must have one); a candidate
        with empty text scores -1 (below every P(true))."""
        out: Run = {}
        for unit in units:
            for qid, docid in self.units[unit]:
                out.setdefault(qid, {})[docid] = scores[(qid, docid)]
        for qid, docs in out.items():
            docs.update({d: -1.0 for d in self.run[qid] if d not in docs})
        return out

    def bm25(self) -> dict[str, float]:
        """BM25's per-unit quality (the first-stage scores as they are)."""
        return self.values(self.run)


def _judgeable(run: Run, corpus: Mapping[str, Document], qid: str, docs: Iterable[str]) -> list[Pair]:
    return [(qid, d) for d in docs if d in run[qid] and corpus[d].full_text.strip()]


def ranked(name: str, run: Run, corpus: dict[str, Document], topics: dict[str, Query],
           qrels: dict[str, dict[str, int]], metric: str = "nDCG@10") -> Collection:
    """A ranked collection: one unit per query, nDCG@10 against ``qrels``."""
    units = {q: _judgeable(run, corpus, q, docs) for q, docs in run.items()}
    return Collection(name, metric, run, corpus, topics, units, lambda r: per_query(r, qrels))


def bm25_scores(candidates: Mapping[str, Iterable[str]], corpus: Mapping[str, Document],
                topics: Mapping[str, Query]) -> Run:
    """BM25 scores of each query's candidates, from one index over all the candidates' passages (0.0 where a
    passage shares no term with the query)."""
    from rank1.retrieve import BM25Index, BM25Params

    docs = {d: corpus[d] for ds in candidates.values() for d in ds}
    index = BM25Index.build(docs, params=BM25Params(k1=BM25_K1, b=BM25_B), progress=False)
    out: Run = {}
    for qid, ds in candidates.items():
        hits = dict(index.search(topics[qid].full_text, k=index.n_docs))
        out[qid] = {d: float(hits.get(d, 0.0)) for d in ds}
    return out


def trec_dl(name: str, queries: int, depth: int) -> Collection:
    """DL19 or DL20: BM25 top ``depth`` of the first ``queries`` judged queries (0: all)."""
    c = load_trec_dl(name, queries)
    run = {q: {d: c.run[q][d] for d in top(docs, depth)} for q, docs in c.run.items()}
    return ranked(name, run, c.corpus, c.topics, c.qrels)


def vaswani(queries: int, depth: int) -> Collection:
    """Vaswani: rank1's BM25 top ``depth`` over the whole corpus, the first ``queries`` judged queries."""
    from benchmarks.bm25_compare import COLLECTIONS
    from rank1.io import read_corpus, read_qrels, read_topics
    from rank1.retrieve import BM25Index, BM25Params

    corpus_file, topics_file, topics_fmt, qrels_file, qrels_fmt = COLLECTIONS["vaswani"]
    corpus = read_corpus(SHARED / corpus_file)
    qrels = read_qrels(SHARED / qrels_file, qrels_fmt)
    topics = {q: t for q, t in read_topics(SHARED / topics_file, topics_fmt).items() if q in qrels}
    topics = dict(list(topics.items())[:queries]) if queries else topics
    index = BM25Index.build(corpus, params=BM25Params(k1=BM25_K1, b=BM25_B), progress=False)
    return ranked("vaswani", index.search_many(topics, depth, progress=False), corpus, topics, qrels)


def nevir(pairs: int, path: Path = NEVIR_TEST, name: str = "nevir") -> Collection:
    """NevIR: the first ``pairs`` test pairs (0: all) of ``path``, one unit each (both queries right: 1, else
    0); ``path=NEVIR_TRAIN, name="nevir-train"`` gives the 50 train pairs, a dev set."""
    topics, corpus, items = read_nevir_pairs(path)
    items = items[:pairs] if pairs else items
    run = bm25_scores({q: (da, db) for qa, da, qb, db in items for q in (qa, qb)}, corpus, topics)
    units = {p.query_a: [*_judgeable(run, corpus, p.query_a, (p.doc_a, p.doc_b)),
                         *_judgeable(run, corpus, p.query_b, (p.doc_a, p.doc_b))] for p in items}
    by_unit = {p.query_a: p for p in items}
    return Collection(name, "paired_accuracy", run, corpus, topics, units,
                      lambda r: {u: paired_accuracy(r, [by_unit[u]]) for u in _held(r, units)})


def traps(name: str, items_limit: int) -> Collection:
    """ExcluIR (``excluir``) or BoolQuestions NOT (``boolq``): the first ``items_limit`` items (0: all), one
    unit each (answer passage strictly above the trap: 1, else 0)."""
    topics, corpus, items = read_trap_items(SHARED / "excluir_boolq" / TRAPS[name])
    items = items[:items_limit] if items_limit else items
    run = bm25_scores({t.query: (t.answer, t.trap) for t in items}, corpus, topics)
    units = {t.query: _judgeable(run, corpus, t.query, (t.answer, t.trap)) for t in items}
    by_unit = {t.query: t for t in items}
    return Collection(name, "trap_accuracy", run, corpus, topics, units,
                      lambda r: {u: trap_accuracy(r, [by_unit[u]]) for u in _held(r, units)})


def _held(run: Run, units: Mapping[str, Sequence[Pair]]) -> list[str]:
    """The units whose queries are all in ``run``."""
    return [u for u, pairs in units.items() if pairs and all(q in run for q, _ in pairs)]


def dev(queries: int, depth: int) -> Collection:
    """The MS MARCO dev split (held-out queries of ``distill.msmarco``, never a test collection): BM25 top
    ``depth`` of the first ``queries`` queries with a labelled positive, nDCG@10 on its sparse labels."""
    c = msmarco_dev(queries)
    run = {q: {d: c["run"][q][d] for d in top(docs, depth)} for q, docs in c["run"].items()}
    return ranked(DEV, run, c["corpus"], c["topics"], c["qrels"])


def load(names: Sequence[str], limit: int = 0, depth: int = 10, nevir_pairs: int = 300, excluir_items: int = 300,
         boolq_items: int = 0, dev_queries: int = 30) -> dict[str, Collection]:
    """The collections of ``names`` (in :data:`NAMES` order, ``msmarco-dev`` first), each cut to its first
    ``limit`` queries or items where ``limit`` is given."""
    cut = (lambda n: min(n, limit) if n else limit) if limit else (lambda n: n)
    makers: dict[str, Callable[[], Collection]] = {
        DEV: lambda: dev(cut(dev_queries), depth),
        "dl19": lambda: trec_dl("dl19", cut(0), depth),
        "dl20": lambda: trec_dl("dl20", cut(0), depth),
        "nevir": lambda: nevir(cut(nevir_pairs)),
        "excluir": lambda: traps("excluir", cut(excluir_items)),
        "boolq": lambda: traps("boolq", cut(boolq_items)),
        "vaswani": lambda: vaswani(cut(0), depth),
    }
    unknown = set(names) - set(makers)
    if unknown:
        raise ValueError(f"unknown collections: {', '.join(sorted(unknown))}; known: {', '.join(makers)}")
    return {name: makers[name]() for name in (DEV, *NAMES) if name in names}
