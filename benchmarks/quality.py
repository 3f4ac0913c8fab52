"""Rerank TREC DL19/DL20 BM25 candidates and report nDCG@10, with first-stage fusion.

Not a test. Writes one JSON file per invocation into ``benchmarks/results/`` with the exact command, the
model and its fingerprint, template name and hash, mode, depth, budget, time and nDCG@10 of BM25, of the
reranker alone, and of the fusion ``(1-w)*P(true) + w*minmax(BM25)`` for a grid of ``w``. The fusion weight
is chosen on the tuning collection (DL19 by default) and only *applied* to the others: never tuned on DL20.

Example::

    python -m benchmarks.quality --collections dl19 dl20 --depth 20 --mode direct \\
        --template rank1-chat-answer --out benchmarks/results/quality_direct.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks._common import TREC_DL, header, load_trec_dl, write_json
from rank1.metrics import evaluate
from rank1.models import BASE_MODEL
from rank1.reranker import Reranker, RerankerConfig
from rank1.results import reweight

WEIGHTS = [round(0.1 * i, 1) for i in range(11)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--collections", nargs="+", default=["dl19", "dl20"], choices=sorted(TREC_DL))
    ap.add_argument("--tune-on", default="dl19", help="collection the fusion weight is chosen on")
    ap.add_argument("--model", default=BASE_MODEL)
    ap.add_argument("--mode", default="direct", choices=["direct", "reasoning"])
    ap.add_argument("--template", default=None)
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--queries", type=int, default=0, help="use only the first N judged queries (0: all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--fusion-from", default=None,
                    help="results JSON of an earlier run on the tuning collection: apply its chosen weight")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    reranker = Reranker(RerankerConfig(model=args.model, mode=args.mode, template=args.template,
                                       budget=args.budget, batch_size=args.batch_size))
    report: dict = {**header(), "depth": args.depth, "queries_limit": args.queries, **reranker.meta, "collections": {}}
    for name in args.collections:
        run, corpus, topics, qrels = load_trec_dl(name, args.queries)
        qids = list(run)
        start = time.perf_counter()
        result = reranker.rerank_run(run, corpus, topics, depth=args.depth)
        seconds = time.perf_counter() - start
        by_weight = {str(w): evaluate(reweight(result, run, w), qrels, ["nDCG@10"])["nDCG@10"] for w in WEIGHTS}
        report["collections"][name] = {
            "queries": len(qids), "pairs": result.stats.pairs, "seconds": round(seconds, 1),
            "pairs_per_second": round(result.stats.pairs / seconds, 3),
            "generated_tokens": result.stats.generated_tokens, "fallbacks": result.stats.fallbacks,
            "truncated": result.stats.truncated,
            "ndcg10_bm25": evaluate(run, qrels, ["nDCG@10"])["nDCG@10"],
            "ndcg10_rerank": by_weight["0.0"], "ndcg10_by_fusion_weight": by_weight,
        }
        print(name, json.dumps(report["collections"][name]), flush=True)
    tune = report["collections"].get(args.tune_on)
    best = None
    if args.fusion_from:
        earlier = json.loads(Path(args.fusion_from).read_text())
        best = earlier["fusion_weight"]
        report["fusion_weight_chosen_on"] = f"{earlier['fusion_weight_chosen_on']} (from {args.fusion_from})"
    elif tune:
        best = max(WEIGHTS, key=lambda w: (tune["ndcg10_by_fusion_weight"][str(w)], -w))
        report["fusion_weight_chosen_on"] = args.tune_on
    if best is not None:
        report["fusion_weight"] = best
        for name, entry in report["collections"].items():
            entry["ndcg10_fused"] = entry["ndcg10_by_fusion_weight"][str(best)]
    write_json(args.out, report)


if __name__ == "__main__":
    main()
