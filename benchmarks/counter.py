"""Counter-query contrast (``rank1 rerank --contrast W``, :mod:`rank1.counter`): each weight against none.

Not a test. For one model, every pair of each collection is judged twice through the score store: against its
query (in ``--mode``: direct, or reasoning at ``--budget`` with ``--direct-blend``), and against the query's
negation (:func:`rank1.counter.counter_query`; queries no rule flips keep their plain score), in direct mode as
``rank1 rerank --contrast`` does, or with ``--counter-mode same`` in the plain judgements' mode. Every weight of ``--weights`` is then scored from the same judgements, ``(P - W * P_counter
+ W) / (1 + W)``, with the mean over units, its 95% bootstrap interval and the paired difference to W = 0 (the
plain direct score) with its 95% paired interval.

Collections: the dev sets that choose the weight (``msmarco-dev``: MS MARCO dev split, BM25 top ``--depth`` of
``--dev-queries`` queries, nDCG@10; ``nevir-train``: the 50 NevIR train pairs; ``contrast-dev``: the paired
groups of ``--contrast-dev`` FILE, pooled paired accuracy over NevIR-style pairs, ``by_source`` beside it) and
the test collections of :mod:`benchmarks.ttc_data` (``nevir``, ``excluir``, ``boolq``, ``dl19``, ``dl20``),
which are measured once, after the choice. The choice rule (``--choose``, over the dev collections in the
report): the weight with the best mean of NevIR-train and contrast-dev paired accuracy whose MS MARCO dev nDCG@10
is at most 1 point below W = 0's; ties go to the smaller weight.

Resumable: judgements are stored chunk by chunk, the JSON is rewritten after each collection, and the same
command continues where a killed one stopped.

Example::

    python -m benchmarks.counter --collections msmarco-dev,nevir-train,contrast-dev \\
        --contrast-dev dev_cq30_paired.jsonl --out benchmarks/results/counter_dev.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks import ttc_data, ttc_stats
from benchmarks._common import NEVIR_TRAIN, PAIRED, add_engine_arguments, header, strict_first, write_json
from benchmarks.ttc_data import Collection, Pair
from rank1.backends import backend_options
from rank1.counter import COUNTER_REVISION, contrast_score, counter_query
from rank1.models import DEFAULT_MODEL
from rank1.records import Query
from rank1.reranker import Reranker, RerankerConfig
from rank1.scoring import Judgement
from rank1.store import ScoreStore, default_store_path

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
DEV_PAIRED = ("nevir-train", "contrast-dev")


def contrast_dev(path: str, name: str = "contrast-dev") -> Collection:
    """The NevIR-style pairs of a ``rank1 distill contrast --dev-out`` file: one unit per pair (``source:key``),
    1 when each of its groups ranks its relevant passage strictly first (the pooled ``paired`` of
    :func:`benchmarks._common.top1_by_source`, unit by unit); ``exclude-dev``: its exclusion groups (``exclude``,
    ``exclude-pair``: the answer passage above the trap and the negatives), one unit each; ``exclude-hard``: the
    harder groups :func:`distill.exclusion_dev.harden` makes of them (``append``, ``append-negated``: the answer
    above itself with a sentence about the excluded term appended, and above the trap), one unit each."""
    from benchmarks._common import load_groups
    from distill.exclusion_dev import harden
    from distill.msmarco import read_groups

    run, corpus, topics, groups = load_groups(harden(read_groups(path)) if name == "exclude-hard" else path)
    units: dict[str, list[Pair]] = {}
    for qid, g in groups.items():
        key = (f"{g.source}:{g.pair}" if name == "contrast-dev" and g.source in PAIRED else
               f"{g.source}:{qid}" if name != "contrast-dev" and g.source.startswith(("exclude", "append"))
               else None)
        if key is not None:
            units.setdefault(key, []).extend((qid, d) for d in run[qid])
    members = {u: sorted({q for q, _ in pairs}) for u, pairs in units.items()}

    return Collection(name, "paired_accuracy" if name == "contrast-dev" else "top1", run, corpus, topics, units,
                      lambda r: {u: float(all(strict_first(r[q], groups[q].positive) for q in qs))
                                 for u, qs in members.items() if all(q in r for q in qs)})


def collection(name: str, args: argparse.Namespace) -> Collection:
    """The collection ``name`` with the sizes of ``args`` (``limit``, ``depth``, ``nevir_pairs``,
    ``excluir_items``, ``dev_queries``, and the ``contrast_dev`` / ``exclude_dev`` files)."""
    if name == "nevir-train":
        return ttc_data.nevir(args.limit, NEVIR_TRAIN, "nevir-train")
    if name in ("contrast-dev", "exclude-dev", "exclude-hard"):
        flag = "contrast_dev" if name == "contrast-dev" else "exclude_dev"
        if not getattr(args, flag):
            raise SystemExit(f"{name} needs --{flag.replace('_', '-')} FILE")
        return contrast_dev(getattr(args, flag), name)
    return ttc_data.load([name], args.limit, 20 if name == "msmarco-dev" else args.depth,
                         nevir_pairs=args.nevir_pairs, excluir_items=args.excluir_items,
                         dev_queries=args.dev_queries)[name]


def counter_topics(coll: Collection) -> dict[str, Query]:
    """The flipped queries of ``coll``'s units (those a rule flips), under their own ids."""
    return {q: t._replace(text=c) for q in dict.fromkeys(q for q, _ in coll.pairs)
            if (c := counter_query((t := coll.topics[q]).text)) is not None}


def judged(reranker: Reranker, coll: Collection, topics: dict[str, Query], store: ScoreStore) -> dict[Pair, float]:
    """P(true) of every pair of ``coll`` whose query is in ``topics`` (judged where the store lacks it)."""
    run = coll.candidates(topics)
    if not run:
        return {}
    result = reranker.rerank_run(run, coll.corpus, topics, depth=max(map(len, run.values())), store=store)
    return {(q, d.doc_id): d.judgement.score for q, docs in result.run.items() for d in docs if d.judgement}


def rows(coll: Collection, plain: dict[Pair, float], counter: dict[Pair, float],
         weights: tuple[float, ...]) -> dict[str, Any]:
    """Quality per weight (mean, interval, paired difference to W = 0), and per source for ``contrast-dev``."""
    values = {}
    for w in weights:
        scores = {p: contrast_score(s, counter[p], w) if p in counter else s for p, s in plain.items()}
        values[w] = ttc_stats.quality(coll, {p: Judgement(s) for p, s in scores.items()})
    out: dict[str, Any] = {}
    for w, v in values.items():
        out[str(w)] = {**ttc_stats.mean_ci(v), "vs_plain": ttc_stats.paired(v, values[0.0]) if w else None}
        if coll.name in ("contrast-dev", "exclude-dev", "exclude-hard"):
            sources = sorted({u.split(":")[0] for u in v})
            out[str(w)]["by_source"] = {s: round(sum(x for u, x in v.items() if u.startswith(s + ":"))
                                                  / sum(u.startswith(s + ":") for u in v), 4) for s in sources}
    return out


def choose(report: dict[str, Any]) -> dict[str, Any] | None:
    """The weight the rule of the module docstring picks from the dev rows (None without all three)."""
    cols = report["collections"]
    if not all(c in cols for c in ("msmarco-dev", *DEV_PAIRED)):
        return None
    floor = cols["msmarco-dev"]["weights"]["0.0"]["quality"] - 0.01
    ok = [w for w in cols["msmarco-dev"]["weights"] if cols["msmarco-dev"]["weights"][w]["quality"] >= floor]
    mean = {w: sum(cols[c]["weights"][w]["quality"] for c in DEV_PAIRED) / 2 for w in ok}
    best = max(ok, key=lambda w: (round(mean[w], 6), -float(w)))
    return {"weight": float(best), "dev_paired_mean": round(mean[best], 4), "eligible": ok}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--collections", default="msmarco-dev,nevir-train,contrast-dev")
    ap.add_argument("--contrast-dev", default=None, help="paired dev groups (rank1 distill contrast --dev-out)")
    ap.add_argument("--exclude-dev", default=None,
                    help="dev groups with the exclusion rules (exclude-dev, and exclude-hard made of them)")
    ap.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    ap.add_argument("--depth", type=int, default=100, help="DL19/DL20 BM25 candidates per query (msmarco-dev: 20)")
    ap.add_argument("--dev-queries", type=int, default=40)
    ap.add_argument("--nevir-pairs", type=int, default=1000)
    ap.add_argument("--excluir-items", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=0, help="first N queries / pairs / items of each (smoke tests)")
    ap.add_argument("--mode", choices=("direct", "reasoning"), default="direct", help="the plain judgements' mode")
    ap.add_argument("--budget", type=int, default=128, help="reasoning mode's thinking budget (tokens)")
    ap.add_argument("--direct-blend", type=float, default=0.0, help="reasoning mode: weight of the direct P(true)")
    ap.add_argument("--counter-mode", choices=("direct", "same"), default="direct",
                    help="the counter-queries' mode: direct (as rank1's contrast) or the plain judgements' mode")
    add_engine_arguments(ap, batch_size=16)
    ap.add_argument("--store", default=None, help="score store (resumes; default: rank1's score cache)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    weights = tuple(sorted({0.0, *args.weights}))
    names = args.collections.split(",")
    if "contrast-dev" in names and not args.contrast_dev or {"exclude-dev", "exclude-hard"} & set(names) and not (
            args.exclude_dev):
        ap.error("contrast-dev needs --contrast-dev FILE, exclude-dev and exclude-hard --exclude-dev FILE")
    config = RerankerConfig(contrast=0.0, model=args.model, mode=args.mode, budget=args.budget, fusion_weight=0.0,
                            direct_blend=args.direct_blend, batch_size=args.batch_size, backend=args.backend,
                            backend_options=backend_options(args.backend, dtype=args.dtype))
    reranker = Reranker(config, load=False)
    counter = reranker if args.counter_mode == "same" else reranker.replace(mode="direct", direct_blend=0.0)
    report: dict[str, Any] = {**header(), "model": args.model, **reranker.meta,
                              "engine": reranker.store_settings.engine, "counter_revision": COUNTER_REVISION,
                              "counter_mode": counter.config.mode, "weights": list(weights), "collections": {}}
    with ScoreStore(args.store or default_store_path()) as store:
        for name in names:
            start = time.perf_counter()
            coll = collection(name, args)
            flipped = counter_topics(coll)
            plain = judged(reranker, coll, coll.topics, store)
            counters = judged(counter, coll, flipped, store)
            report["collections"][name] = {
                "metric": coll.metric, "units": len(coll.units), "queries": len({q for q, _ in coll.pairs}),
                "flipped_queries": len(flipped), "pairs": len(plain), "counter_pairs": len(counters),
                "seconds": round(time.perf_counter() - start, 1),
                "weights": rows(coll, plain, counters, weights)}
            report["chosen"] = choose(report)
            write_json(args.out, report)
            print(name, {w: r["quality"] for w, r in report["collections"][name]["weights"].items()}, flush=True)
    reranker.close()  # the counter reranker shares its model


if __name__ == "__main__":
    main()
