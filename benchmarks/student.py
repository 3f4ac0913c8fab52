"""Students against BM25 and the zero-shot base: MS MARCO dev split, DL19, DL20 and NevIR.

Not a test. For each model it reranks, in direct mode (or ``--mode``):

* ``msmarco-dev``: the first ``--dev-queries`` queries (with a labelled positive) of the held-out dev split of ``distill.msmarco``
  (queries never trained on), BM25 top-20 with MS MARCO's sparse labels. The file gives BM25 ranks only, so
  the first-stage scores are recomputed with rank1's BM25 over the union of the dev file's passages (used for
  the fusion grid). **The fusion weight is chosen here** and only applied to the test collections.
* ``dl19``, ``dl20``: BM25 top ``--depth`` of every judged query (nDCG@10, official qrels).
* ``nevir``: paired accuracy on the first ``--nevir-pairs`` test pairs.
* ``nevir-train``: paired accuracy on the 50 NevIR *train* pairs (a dev set: never a test number).
* ``contrast-dev``: the held-out groups of ``rank1 distill contrast --dev-out`` (``--contrast-dev FILE``):
  the share of groups whose relevant passage scores above its contrast and negatives, per rule (a dev set);
  for the rules whose groups come in NevIR-style pairs (``nevir-train``, ``condaqa-flip``, the statement
  rules) also paired accuracy, per rule and pooled (``paired``): the dev number closest to NevIR test.

Reports nDCG@10 (dev also MRR@10) of BM25, of the model alone and fused with BM25 at the dev-chosen weight
(DL19/DL20 also Judged@10, the judged share of the top 10, and nDCG@10 over judged passages only),
95% bootstrap confidence intervals of the paired difference to BM25 (queries resampled, 2,000 draws, seed 0),
pairs/s, and writes ``--out`` after every model/collection. With two or more ``--models``, a ``paired``
section compares each with the first: per collection and fusion weight (0: alone), the mean nDCG@10
difference and its 95% paired bootstrap interval; ``paired_at_own_weights`` compares each at its own weight
(chosen on msmarco-dev, or given per model with ``--fusion-weight W1 W2 ...``): two defaults against each
other. In reasoning mode, ``--direct-blend B1 B2 ...`` also reports each collection's headline number (paired
accuracy, top-1 by rule, nDCG@10) for every blend b of the post-reasoning and direct P(true) of the same model
(``by_direct_blend``: the rule ``rank1 rerank --direct-blend`` applies), to choose b on dev; with
``--blend-model STUDENT`` the direct P(true) is STUDENT's (what ``rank1 rerank --mode reasoning`` does for a
student whose explainer reasons for it). Judgements go
through a score store, so an interrupted run resumes, and a run whose judgements are
all stored never loads a model.

Example::

    python -m benchmarks.student --models qwen2.5-coder-0.5b rank1-0.5b-labels --dev-queries 20 \\
        --depth 20 --nevir-pairs 200 --out benchmarks/results/student.json
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from benchmarks._common import (NEVIR_TEST, NEVIR_TRAIN, SHARED, header, load_groups, load_trec_dl, top,
                                top1_by_source, write_json)
from rank1.adaptive import blend_score
from rank1.metrics import evaluate, paired_accuracy, read_nevir_pairs
from rank1.records import Document, Query
from rank1.reranker import Reranker, RerankerConfig
from rank1.results import reweight
from rank1.store import ScoreStore, default_store_path

WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
GRID_MEASURES = {"ndcg10_by_fusion_weight": "nDCG@10"}  # per fusion weight, every ranked collection
JUDGED_MEASURES = {"judged10_by_fusion_weight": "Judged@10",  # DL19/DL20: deep candidates are not all judged
                   "ndcg10_judged_only_by_fusion_weight": "nDCG(judged_only=True)@10"}


def msmarco_dev(queries: int, seed: int = 0, held_out: int = 100) -> dict[str, Any]:
    """The held-out dev split's first ``queries`` queries that have a labelled positive in their BM25 top-20,
    as a collection (run, corpus, topics, qrels)."""
    from distill.msmarco import DEV_FILE, dev_split, read_dev
    from rank1.retrieve.bm25 import BM25Index

    rows = read_dev(SHARED / "msmarco_train" / DEV_FILE)
    positive = {r.qid for r in rows if r.label}
    dev_qids = [q for q in dev_split(rows, held_out, seed)[0] if q in positive][:queries]
    index = BM25Index.build({r.docid: Document(r.docid, r.text) for r in rows}, progress=False)
    chosen = [r for r in rows if r.qid in set(dev_qids)]
    topics = {r.qid: Query(r.qid, r.query) for r in chosen}
    corpus = {r.docid: Document(r.docid, r.text) for r in chosen}
    run: dict[str, dict[str, float]] = {}
    for qid in dev_qids:
        cands = {r.docid for r in chosen if r.qid == qid}
        scores = dict(index.search(topics[qid].text, k=index.n_docs))
        run[qid] = {d: float(scores.get(d, 0.0)) for d in sorted(cands)}
    qrels = {q: {r.docid: r.label for r in chosen if r.qid == q} for q in dev_qids}
    return {"run": run, "corpus": corpus, "topics": topics, "qrels": qrels, "depth": 20}


def bootstrap_ci(a: dict[str, float], b: dict[str, float], draws: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of mean(a - b) over queries, queries resampled with replacement."""
    qids = sorted(a)
    diffs = [a[q] - b.get(q, 0.0) for q in qids]
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(draws))
    return [round(means[int(0.025 * draws)], 4), round(means[int(0.975 * draws) - 1], 4)]


def per_query(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """nDCG@10 per query."""
    return {row.query_id: row.value for row in evaluate(run, qrels, ["nDCG@10"], per_query=True)[1]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="model specs (embedded names, folders)")
    ap.add_argument("--collections", default="msmarco-dev,dl19,dl20,nevir")
    ap.add_argument("--mode", default="direct", choices=["direct", "reasoning"])
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--dev-queries", type=int, default=40)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--queries", type=int, default=0, help="DL19/DL20: only the first N judged queries (0: all)")
    ap.add_argument("--nevir-pairs", type=int, default=200)
    ap.add_argument("--nevir-train-pairs", type=int, default=0, help="nevir-train: only the first N pairs (0: all 50)")
    ap.add_argument("--contrast-dev", default=None, help="groups JSONL of `rank1 distill contrast --dev-out` "
                    "(the contrast-dev collection)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--backend", default="transformers", choices=["transformers", "vllm"],
                    help="vllm: several times faster where the model reasons at length (CPU or GPU)")
    ap.add_argument("--max-model-len", type=int, default=1024, help="vllm backend context length")
    ap.add_argument("--quantize", default=None, choices=["int8"], help="transformers backend: torch dynamic int8 (CPU)")
    ap.add_argument("--fusion-weight", type=float, nargs="+", default=None, choices=WEIGHTS,
                    help="without msmarco-dev: the fusion weight an earlier run chose there (recorded as given); "
                         "one for every model, or one per model")
    ap.add_argument("--direct-blend", type=float, nargs="+", default=None,
                    help="reasoning mode: also report each blend b, (1 - b) * P(true) after reasoning + b * direct "
                         "P(true) of the same model (the rule of --direct-blend; direct scores: one forward a pair)")
    ap.add_argument("--blend-model", default=None,
                    help="with --direct-blend: blend with this model's direct P(true) instead of each model's own "
                         "(a student and its explainer: --models EXPLAINER --blend-model STUDENT)")
    ap.add_argument("--store", default=str(default_store_path()))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.blend_model and not args.direct_blend:
        ap.error("--blend-model is for --direct-blend")
    if args.direct_blend and args.mode != "reasoning":
        ap.error("--direct-blend is for --mode reasoning")
    names = args.collections.split(",")
    if args.fusion_weight is not None and "msmarco-dev" in names:
        ap.error("--fusion-weight is for runs without msmarco-dev (with it, the weight is chosen there)")
    if args.fusion_weight is not None and len(args.fusion_weight) not in (1, len(args.models)):
        ap.error("--fusion-weight takes one weight, or one per model")

    report: dict[str, Any] = {**header(), "mode": args.mode, "budget": args.budget if args.mode == "reasoning" else 0,
                              "depth": args.depth, "backend": args.backend, "queries_limit": args.queries,
                              "dev_queries": args.dev_queries, "nevir_pairs": args.nevir_pairs,
                              "nevir_train_pairs": args.nevir_train_pairs,
                              "models": {}}
    data: dict[str, dict[str, Any]] = {}
    if "msmarco-dev" in names:
        data["msmarco-dev"] = msmarco_dev(args.dev_queries)
    for name in ("dl19", "dl20"):
        if name in names:
            c = load_trec_dl(name, args.queries)
            run = {q: {d: c.run[q][d] for d in top(docs, args.depth)} for q, docs in c.run.items()}
            data[name] = {"run": run, "corpus": c.corpus, "topics": c.topics, "qrels": c.qrels, "depth": args.depth}
    for name, path, limit in (("nevir", NEVIR_TEST, args.nevir_pairs),
                              ("nevir-train", NEVIR_TRAIN, args.nevir_train_pairs)):
        if name in names:
            topics, corpus, pairs = read_nevir_pairs(path)
            pairs = pairs[:limit] if limit else pairs
            data[name] = {"run": {q: {da: 0.0, db: 0.0} for qa, da, qb, db in pairs for q in (qa, qb)},
                          "corpus": corpus, "topics": topics, "pairs": pairs, "depth": 2}
    if "contrast-dev" in names:
        if not args.contrast_dev:
            ap.error("the contrast-dev collection needs --contrast-dev FILE")
        run, corpus, topics, groups = load_groups(args.contrast_dev)
        data["contrast-dev"] = {"run": run, "corpus": corpus, "topics": topics, "groups": groups,
                                "depth": max(map(len, run.values()))}

    per_q: dict[str, dict[str, dict[str, dict[str, float]]]] = {}  # model -> collection -> weight -> qid -> nDCG@10
    with ScoreStore(args.store) as store:
        for i, spec in enumerate(args.models):
            options: dict[str, Any] = {"quantize": args.quantize} if args.quantize else {}
            if args.backend == "vllm":
                options["max_model_len"] = args.max_model_len
            reranker = Reranker(RerankerConfig(contrast=0.0, model=spec, mode=args.mode, budget=args.budget, fusion_weight=0.0,
                                               direct_blend=0.0,  # raw judgements; --direct-blend blends here
                                               batch_size=args.batch_size, backend=args.backend,
                                               backend_options=options), load=False)  # loads on a missing pair
            # fusion: computed here, per weight
            entry: dict[str, Any] = {**reranker.meta, "engine": reranker.store_settings.engine, "collections": {}}
            if args.blend_model:
                entry["blend_model"] = args.blend_model
            if args.fusion_weight is not None:
                entry["fusion_weight"] = args.fusion_weight[i if len(args.fusion_weight) > 1 else 0]
                entry["fusion_weight_chosen_on"] = "given (--fusion-weight): chosen on msmarco-dev by an earlier run"
            report["models"][spec] = entry
            direct = (Reranker(RerankerConfig(contrast=0.0, model=args.blend_model or spec, mode="direct", fusion_weight=0.0,
                                              batch_size=args.batch_size,
                                              backend=args.backend, backend_options=options), load=False)
                      if args.direct_blend else None)
            for name, c in data.items():
                start = time.perf_counter()
                result = reranker.rerank_run(c["run"], c["corpus"], c["topics"], depth=c["depth"], store=store)
                row: dict[str, Any] = {"pairs": result.stats.pairs, "judged": result.stats.judged,
                                       "seconds": round(time.perf_counter() - start, 1),
                                       "generated_tokens": result.stats.generated_tokens,
                                       "fallbacks": result.stats.fallbacks}
                if result.stats.judged:
                    row["pairs_per_second"] = round(result.stats.judged / row["seconds"], 3)
                if "pairs" in c or "groups" in c:  # two-passage sets: paired accuracy, or top-1 share by rule
                    row["paired_accuracy" if "pairs" in c else "top1"] = headline(c, result.scores())
                else:
                    qrels, bm25 = c["qrels"], per_query(c["run"], c["qrels"])
                    fused = {str(w): reweight(result, c["run"], w) for w in WEIGHTS}
                    by_query = per_q.setdefault(spec, {})[name] = {w: per_query(r, qrels) for w, r in fused.items()}
                    row["ndcg10_bm25"] = evaluate(c["run"], qrels, ["nDCG@10"])["nDCG@10"]
                    measures = GRID_MEASURES if name == "msmarco-dev" else {**GRID_MEASURES, **JUDGED_MEASURES}
                    values = {w: evaluate(r, qrels, list(measures.values())) for w, r in fused.items()}
                    for key, measure in measures.items():
                        digits = 4 if key in JUDGED_MEASURES else None
                        row[key] = {w: round(v[measure], digits) if digits else v[measure] for w, v in values.items()}
                    row["ndcg10"] = row["ndcg10_by_fusion_weight"]["0.0"]
                    row["ndcg10_ci95_vs_bm25"] = bootstrap_ci(by_query["0.0"], bm25)
                    if name == "msmarco-dev":
                        row["mrr10_bm25"] = evaluate(c["run"], qrels, ["RR@10"])["RR@10"]
                        row["mrr10"] = evaluate(fused["0.0"], qrels, ["RR@10"])["RR@10"]
                        grid = row["ndcg10_by_fusion_weight"]
                        entry["fusion_weight"] = max(WEIGHTS, key=lambda w: (grid[str(w)], -w))
                        entry["fusion_weight_chosen_on"] = f"msmarco-dev ({args.dev_queries} held-out queries)"
                    w = entry.get("fusion_weight")
                    if w is not None:
                        row["ndcg10_fused"] = row["ndcg10_by_fusion_weight"][str(w)]
                        row["ndcg10_fused_ci95_vs_bm25"] = bootstrap_ci(by_query[str(w)], bm25)
                if direct is not None:
                    plain = direct.rerank_run(c["run"], c["corpus"], c["topics"], depth=c["depth"], store=store)
                    row["by_direct_blend"] = {str(b): headline(c, blend(result.scores(), plain.scores(), b))
                                              for b in args.direct_blend}
                entry["collections"][name] = row
                print(spec, name, {k: v for k, v in row.items() if not k.endswith("_by_fusion_weight")}, flush=True)
                write_json(args.out, report)
            reranker.close()
            if direct is not None:
                direct.close()
    if len(args.models) > 1:
        report["paired"] = paired(args.models, per_q)
        report["paired_at_own_weights"] = paired_at_own_weights(
            args.models, per_q, {s: e.get("fusion_weight") for s, e in report["models"].items()})
        write_json(args.out, report)


def blend(reasoned: dict[str, dict[str, float]], direct: dict[str, dict[str, float]], b: float
          ) -> dict[str, dict[str, float]]:
    """``(1 - b) * reasoned + b * direct`` per pair (the score of ``RerankerConfig.direct_blend``)."""
    return {q: {d: blend_score(s, direct[q][d], b) for d, s in docs.items()} for q, docs in reasoned.items()}


def headline(c: dict[str, Any], scores: dict[str, dict[str, float]]) -> Any:
    """A collection's headline number for a run: paired accuracy, top-1 share by rule, or nDCG@10."""
    if "pairs" in c:
        return paired_accuracy(scores, c["pairs"])
    if "groups" in c:
        return top1_by_source(scores, c["groups"])
    return evaluate(scores, c["qrels"], ["nDCG@10"])["nDCG@10"]


def paired_diff(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    """Mean per-query difference ``a - b`` (over ``b``'s queries) and its 95% paired bootstrap interval."""
    return {"diff": round(sum(a[q] - b[q] for q in b) / len(b), 4), "ci95": bootstrap_ci(a, b)}


def paired(models: list[str], per_q: dict[str, dict[str, dict[str, dict[str, float]]]]) -> dict[str, Any]:
    """Each model after the first against the first, per ranked collection and fusion weight (0: alone): mean
    nDCG@10 difference and its 95% paired bootstrap interval over queries."""
    first, out = models[0], {}
    for spec in models[1:]:
        out[f"{spec} - {first}"] = {
            name: {str(w): paired_diff(a, b)
                   for w in WEIGHTS for a, b in [(per_q[spec][name][str(w)], per_q[first][name][str(w)])]}
            for name in per_q.get(first, {}) if name in per_q.get(spec, {})}
    return out


def paired_at_own_weights(models: list[str], per_q: dict[str, dict[str, dict[str, dict[str, float]]]],
                          weights: dict[str, float | None]) -> dict[str, Any]:
    """Each model after the first against the first, each at its own fusion weight (chosen on msmarco-dev or
    given): the comparison of two defaults. Mean nDCG@10 difference and 95% paired bootstrap interval."""
    first, out = models[0], {}
    for spec in models[1:]:
        if weights.get(spec) is None or weights.get(first) is None:
            continue
        ws, wf = str(weights[spec]), str(weights[first])
        out[f"{spec} (w={ws}) - {first} (w={wf})"] = {
            name: paired_diff(a, b)
            for name in per_q.get(first, {}) if name in per_q.get(spec, {})
            for a, b in [(per_q[spec][name][ws], per_q[first][name][wf])]}
    return out


if __name__ == "__main__":
    main()
