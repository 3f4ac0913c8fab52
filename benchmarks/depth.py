"""Depth: the quality/time trade-off of reranking the top 10, 20, 50 and 100 BM25 candidates.

Not a test. For each collection (DL19, DL20: first ``--queries`` judged queries) the depths are reranked in
increasing order through a fresh temporary score store, so each depth judges only the candidates the smaller
one did not (judgements are pointwise: a pair's score does not depend on the other pairs), and the time of
depth ``d`` is the cumulative time of judging the top ``d`` of every query. Each run is scored with nDCG@10 —
reranker alone and fused with BM25 at ``--fusion-weight`` (0.5, the weight chosen on DL19 in
``quality.py``) — beside BM25 itself. Writes ``benchmarks/results/depth.json``.

Example::

    OMP_NUM_THREADS=2 python -m benchmarks.depth --queries 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, TREC_DL, header, load_trec_dl, write_json
from rank1.metrics import evaluate
from rank1.models import BASE_MODEL
from rank1.reranker import Reranker, RerankerConfig
from rank1.results import reweight
from rank1.store import ScoreStore


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--collections", nargs="+", default=["dl19", "dl20"], choices=sorted(TREC_DL))
    ap.add_argument("--depths", nargs="+", type=int, default=[10, 20, 50, 100])
    ap.add_argument("--queries", type=int, default=10, help="first N judged queries of each collection (0: all)")
    ap.add_argument("--model", default=BASE_MODEL)
    ap.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    ap.add_argument("--mode", default="direct", choices=["direct", "reasoning"])
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-model-len", type=int, default=1024, help="vllm backend context length")
    ap.add_argument("--fusion-weight", type=float, default=0.5)
    ap.add_argument("--out", default=str(RESULTS / "depth.json"))
    args = ap.parse_args(argv)

    options = {"max_model_len": args.max_model_len} if args.backend == "vllm" else {}
    start = time.perf_counter()
    reranker = Reranker(RerankerConfig(contrast=0.0, model=args.model, backend=args.backend, mode=args.mode,
                                       budget=args.budget, batch_size=args.batch_size, backend_options=options))
    report: dict[str, Any] = {**header(), **reranker.meta, "backend": args.backend, "queries_limit": args.queries,
                              "fusion_weight": args.fusion_weight,
                              "load_seconds": round(time.perf_counter() - start, 1), "rows": []}
    for name in args.collections:
        run, corpus, topics, qrels = load_trec_dl(name, args.queries)
        bm25 = evaluate(run, qrels, ["nDCG@10"])["nDCG@10"]
        seconds = 0.0
        with tempfile.TemporaryDirectory() as tmp, ScoreStore(Path(tmp) / "scores.sqlite") as store:
            for depth in sorted(args.depths):
                start = time.perf_counter()
                result = reranker.rerank_run(run, corpus, topics, depth=depth, progress=False, store=store)
                seconds += time.perf_counter() - start
                report["rows"].append(row(name, depth, run, qrels, bm25, result, seconds, args.fusion_weight))
                print(report["rows"][-1], flush=True)
                write_json(args.out, report)
    reranker.close()


def row(name: str, depth: int, run: dict, qrels: dict, bm25: float, result: Any, seconds: float,
        weight: float) -> dict[str, Any]:
    """One line of the table: sizes, cumulative time and nDCG@10 of BM25, the reranker and the blend."""
    return {"collection": name, "depth": depth, "queries": len(run), "pairs": result.stats.pairs,
            "newly_judged": result.stats.judged, "seconds": round(seconds, 1),
            "pairs_per_s": round(result.stats.pairs / seconds, 3), "seconds_per_query": round(seconds / len(run), 2),
            "generated_tokens": result.stats.generated_tokens, "truncated": result.stats.truncated,
            "ndcg10_bm25": bm25, "ndcg10_rerank": evaluate(result.scores(), qrels, ["nDCG@10"])["nDCG@10"],
            "ndcg10_fused": evaluate(reweight(result, run, weight), qrels, ["nDCG@10"])["nDCG@10"]}


if __name__ == "__main__":
    main()
