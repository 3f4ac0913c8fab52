"""The duo stage (:mod:`rank1.duo`) on top of the pointwise reranker: each base against base + duo.

Not a test. For one pointwise model (``--model``, direct mode) every pair of each collection is judged through the
score store, against its query and, for the counter-query contrast (:mod:`rank1.counter`), against the flipped
query; the base runs are W = 0 and each ``--weights`` W. A duo judge (``--duo-model``, the ``duo`` template) then
reorders the top ``--k`` of every query of every base run. Per collection and base: the quality without and with
the duo stage, and their paired difference with its 95% paired bootstrap interval.

Collections as :mod:`benchmarks.counter` (dev: ``msmarco-dev``, ``nevir-train``, ``contrast-dev``; test:
``nevir``, ``excluir``, ``boolq``, ``dl19``, ``dl20``, measured once, after the choice).

The rule (issue 32, written before any duo number): the duo stage is recommended over a base if, on dev, the mean
of NevIR-train and contrast-dev paired accuracy with it is at least 2 points above the base's, the contrast-dev
paired interval lies above zero, and MS MARCO dev nDCG@10 with it is at most 1 point below the base's.

Example::

    python -m benchmarks.duo --duo-model DUO --collections msmarco-dev,nevir-train,contrast-dev \\
        --contrast-dev dev_cq30_paired.jsonl --out benchmarks/results/duo_dev.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks import ttc_stats
from benchmarks._common import add_engine_arguments, header, write_json
from benchmarks.counter import collection, counter_topics, judged
from rank1.backends import backend_options
from rank1.counter import contrast_score
from rank1.duo import DUO_TEMPLATE, duo_rerank
from rank1.models import DEFAULT_MODEL
from rank1.reranker import Reranker, RerankerConfig
from rank1.store import ScoreStore, default_store_path


def verdict(cols: dict[str, Any], base: str) -> dict[str, Any] | None:
    """The rule of the module docstring for one base: None without NevIR-train and contrast-dev;
    ``recommended`` None while MS MARCO dev is missing and the paired part passes (it can only fail then)."""
    if not all(c in cols for c in ("nevir-train", "contrast-dev")):
        return None
    rows = {c: cols[c]["bases"][base] for c in ("msmarco-dev", "nevir-train", "contrast-dev") if c in cols}
    gain = sum(rows[c]["duo"]["quality"] - rows[c]["base"]["quality"] for c in ("nevir-train", "contrast-dev")) / 2
    low = rows["contrast-dev"]["duo_vs_base"]["ci95"][0]
    ms = rows.get("msmarco-dev")
    drop = None if ms is None else round(ms["duo"]["quality"] - ms["base"]["quality"], 4)
    if not (gain >= 0.02 and low > 0):
        recommended: bool | None = False
    elif drop is None:
        recommended = None  # the paired part passes; MS MARCO dev still to measure
    else:
        recommended = drop >= -0.01
    return {"paired_gain": round(gain, 4), "contrast_dev_ci_low": low, "msmarco_dev_change": drop,
            "recommended": recommended}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="the pointwise model (direct mode)")
    ap.add_argument("--duo-model", required=True, help="the duo judge (a model trained with the duo template)")
    ap.add_argument("--k", type=int, default=4, help="documents of each query the duo stage compares")
    ap.add_argument("--weights", type=float, nargs="+", default=[1.5], help="counter-query contrast weights")
    ap.add_argument("--collections", default="msmarco-dev,nevir-train,contrast-dev")
    ap.add_argument("--contrast-dev", default=None, help="paired dev groups (rank1 distill contrast --dev-out)")
    ap.add_argument("--exclude-dev", default=None, help="dev groups with the exclusion rules")
    ap.add_argument("--depth", type=int, default=100, help="DL19/DL20 BM25 candidates per query (msmarco-dev: 20)")
    ap.add_argument("--dev-queries", type=int, default=40)
    ap.add_argument("--nevir-pairs", type=int, default=1000)
    ap.add_argument("--excluir-items", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=0, help="first N queries / pairs / items of each (smoke tests)")
    add_engine_arguments(ap, batch_size=16)
    ap.add_argument("--store", default=None, help="score store (resumes; default: rank1's score cache)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    weights = sorted({0.0, *args.weights})
    options = backend_options(args.backend, dtype=args.dtype)
    plain = Reranker(RerankerConfig(contrast=0.0, model=args.model, mode="direct", fusion_weight=0.0,
                                    batch_size=args.batch_size, backend=args.backend, backend_options=options),
                     load=False)
    judge = Reranker(RerankerConfig(contrast=0.0, model=args.duo_model, mode="direct", fusion_weight=0.0,
                                    template=DUO_TEMPLATE, batch_size=args.batch_size, backend=args.backend,
                                    backend_options=options), load=False)
    report: dict[str, Any] = {**header(), "model": args.model, "duo_model": args.duo_model, "k": args.k,
                              "engine": plain.store_settings.engine, "duo_meta": judge.meta, "weights": weights,
                              "collections": {}}
    with ScoreStore(args.store or default_store_path()) as store:
        for name in args.collections.split(","):
            start = time.perf_counter()
            coll = collection(name, args)
            scores = judged(plain, coll, coll.topics, store)
            counters = judged(plain, coll, counter_topics(coll), store)
            bases: dict[str, Any] = {}
            for w in weights:
                mixed = {p: contrast_score(s, counters[p], w) if p in counters else s for p, s in scores.items()}
                units = ttc_stats.complete(coll, mixed)
                run = coll.scored(mixed, units)
                before, after = coll.values(run), coll.values(duo_rerank(judge, run, coll.corpus, coll.topics,
                                                                         args.k, store))
                bases[str(w)] = {"base": ttc_stats.mean_ci(before), "duo": ttc_stats.mean_ci(after),
                                 "duo_vs_base": ttc_stats.paired(after, before)}
            report["collections"][name] = {"metric": coll.metric, "units": len(coll.units),
                                           "seconds": round(time.perf_counter() - start, 1), "bases": bases}
            report["verdict"] = {w: verdict(report["collections"], w) for w in map(str, weights)}
            write_json(args.out, report)
            print(name, {w: (b["base"]["quality"], b["duo"]["quality"]) for w, b in bases.items()}, flush=True)
    plain.close()
    judge.close()


if __name__ == "__main__":
    main()
