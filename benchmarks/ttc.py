"""The test-time-compute curve (issue 33): quality against generated tokens per pair, sized to run in the
background on a CPU until it is done.

Not a test. Points: direct mode (budget 0, ``--direct-model``), reasoning mode at each ``--budgets`` (the
``--reasoning-model``, by default the direct model's explainer), and adaptive compute: direct P(true) for every
pair, the reasoning judgement at ``--adaptive-budget`` where a policy (``benchmarks.ttc_stats.Policy``:
|P(true) - 0.5|, rank in the query, the query's score spread) says to reason. The policy is chosen on the MS
MARCO dev split only (``--choose-policy``: the cheapest grid setting within ``--tolerance`` of the best dev
nDCG@10) and applied unchanged to every test collection. Collections (``benchmarks.ttc_data``): DL19 and DL20 BM25 top-10 of every
judged query, NevIR test pairs (paired accuracy), ExcluIR and BoolQuestions NOT (the answer passage strictly
above the trap), Vaswani BM25 top-10; every model scores alone (no fusion with BM25).

Per point and collection: quality with a 95% bootstrap interval (units resampled: queries, NevIR pairs, trap
items), the paired difference to direct mode with its 95% paired bootstrap interval, generated tokens per pair,
fallbacks, pairs/s of the judgements this script made (``timing``, added up over resumed runs; pairs read from
the store are ``cached_at_start``), coverage (pairs judged / planned, complete units: a partial point is the
quality of its complete units) and, for reasoning, budget forcing: the share of pairs that closed ``</think>``
themselves, the share where the fallback fired, and whether the decision (P(true) > 0.5) agrees with the largest
budget's.

Judgements per point at full size: 4,346 (DL19 430 + DL20 540 + NevIR 1,200, four per pair + ExcluIR 600 +
BoolQuestions NOT 646 + Vaswani 930); ``--choose-policy`` adds the dev split's 300 pairs (30 queries x 10) in
direct mode and at the adaptive budget. The adaptive point's reasoning judgements are the adaptive budget's, so
they are judged once for both points.

Work runs cheapest first (direct everywhere; the dev split and the policy; adaptive; then each budget in
increasing order), every judgement goes through the score store, and the JSON is rewritten after every slice of
``--slice-pairs`` judgements: a killed run leaves a valid JSON, and the same command resumes where it stopped.
``--no-judge`` rewrites the JSON from the store alone (to commit partial results); ``--table`` prints the
markdown table of an existing JSON.

Example (the full run, hours of background CPU; the same command resumes; vLLM: ``--backend vllm --chunk-size 256
--slice-pairs 256``)::

    nohup .venv/bin/python -m benchmarks.ttc --choose-policy --out benchmarks/results/ttc.json > ttc.log 2>&1 &
    .venv/bin/python -m benchmarks.ttc --no-judge    # the JSON and plot from what the store holds so far
    .venv/bin/python -m benchmarks.ttc --table       # the markdown table for benchmarks/README.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

from benchmarks import ttc_data, ttc_stats
from benchmarks._common import add_engine_arguments, add_resume_arguments, header, reasons_through_explainer, write_json
from benchmarks.ttc_data import Collection, Pair
from benchmarks.ttc_report import plot, table
from rank1.backends import backend_options
from rank1.models import DEFAULT_MODEL
from rank1.reranker import Reranker, RerankerConfig
from rank1.scoring import Judgement
from rank1.store import ScoreStore
from rank1.students import explainer_for


class Point(NamedTuple):
    """A point of the curve: ``direct`` (budget 0), ``adaptive`` or ``b{budget}`` (reasoning)."""

    name: str
    mode: str
    budget: int


def points(budgets: list[int], adaptive_budget: int) -> list[Point]:
    """The points, cheapest first."""
    return [Point("direct", "direct", 0), Point("adaptive", "adaptive", adaptive_budget),
            *(Point(f"b{b}", "reasoning", b) for b in sorted(set(budgets)))]


def slices(pairs: list[Pair], size: int) -> list[dict[str, list[str]]]:
    """``pairs`` grouped by query (first-seen order) into slices of whole queries, each of at least ``size``
    pairs but the last."""
    by_query: dict[str, list[str]] = {}
    for qid, docid in pairs:
        by_query.setdefault(qid, []).append(docid)
    out: list[dict[str, list[str]]] = [{}]
    for qid, docs in by_query.items():
        if sum(map(len, out[-1].values())) >= size:
            out.append({})
        out[-1][qid] = docs
    return [s for s in out if s]


def load_report(path: Path) -> dict[str, Any]:
    """The JSON an earlier run left at ``path`` (its rows, collections and policy choices), or an empty one: a run
    on some collections keeps what earlier runs wrote about the others."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        report = {}
    return {"rows": list(report.get("rows", [])), "policies": dict(report.get("policies", {})),
            "collections": dict(report.get("collections", {}))}


def row_id(row: dict[str, Any]) -> tuple[str, ...]:
    """What makes a row: collection, point, model(s) and engine (other models or engines add rows)."""
    return row["collection"], row["point"], row["models"], row["engine"]


def upsert(rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """Replace the row with ``row``'s id, else append ``row``."""
    for i, old in enumerate(rows):
        if row_id(old) == row_id(row):
            rows[i] = row
            return
    rows.append(row)


def lookup(reranker: Reranker, coll: Collection, store: ScoreStore,
           pairs: list[Pair] | None = None, other_budgets: bool = True) -> dict[Pair, Judgement]:
    """The stored judgements of ``coll``'s pairs (or of ``pairs``) under ``reranker``'s settings; with
    ``other_budgets``, as the reranker reads them (a trace that stopped before another budget counts for this
    one, :meth:`rank1.store.ScoreStore.get_many`)."""
    settings = reranker.store_settings
    keys = {p: settings.key(coll.topics[p[0]].full_text, coll.corpus[p[1]].full_text)
            for p in (coll.pairs if pairs is None else pairs)}
    found = store.get_many(keys.values(), other_budgets=other_budgets and reranker.budget_free_prompts)
    return {p: found[k] for p, k in keys.items() if k in found}


class Curve:
    """One run of the curve: the rerankers, the store, the report, and this run's timings."""

    def __init__(self, args: argparse.Namespace, colls: dict[str, Collection], store: ScoreStore) -> None:
        self.args, self.colls, self.store = args, colls, store
        options = backend_options(args.backend, dtype=args.dtype,
                                  **({"max_model_len": args.max_model_len} if args.backend == "vllm" else {}))
        self.direct = Reranker(RerankerConfig(contrast=0.0, model=args.direct_model, mode="direct", fusion_weight=0.0,
                                              backend=args.backend, backend_options=options,
                                              batch_size=args.batch_size), load=False)
        self._deep: dict[int, Reranker] = {}
        self.max_budget = max(args.budgets)
        self.prior = load_report(Path(args.out))
        self.report: dict[str, Any] = {**header(), "settings": self.settings(),
                                       "collections": self.prior["collections"],
                                       "policies": self.prior["policies"], "rows": list(self.prior["rows"])}
        self.timing: dict[tuple[str, ...], list[float]] = {}
        self.cached: dict[tuple[str, ...], int] = {}

    def settings(self) -> dict[str, Any]:
        """The run's settings, for the JSON."""
        a = self.args
        return {k: getattr(a, k) for k in ("direct_model", "reasoning_model", "budgets", "adaptive_budget",
                                           "backend", "dtype", "depth", "limit_queries", "nevir_pairs",
                                           "excluir_items", "boolq_items", "dev_queries", "tolerance")} | {
            "fusion_weight": 0.0, "units": "queries (nDCG@10), NevIR pairs, trap items; bootstrap: 2,000 draws, seed 0"}

    def deep(self, budget: int) -> Reranker:
        """The reasoning reranker at ``budget``: one model for every budget (shared with direct mode when both are
        the same model), loaded only when a pair is missing from the store; raw judgements (no direct blend, so
        no direct forward either, whatever blend the reasoning model ships with)."""
        if budget not in self._deep:
            if self._deep:
                made = next(iter(self._deep.values())).replace(budget=budget)
            elif self.args.reasoning_model == self.args.direct_model:
                made = self.direct.replace(mode="reasoning", budget=budget, direct_blend=0.0)  # raw judgements
            else:
                made = Reranker(dataclasses.replace(self.direct.config, model=self.args.reasoning_model,
                                                    mode="reasoning", budget=budget, direct_blend=0.0), load=False)
            self._deep[budget] = made
        return self._deep[budget]

    @property
    def policy_key(self) -> str:
        """Where the policy chosen for these models, adaptive budget and engine is kept in the JSON."""
        a = self.args
        return f"{a.direct_model} + {a.reasoning_model} b{a.adaptive_budget} ({self.direct.store_settings.engine})"

    def reranker(self, point: Point) -> Reranker:
        """What judges ``point``'s new pairs: direct mode, else reasoning at its budget."""
        return self.direct if point.mode == "direct" else self.deep(point.budget)

    def ident(self, collection: str, point: Point) -> tuple[str, ...]:
        """The row id of ``point`` on ``collection`` in this run (see :func:`row_id`)."""
        a = self.args
        models = {"direct": a.direct_model, "adaptive": f"{a.direct_model} + {a.reasoning_model}"}
        return collection, point.name, models.get(point.mode, a.reasoning_model), self.direct.store_settings.engine

    def own(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` is a point of this run's models and engine."""
        return row_id(row) == self.ident(row["collection"], Point(row["point"], row["mode"], 0))

    def save(self) -> None:
        """Rewrite the JSON (atomically: a killed run leaves the previous version)."""
        write_json(self.args.out, self.report)

    def judge(self, reranker: Reranker, coll: Collection, pairs: list[Pair],
              after: Callable[[int, float], None]) -> None:
        """Judge the pairs of ``pairs`` not in the store, a slice at a time; ``after(judged, seconds)`` after each."""
        if self.args.no_judge:
            return
        have = lookup(reranker, coll, self.store, pairs)
        for part in slices([p for p in pairs if p not in have], self.args.slice_pairs):
            run = {q: {d: coll.run[q][d] for d in docs} for q, docs in part.items()}
            result = reranker.rerank_run(run, coll.corpus, coll.topics, depth=max(map(len, run.values())),
                                         store=self.store, chunk_size=self.args.chunk_size)
            after(result.stats.judged, result.stats.seconds)

    def policy(self) -> ttc_stats.Policy | None:
        """The adaptive policy chosen on the dev split (by this run or an earlier one), if any."""
        entry = self.report["policies"].get(self.policy_key)
        return ttc_stats.Policy(**entry["chosen"]["policy"]) if entry else None

    def choose_policy(self) -> None:
        """Judge the dev split in direct mode and at the adaptive budget, grid-search the policy there, record
        the choice."""
        coll, deep = self.colls[ttc_data.DEV], self.deep(self.args.adaptive_budget)
        for reranker in (self.direct, deep):
            self.judge(reranker, coll, coll.pairs, lambda *_: None)
        direct, reasoned = lookup(self.direct, coll, self.store), lookup(deep, coll, self.store)
        if not ttc_stats.complete(coll, set(direct) & set(reasoned)):
            print("choose-policy: no dev query is judged in both modes yet; no policy chosen", flush=True)
            return
        grid = ttc_stats.grid_rows(ttc_stats.policy_grid(), coll, direct, reasoned)
        self.report["policies"][self.policy_key] = {
            "chosen": ttc_stats.choose(grid, self.args.tolerance), "tolerance": self.args.tolerance,
            "chosen_on": f"msmarco-dev: {len(ttc_stats.complete(coll, set(direct) & set(reasoned)))} held-out "
                         f"queries, BM25 top-{self.args.depth}, nDCG@10 (never a test collection)",
            "never": grid[0], "always": grid[-1], "pareto": ttc_stats.pareto(grid), "grid_size": len(grid)}
        print("policy:", self.report["policies"][self.policy_key]["chosen"], flush=True)
        self.save()

    def row(self, coll: Collection, point: Point) -> dict[str, Any] | None:
        """``point`` on ``coll`` from the stored judgements (``None``: adaptive without a chosen policy)."""
        direct = lookup(self.direct, coll, self.store)
        extra: dict[str, Any] = {}
        if point.mode == "direct":
            judgements = direct
            stats = ttc_stats.judgement_stats(list(judgements.values()))
        elif point.mode == "adaptive":
            policy = self.policy()
            if policy is None:
                return None
            judgements, reasoned = ttc_stats.adaptive_scores(policy, coll, direct, lookup(self.deep(point.budget),
                                                                                       coll, self.store))
            pairs = {p for u in ttc_stats.complete(coll, judgements) for p in coll.units[u]}
            stats = ttc_stats.judgement_stats([judgements[p] for p in reasoned & pairs], pairs=len(pairs))
            extra = {"policy": policy._asdict(), "reasoned_pairs": len(reasoned & pairs),
                     "reasoned_share": round(len(reasoned & pairs) / len(pairs), 4) if pairs else None}
        else:
            judgements = lookup(self.deep(point.budget), coll, self.store)
            stats = ttc_stats.judgement_stats(list(judgements.values()))
            extra = ttc_stats.direct_agreement(judgements, direct)
            extra["from_other_budgets"] = len(judgements) - len(lookup(self.deep(point.budget), coll, self.store,
                                                                       other_budgets=False))
            if point.budget != self.max_budget:
                extra.update(ttc_stats.agreement(judgements, lookup(self.deep(self.max_budget), coll, self.store)))
        values = ttc_stats.quality(coll, judgements)
        ident = self.ident(coll.name, point)
        self.cached.setdefault(ident, len(judgements))
        cov = ttc_stats.coverage(coll, judgements)
        prior = next((r for r in self.prior["rows"] if row_id(r) == ident
                      and r.get("pairs_planned") == cov["pairs_planned"]), None)
        judged, seconds = self.timing.get(ident, (0, 0.0))
        return {"collection": coll.name, "point": point.name, "mode": point.mode, "budget": point.budget,
                "models": ident[2], "engine": ident[3], "metric": coll.metric,
                **ttc_stats.mean_ci(values), "bm25": ttc_stats.mean_ci(coll.bm25())["quality"],
                "diff_vs_direct": None if point.mode == "direct" else ttc_stats.paired(
                    values, ttc_stats.quality(coll, direct)),
                **stats, **extra, **cov, "cached_at_start": self.cached[ident],
                "timing": ttc_stats.add_timing(prior and prior.get("timing"), int(judged), seconds)}

    def update(self, coll: Collection, point: Point) -> None:
        """Recompute ``point`` on ``coll`` from the store and rewrite the JSON."""
        row = self.row(coll, point)
        if row is not None:
            upsert(self.report["rows"], row)
            self.report["collections"][coll.name] = {
                "metric": coll.metric, "units": len(coll.units), "pairs_per_point": len(coll.pairs),
                "bm25": ttc_stats.mean_ci(coll.bm25()),
                "coverage": {r["point"]: f"{r['pairs_judged']}/{r['pairs_planned']}" for r in self.report["rows"]
                             if r["collection"] == coll.name and self.own(r)}}
        self.save()

    def run_point(self, coll: Collection, point: Point) -> None:
        """Judge what ``point`` needs on ``coll`` (adaptive: the pairs its policy reasons on), writing the JSON
        after every slice."""
        ident = self.ident(coll.name, point)
        self.update(coll, point)  # what the store holds already (and cached_at_start)

        def after(judged: int, seconds: float) -> None:
            total = self.timing.setdefault(ident, [0, 0.0])
            total[0], total[1] = total[0] + judged, total[1] + seconds
            self.update(coll, point)

        if point.mode == "adaptive":
            policy = self.policy()
            if policy is None:
                print(f"{coll.name}: no adaptive policy chosen yet (run with --choose-policy)", flush=True)
                return
            direct = {p: j.score for p, j in lookup(self.direct, coll, self.store).items()}
            pairs = [p for p in coll.pairs if p in ttc_stats.select_pairs(policy, coll, direct)]
        else:
            pairs = coll.pairs
        self.judge(self.reranker(point), coll, pairs, after)

    def run(self) -> None:
        """Every point on every test collection, cheapest first; then every row once more, so that agreement
        with the largest budget and differences to direct mode use every judgement made."""
        tests = [c for name, c in self.colls.items() if name != ttc_data.DEV]
        plan = points(self.args.budgets, self.args.adaptive_budget)
        for point in plan:
            if point.mode == "adaptive" and self.args.choose_policy:
                self.choose_policy()
            for coll in tests:
                self.run_point(coll, point)
            if point.mode == "direct" and self.args.choose_policy:  # the dev split too, while the model is loaded
                self.judge(self.direct, self.colls[ttc_data.DEV], self.colls[ttc_data.DEV].pairs, lambda *_: None)
            if point.mode == "direct" and self.args.reasoning_model != self.args.direct_model:
                self.direct.close()
        for point in plan:
            for coll in tests:
                self.update(coll, point)
        self.direct.close()
        for reranker in self._deep.values():
            reranker.close()


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with ``--model`` and the default ``--adaptive-budget`` resolved."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="one model for both --direct-model and --reasoning-model")
    ap.add_argument("--direct-model", default=DEFAULT_MODEL)
    ap.add_argument("--reasoning-model", default=None,
                    help="default: the direct model's explainer (rank1.students.explainer_for; "
                         "rank1-0.5b-reasoning for rank1-0.5b-labels-v3)")
    ap.add_argument("--budgets", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--adaptive-budget", type=int, default=None,
                    help="the budget adaptive compute reasons at (default 128 if among --budgets, else the largest)")
    add_engine_arguments(ap, batch_size=8)
    ap.add_argument("--max-model-len", type=int, default=2048, help="vllm backend context length")
    ap.add_argument("--chunk-size", type=int, default=None, help="pairs per engine call (vllm: raise it)")
    ap.add_argument("--collections", default=",".join(ttc_data.NAMES),
                    help=f"comma-separated subset of {','.join(ttc_data.NAMES)}")
    ap.add_argument("--limit-queries", type=int, default=0, help="first N queries / items of each (smoke tests)")
    ap.add_argument("--depth", type=int, default=10, help="BM25 candidates per query (DL19, DL20, Vaswani, dev)")
    ap.add_argument("--nevir-pairs", type=int, default=300)
    ap.add_argument("--excluir-items", type=int, default=300)
    ap.add_argument("--boolq-items", type=int, default=0, help="0: all 323")
    ap.add_argument("--choose-policy", action="store_true",
                    help="judge the MS MARCO dev split and choose the adaptive policy there")
    ap.add_argument("--dev-queries", type=int, default=30)
    ap.add_argument("--tolerance", type=float, default=0.01, help="dev nDCG@10 the cheapest policy may lose")
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    add_resume_arguments(ap, "ttc.json", slice_pairs=100)
    args = ap.parse_args(argv)
    if args.model:
        args.direct_model = args.reasoning_model = args.model
    if args.reasoning_model is None:
        args.reasoning_model = explainer_for(args.direct_model)
    if why := reasons_through_explainer(args.reasoning_model):
        ap.error(f"{why} (--reasoning-model, or --direct-model {args.reasoning_model} alone)")
    if args.adaptive_budget is None:
        args.adaptive_budget = 128 if 128 in args.budgets else max(args.budgets)
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the curve (or print the table of ``--out``) and plot it."""
    args = parse(argv)
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return
    names = args.collections.split(",") + ([ttc_data.DEV] if args.choose_policy else [])
    colls = ttc_data.load(names, args.limit_queries, args.depth, args.nevir_pairs, args.excluir_items,
                          args.boolq_items, args.dev_queries)
    with ScoreStore(args.store) as store:
        curve = Curve(args, colls, store)
        curve.run()
    plot(curve.report, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
