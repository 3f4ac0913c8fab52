"""The test-time-compute curve: quality against generated tokens per pair.

Not a test. For direct mode, reasoning mode at each budget, and adaptive mode (direct for every pair,
reasoning for the top of each list), it measures nDCG@10 on DL19 and DL20 (BM25 candidates, first
``--queries`` judged queries, top ``--depth``) and NevIR paired accuracy (first ``--nevir-pairs`` test
pairs), with the generated reasoning tokens per pair. Writes ``benchmarks/results/budget.json`` and a PNG
plot. Judgements go through a score store: a rerun judges only what is missing, and adaptive mode reuses
the direct and reasoning judgements it shares with the other settings (its token count is that of its own
final judgements, so the curve is exact; its time is not measured separately).

Example::

    python -m benchmarks.budget --queries 8 --depth 10 --nevir-pairs 20 --budgets 32 128
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks._common import NEVIR_TEST, NEVIR_TRAIN, RESULTS, header, load_trec_dl, top, write_json
from rank1.metrics import evaluate, paired_accuracy, read_nevir_pairs
from rank1.models import BASE_MODEL
from rank1.reranker import Reranker, RerankerConfig, RerankResult
from rank1.store import ScoreStore, default_store_path


def settings(budgets: list[int], adaptive_top: int, adaptive_band: float = 0.0) -> list[dict[str, Any]]:
    """The points of the curve: direct, each reasoning budget, adaptive at the largest budget."""
    out: list[dict[str, Any]] = [{"mode": "direct"}]
    out += [{"mode": "reasoning", "budget": b} for b in budgets]
    out.append({"mode": "adaptive", "budget": max(budgets), "adaptive_top": adaptive_top,
                "adaptive_band": adaptive_band})
    return out


def collections(queries: int, depth: int, nevir_pairs: int,
                names: tuple[str, ...] = ("dl19", "dl20", "nevir")) -> dict[str, dict[str, Any]]:
    """Each collection's candidates and how its quality is measured (of ``names``; NevIR only with
    ``nevir_pairs``: ``nevir`` its test pairs, ``nevir-train`` its 50 train pairs, a dev set)."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("dl19", "dl20"):
        if name not in names:
            continue
        c = load_trec_dl(name, queries)
        run = {q: {d: c.run[q][d] for d in top(docs, depth)} for q, docs in c.run.items()}
        out[name] = {"run": run, "corpus": c.corpus, "topics": c.topics, "depth": depth, "qrels": c.qrels,
                     "metric": "nDCG@10", "measure": lambda r, qrels=c.qrels: evaluate(r, qrels, ["nDCG@10"])["nDCG@10"]}
    for name, path in (("nevir", NEVIR_TEST), ("nevir-train", NEVIR_TRAIN)):
        if not nevir_pairs or name not in names:
            continue
        topics, corpus, pairs = read_nevir_pairs(path)
        pairs = pairs[:nevir_pairs]
        run = {q: {da: 0.0, db: 0.0} for qa, da, qb, db in pairs for q in (qa, qb)}
        out[name] = {"run": run, "corpus": corpus, "topics": topics, "depth": 2, "pairs": pairs,
                        "metric": "paired_accuracy",
                        "measure": lambda r, pairs=pairs: paired_accuracy(r, pairs)}
    return out


def point(name: str, spec: dict[str, Any], result: RerankResult, seconds: float, quality: float,
          metric: str) -> dict[str, Any]:
    """One row of the curve."""
    s = result.stats
    return {"collection": name, **spec, "budget": spec.get("budget", 0), metric: quality,
            "gen_tokens_per_pair": round(s.generated_tokens / max(s.pairs, 1), 2), "pairs": s.pairs,
            "judged": s.judged, "cached": s.cached, "fallbacks": s.fallbacks, "seconds": round(seconds, 1)}


def plot(points: list[dict[str, Any]], path: Path) -> None:
    """Quality against generated tokens per pair, one panel per collection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(p["collection"] for p in points))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [p for p in points if p["collection"] == name]
        metric = "paired_accuracy" if "paired_accuracy" in rows[0] else "nDCG@10"
        curve = [p for p in rows if p["mode"] != "adaptive"]
        ax.plot([p["gen_tokens_per_pair"] for p in curve], [p[metric] for p in curve], "o-", label="direct / reasoning")
        for p in curve:
            ax.annotate("direct" if p["mode"] == "direct" else f"b={p['budget']}",
                        (p["gen_tokens_per_pair"], p[metric]), fontsize=8)
        for p in rows:
            if p["mode"] == "adaptive":
                ax.plot(p["gen_tokens_per_pair"], p[metric], "s", color="C3",
                        label=f"adaptive top-{p['adaptive_top']} band {p.get('adaptive_band', 0.0)}")
        if "bm25" in rows[0]:
            ax.axhline(rows[0]["bm25"], color="grey", ls="--", lw=1, label="BM25")
        ax.set(title=name, xlabel="generated tokens per pair", ylabel=metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=BASE_MODEL)
    ap.add_argument("--template", default=None)
    ap.add_argument("--queries", type=int, default=8, help="first N judged queries of DL19 and DL20")
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--nevir-pairs", type=int, default=20)
    ap.add_argument("--budgets", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--adaptive-top", type=int, default=3)
    ap.add_argument("--adaptive-band", type=float, default=0.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    ap.add_argument("--max-model-len", type=int, default=2048, help="vllm backend context length")
    ap.add_argument("--collections", default="dl19,dl20,nevir", help="comma-separated subset of dl19,dl20,nevir "
                    "(leave out what a distilled model was trained on)")
    ap.add_argument("--chunk-size", type=int, default=None, help="pairs per engine call (vllm: raise it)")
    ap.add_argument("--store", default=str(default_store_path()))
    ap.add_argument("--out", default=str(RESULTS / "budget.json"))
    args = ap.parse_args(argv)

    options = {"max_model_len": args.max_model_len} if args.backend == "vllm" else {}
    base = Reranker(RerankerConfig(contrast=0.0, model=args.model, template=args.template, batch_size=args.batch_size,
                                   mode="direct", adaptive_top=args.adaptive_top, adaptive_band=args.adaptive_band,
                                   backend=args.backend, backend_options=options))
    report: dict[str, Any] = {**header(), **{k: v for k, v in base.meta.items() if k not in ("mode", "budget")},
                              "queries": args.queries, "depth": args.depth, "nevir_pairs": args.nevir_pairs,
                              "collections": args.collections,
                              "points": []}
    with ScoreStore(args.store) as store:
        names = tuple(args.collections.split(","))
        for name, c in collections(args.queries, args.depth, args.nevir_pairs, names).items():
            first_stage = c["measure"](c["run"]) if c["metric"] == "nDCG@10" else None
            for spec in settings(args.budgets, args.adaptive_top, args.adaptive_band):
                reranker = base.replace(**spec)
                start = time.perf_counter()
                result = reranker.rerank_run(c["run"], c["corpus"], c["topics"], depth=c["depth"], store=store,
                                             chunk_size=args.chunk_size)
                row = point(name, spec, result, time.perf_counter() - start, c["measure"](result.scores()), c["metric"])
                if first_stage is not None:
                    row["bm25"] = first_stage
                report["points"].append(row)
                print(row, flush=True)
                write_json(args.out, report)
    base.close()
    plot(report["points"], Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
