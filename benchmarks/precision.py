"""bfloat16 against float32: ranking quality, score agreement and ties, on DL19/DL20 BM25 top-``--depth``.

Not a test. It judges every pair (BM25 top ``--depth`` of every judged query) with one model, in direct mode, in
three ways:

* ``float32``: the exact path;
* ``bfloat16``: what ``dtype="auto"`` gives on a CPU with bfloat16 units, the answer logits read in float32
  (:mod:`rank1.backends.head`);
* ``bfloat16-raw`` (leave it out of ``--variants`` to skip it): bfloat16 with the answer logits read from the model's own bfloat16
  output, as rank1 did before the float32 answer head (judged without the store, whose keys it would share).

For each: nDCG@10 per collection, distinct scores, queries with tied candidates, judgements that share their
score with another candidate of the same query, pairs/s. Against float32: max and mean |P(true) difference|,
and the paired nDCG@10 difference with a 95% bootstrap interval (queries resampled). Judgements go through
the score store (the float32 and bfloat16 runs resume).

Example::

    python -m benchmarks.precision --out benchmarks/results/precision.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks._common import header, load_trec_dl, top, write_json
from benchmarks.student import bootstrap_ci, per_query
from rank1.metrics import evaluate
from rank1.reranker import Reranker, RerankerConfig
from rank1.results import reweight
from rank1.store import ScoreStore, default_store_path

VARIANTS = ("float32", "bfloat16", "bfloat16-raw")


def raw_answers(reranker: Reranker) -> None:
    """Read ``reranker``'s answer logits from the model's own (bfloat16) output, as before the float32 answer
    head: that head switched off on its (loaded) transformers backend."""
    answers = reranker.backend.answers
    answers.close()
    answers.active = False


def ties(scores: dict[str, dict[str, float]]) -> dict[str, int]:
    """Distinct scores, queries with tied candidates, and judgements sharing their score within their query."""
    values = [s for docs in scores.values() for s in docs.values()]
    tied = {q: len(docs) - len(set(docs.values())) for q, docs in scores.items()}
    return {"judgements": len(values), "distinct_scores": len(set(values)),
            "queries_with_ties": sum(1 for n in tied.values() if n), "tied_judgements": sum(tied.values())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model spec (default: rank1's default model)")
    ap.add_argument("--collections", default="dl19,dl20")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--queries", type=int, default=0, help="only the first N judged queries (0: all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--store", default=str(default_store_path()))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    data = {}
    for name in args.collections.split(","):
        c = load_trec_dl(name, args.queries)
        data[name] = (c, {q: {d: c.run[q][d] for d in top(docs, args.depth)} for q, docs in c.run.items()})
    report: dict[str, Any] = {**header(), "depth": args.depth, "mode": "direct", "variants": {}}
    scores: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    with ScoreStore(args.store) as store:
        for variant in args.variants.split(","):
            dtype = variant.split("-")[0]
            config = RerankerConfig(contrast=0.0, mode="direct", fusion_weight=0.0, batch_size=args.batch_size,
                                    backend_options={"dtype": dtype},
                                    **({"model": args.model} if args.model else {}))
            raw = variant.endswith("-raw")
            entry: dict[str, Any] = {"dtype": dtype, "float32_answers": not raw, "collections": {}}
            with Reranker(config, load=raw) as reranker:
                if raw:
                    raw_answers(reranker)
                entry.update(model=reranker.meta["model"], engine=reranker.store_settings.engine)
                for name, (c, run) in data.items():
                    start = time.perf_counter()
                    result = reranker.rerank_run(run, c.corpus, c.topics, depth=args.depth,
                                                 store=None if raw else store)
                    seconds = time.perf_counter() - start
                    got = scores.setdefault(variant, {})[name] = result.scores()
                    ranked = reweight(result, run, 0.0)
                    by_query = per_query(ranked, c.qrels)
                    row = {"ndcg10": evaluate(ranked, c.qrels, ["nDCG@10"])["nDCG@10"],
                           "ndcg10_bm25": evaluate(run, c.qrels, ["nDCG@10"])["nDCG@10"], **ties(got),
                           "judged": result.stats.judged, "seconds": round(seconds, 1)}
                    if result.stats.judged:
                        row["pairs_per_second"] = round(result.stats.judged / seconds, 3)
                    if variant != "float32" and "float32" in scores and name in scores["float32"]:
                        ref = scores["float32"][name]
                        diffs = [abs(got[q][d] - ref[q][d]) for q in ref for d in ref[q]]
                        row["max_abs_p_true_diff_vs_float32"] = max(diffs)
                        row["mean_abs_p_true_diff_vs_float32"] = sum(diffs) / len(diffs)
                        a, b = by_query, report["variants"]["float32"]["per_query"][name]
                        row["ndcg10_diff_vs_float32"] = sum(a[q] - b[q] for q in a) / len(a)
                        row["ndcg10_diff_ci95_vs_float32"] = bootstrap_ci(a, b)
                    entry["collections"][name] = row
                    entry.setdefault("per_query", {})[name] = by_query
                    print(variant, name, row, flush=True)
                    report["variants"][variant] = entry
                    write_json(args.out, report)


if __name__ == "__main__":
    main()
