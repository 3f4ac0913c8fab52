"""Ways to blend a model's P(true) with the first stage, compared on the MS MARCO dev split (selection only).

Not a test. rank1 blends ``(1-w)*P(true) + w*minmax(BM25)`` (:func:`rank1.results.rank_query`). This script
asks whether another blend would serve better, on the held-out MS MARCO dev split only (the split that chooses
``w``; the test collections are never used here): for each family its best weight, nDCG@10 and the 95%
bootstrap interval of the paired difference to rank1's blend at its own best weight.

Families (scores normalised per query over the reranked head):

* ``p+minmax``: rank1's blend, P(true) as it is, BM25 min-max normalised;
* ``minmax+minmax``: P(true) min-max normalised too;
* ``zlogit+z``: z-scores of logit(P(true)) and of BM25;
* ``rrf``: reciprocal rank fusion ``1/(k + rank)`` of the two orders (``k`` instead of ``w``).

Example::

    python -m benchmarks.fusion --model rank1-0.5b-labels --dev-queries 100 --out benchmarks/results/fusion.json
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Sequence

from benchmarks._common import header, write_json
from benchmarks.student import bootstrap_ci, msmarco_dev, per_query
from rank1.metrics import evaluate
from rank1.reranker import Reranker, RerankerConfig
from rank1.store import ScoreStore, default_store_path

Run = dict[str, dict[str, float]]
Norm = Callable[[Sequence[float]], list[float]]
WEIGHTS = [round(0.1 * i, 1) for i in range(1, 10)]
RRF_KS = [1, 5, 10, 20, 60]


def minmax(xs: Sequence[float]) -> list[float]:
    """``xs`` scaled to [0, 1] (all 0 when they are equal)."""
    lo, hi = min(xs), max(xs)
    return [(x - lo) / (hi - lo) if hi > lo else 0.0 for x in xs]


def zscore(xs: Sequence[float]) -> list[float]:
    """``xs`` centred and divided by their standard deviation (centred only when it is 0)."""
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    return [(x - mean) / (sd or 1.0) for x in xs]


def zlogit(ps: Sequence[float]) -> list[float]:
    """z-scores of ``logit(p)`` (``p`` clipped to [1e-6, 1 - 1e-6])."""
    return zscore([math.log(p / (1 - p)) for p in (min(max(p, 1e-6), 1 - 1e-6) for p in ps)])


def identity(xs: Sequence[float]) -> list[float]:
    return list(xs)


FAMILIES: dict[str, tuple[Norm, Norm]] = {
    "p+minmax": (identity, minmax),
    "minmax+minmax": (minmax, minmax),
    "zlogit+z": (zlogit, zscore),
}


def blend(first: Run, p_true: Run, model_norm: Norm, first_norm: Norm, w: float) -> Run:
    """``(1-w)*model_norm(P) + w*first_norm(first-stage)`` per query."""
    out: Run = {}
    for qid, docs in first.items():
        ids = sorted(docs)
        a, b = model_norm([p_true[qid][d] for d in ids]), first_norm([docs[d] for d in ids])
        out[qid] = {d: (1 - w) * x + w * y for d, x, y in zip(ids, a, b)}
    return out


def rrf(first: Run, p_true: Run, k: int) -> Run:
    """Reciprocal rank fusion of the first-stage order and the P(true) order (ties: smaller id first)."""
    out: Run = {}
    for qid, docs in first.items():
        by_first = sorted(docs, key=lambda d: (-docs[d], d))
        by_model = sorted(docs, key=lambda d: (-p_true[qid][d], d))
        ranks = [{d: i for i, d in enumerate(order, 1)} for order in (by_first, by_model)]
        out[qid] = {d: sum(1.0 / (k + r[d]) for r in ranks) for d in docs}
    return out


def compare(first: Run, p_true: Run, qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, object]]:
    """Every family's nDCG@10 per weight (or ``k``), its best setting, and the paired 95% interval of its best
    against rank1's blend (``p+minmax``) at that blend's best weight."""
    grids: dict[str, dict[str, Run]] = {
        name: {str(w): blend(first, p_true, a, b, w) for w in WEIGHTS} for name, (a, b) in FAMILIES.items()}
    grids["rrf"] = {str(k): rrf(first, p_true, k) for k in RRF_KS}
    report: dict[str, dict[str, object]] = {}
    for name, runs in grids.items():
        scores = {s: evaluate(r, qrels, ["nDCG@10"])["nDCG@10"] for s, r in runs.items()}
        best = max(scores, key=lambda s: (scores[s], -float(s)))
        report[name] = {"ndcg10_by_setting": scores, "best_setting": best, "ndcg10": scores[best],
                        "run": runs[best]}
    reference = per_query(report["p+minmax"]["run"], qrels)  # type: ignore[arg-type]
    for row in report.values():
        row["ci95_vs_rank1_blend"] = bootstrap_ci(per_query(row.pop("run"), qrels), reference)  # type: ignore[arg-type]
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model spec (embedded name or folder); direct mode")
    ap.add_argument("--dev-queries", type=int, default=100)
    ap.add_argument("--store", default=str(default_store_path()))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    c = msmarco_dev(args.dev_queries)
    with ScoreStore(args.store) as store, \
            Reranker(RerankerConfig(contrast=0.0, model=args.model, mode="direct", fusion_weight=0.0)) as reranker:
        result = reranker.rerank_run(c["run"], c["corpus"], c["topics"], depth=c["depth"], store=store)
    p_true = {q: {d.doc_id: d.judgement.score for d in docs if d.judgement} for q, docs in result.run.items()}
    report = {**header(), "model": args.model, "collection": f"msmarco-dev ({len(c['run'])} held-out queries, "
              "BM25 top-20)", "ndcg10_bm25": evaluate(c["run"], c["qrels"], ["nDCG@10"])["nDCG@10"],
              "ndcg10_model_alone": evaluate(p_true, c["qrels"], ["nDCG@10"])["nDCG@10"],
              "families": compare(c["run"], p_true, c["qrels"])}
    for name, row in report["families"].items():
        print(f"{name:15s} best {row['best_setting']:>4s}  nDCG@10 {row['ndcg10']:.4f}  "
              f"vs rank1's blend {row['ci95_vs_rank1_blend']}")
    write_json(args.out, report)


if __name__ == "__main__":
    main()
