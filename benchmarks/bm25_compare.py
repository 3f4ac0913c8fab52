"""Compare our BM25 first stage (rank_bm25 ``BM25Okapi``) with an independent one (``bm25s``, Lucene BM25).

Both systems get exactly the same tokens (our :class:`~rank1.retrieve.Tokenizer`) and the same k1/b, are
evaluated with :func:`rank1.metrics.evaluate` against the collection's qrels, and the results go to
``benchmarks/results/bm25_compare.json``. The only intended difference is the BM25 formula: rank_bm25's
BM25Okapi uses ``idf = log((N - n + 0.5) / (n + 0.5))`` with negative values raised to ``0.25 * mean idf``,
Lucene (and bm25s ``method="lucene"``) ``log(1 + (N - n + 0.5) / (n + 0.5))``.

Run from the repository root::

    .venv/bin/python -m benchmarks.bm25_compare [--data ../shared/data] [--out benchmarks/results/bm25_compare.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from benchmarks._common import command
from rank1.io import atomic_write, read_corpus, read_qrels, read_topics
from rank1.metrics import evaluate
from rank1.records import Document, Query
from rank1.retrieve import BM25Index, BM25Params, Tokenizer

REPO = Path(__file__).resolve().parent.parent

MEASURES = ("nDCG@10", "R@100", "AP")
COLLECTIONS = {
    # name: (corpus, topics, topics format, qrels, qrels format), relative to --data
    "vaswani": ("vaswani/doc-text.trec", "vaswani/query-text.trec", "trec", "vaswani/qrels", "trec"),
    "cranfield": ("cranfield/cran.all.1400", "cranfield/cran.qry", "cranfield", "cranfield/cranqrel", "cranfield"),
}

NOTES = (
    "Same tokens and k1/b for both; the remaining difference is the BM25 formula. rank_bm25 BM25Okapi: "
    "idf = log((N-n+0.5)/(n+0.5)), negative idf (terms in more than half of the documents) raised to "
    "0.25 * mean idf; Lucene/bm25s: idf = log(1 + (N-n+0.5)/(n+0.5)), always positive, larger relative weight "
    "for common terms. The (k1+1) factor rank_bm25 keeps in the numerator is a constant per run and does not "
    "change rankings. Timings: 'build' includes tokenization for both systems; ours also saves and reloads "
    "the index (load never re-tokenizes) and searches with rank_bm25's get_batch_scores in Python, bm25s "
    "with precomputed sparse scores."
)

Run = dict[str, dict[str, float]]
Timing = dict[str, float]


def run_ours(
    docs: list[Document], topics: dict[str, Query], tokenizer: Tokenizer, params: BM25Params, k: int
) -> tuple[Run, Timing]:
    """Our index: build (tokenize + rank_bm25), save, load (no re-tokenization), search."""
    t0 = time.perf_counter()
    index = BM25Index.build(docs, tokenizer, params, progress=False)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp) / "index")
        t2 = time.perf_counter()
        index = BM25Index.load(Path(tmp) / "index", tokenizer)
        t3 = time.perf_counter()
    run = index.search_many(topics, k, progress=False)
    t4 = time.perf_counter()
    for q in topics.values():  # reference: rank_bm25's plain get_scores over the whole corpus per query
        scores = index.model.get_scores(tokenizer.tokenize(q.full_text))
        np.argpartition(-scores, min(k, len(scores) - 1))[:k]
    t5 = time.perf_counter()
    return run, {"build_s": t1 - t0, "save_s": t2 - t1, "load_s": t3 - t2, "search_s": t4 - t3,
                 "search_plain_get_scores_s": t5 - t4}  # fmt: skip


def run_bm25s(
    docs: list[Document], topics: dict[str, Query], tokenizer: Tokenizer, params: BM25Params, k: int
) -> tuple[Run, Timing]:
    """bm25s (method="lucene") on the very same tokens."""
    tokenizer = dataclasses.replace(tokenizer)  # same configuration, cold stemming cache (fair timing)
    t0 = time.perf_counter()
    corpus_tokens = tokenizer.tokenize_many(d.full_text for d in docs)
    retriever = bm25s.BM25(method="lucene", k1=params.k1, b=params.b)
    retriever.index(corpus_tokens, show_progress=False)
    t1 = time.perf_counter()
    qids = list(topics)
    q_tokens = tokenizer.tokenize_many(topics[q].full_text for q in qids)
    run: Run = {q: {} for q in qids}
    known = [i for i, toks in enumerate(q_tokens) if any(t in retriever.vocab_dict for t in toks)]
    hits, scores = retriever.retrieve([q_tokens[i] for i in known], k=min(k, len(docs)), show_progress=False)
    for row, i in enumerate(known):
        # like ours, return only documents that contain a query term (Lucene idf is always > 0)
        run[qids[i]] = {docs[j].doc_id: float(s) for j, s in zip(hits[row], scores[row]) if s > 0}
    t2 = time.perf_counter()
    return run, {"build_s": t1 - t0, "search_s": t2 - t1}


def compare(name: str, data: Path, tokenizer: Tokenizer, params: BM25Params, k: int) -> dict[str, Any]:
    """Both systems on one collection."""
    corpus, topics_file, topics_fmt, qrels_file, qrels_fmt = COLLECTIONS[name]
    docs = list(read_corpus(data / corpus).values())
    topics = read_topics(data / topics_file, topics_fmt)
    qrels = read_qrels(data / qrels_file, qrels_fmt)
    out: dict[str, Any] = {"n_docs": len(docs), "n_queries": len(topics), "n_judged_queries": len(qrels)}
    for system, fn in (("ours_rank_bm25", run_ours), ("bm25s_lucene", run_bm25s)):
        run, timing = fn(docs, topics, tokenizer, params, k)
        scores = evaluate(run, qrels, MEASURES)
        out[system] = {**{m: round(v, 4) for m, v in scores.items()}, **{t: round(v, 3) for t, v in timing.items()}}
        out[system]["queries_without_hits"] = sum(1 for hits in run.values() if not hits)
    out["delta_ours_minus_bm25s"] = {m: round(out["ours_rank_bm25"][m] - out["bm25s_lucene"][m], 4) for m in MEASURES}
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every collection, print a table and write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bm25_compare.json")
    ap.add_argument("--collections", nargs="+", default=list(COLLECTIONS), choices=list(COLLECTIONS))
    ap.add_argument("-k", type=int, default=100, help="hits per query")
    ap.add_argument("--k1", type=float, default=0.9)
    ap.add_argument("--b", type=float, default=0.4)
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        ap.error(f"data folder {args.data} not found")
    tokenizer, params = Tokenizer(), BM25Params(k1=args.k1, b=args.b)
    started = time.perf_counter()
    results = {name: compare(name, args.data, tokenizer, params, args.k) for name in args.collections}
    report = {
        "command": command(argv),
        "cwd": "repository root" if Path.cwd().resolve() == REPO else str(Path.cwd()),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tokenizer_signature": tokenizer.signature(),
        "bm25": {"ours": f"rank_bm25.BM25Okapi(k1={params.k1}, b={params.b}, epsilon={params.epsilon})",
                 "bm25s": f"bm25s.BM25(method='lucene', k1={params.k1}, b={params.b})"},  # fmt: skip
        "k": args.k,
        "measures": list(MEASURES),
        "versions": {"python": platform.python_version(), "rank_bm25": version("rank_bm25"),
                     "bm25s": version("bm25s"), "numpy": np.__version__},  # fmt: skip
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "total_seconds": round(time.perf_counter() - started, 2),
        "collections": results,
        "notes": NOTES,
    }
    for name, r in results.items():
        for system in ("ours_rank_bm25", "bm25s_lucene"):
            row = r[system]
            print(f"{name:10s} {system:15s} " + " ".join(f"{m}={row[m]:.4f}" for m in MEASURES)
                  + f"  build={row['build_s']:.2f}s search={row['search_s']:.2f}s")  # fmt: skip
        print(f"{name:10s} {'delta':15s} " + " ".join(f"{m}={v:+.4f}" for m, v in r["delta_ours_minus_bm25s"].items()))
    with atomic_write(args.out) as f:
        f.write(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
