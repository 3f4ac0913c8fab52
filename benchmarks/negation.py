"""Negation and exclusion on the test collections (issue 32): a new student against the default, measured once,
after the choice on the dev set.

Not a test. Arms: the baseline (``--baseline``, rank1's default model; ``rank1-0.5b-labels-v3`` for the results
up to ``rank1-0.5b-wise``) in direct mode, the new model (``--model``) in direct mode, and the new model in
reasoning mode at ``--budget`` (default: rank1's, ``rank1.scoring.DEFAULT_BUDGET``), its score blended with its
own direct P(true) by ``--direct-blend`` b (``rank1 rerank --direct-blend``: b = 0 is the post-reasoning P(true)
alone); with ``--no-reasoning`` the direct arms only. Every model scores alone (no fusion with BM25). With
``--baseline-blend B`` a fourth arm, ``baseline reasoning``, is the baseline's reasoning mode as ``rank1 rerank``
runs it: its explainer (:func:`rank1.students.explainer_for`; neg2h for the default) reasons, and the score is
blended with the *baseline's* direct P(true) by B (the default's dev-chosen blend).

Collections (``benchmarks.ttc_data``): NevIR test pairs (paired accuracy: both queries of a pair rank their own
passage first), ExcluIR and BoolQuestions NOT (the answer passage strictly above the trap) with every arm, and
DL19 / DL20 BM25 top ``--depth`` of every judged query (nDCG@10) in direct mode only. Per arm and collection:
the mean over units with a 95% bootstrap interval (units resampled: pairs, items, queries), coverage (a partial
row is the quality of its complete units), generated tokens per pair and fallbacks; and the paired differences
``new direct - baseline``, ``new reasoning - new direct`` and ``new reasoning - baseline`` with 95% paired
bootstrap intervals over the units both arms have.

Work runs cheapest first (both direct arms on NevIR, ExcluIR, BoolQuestions, DL19, DL20 in turn, then reasoning on
the first three), every
judgement goes through the score store, and the JSON is rewritten after every slice of ``--slice-pairs``
judgements: the same command resumes where a killed run stopped, and ``--no-judge`` rewrites the JSON from the
store alone (to commit partial results with their coverage).

Example (hours of CPU: run it in the background; the same command resumes)::

    nohup .venv/bin/python -m benchmarks.negation --model rank1-0.5b-neg --direct-blend 0.25 \\
        --out benchmarks/results/negation_test.json > negation.log 2>&1 &
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple

from benchmarks import ttc_data, ttc_stats
from benchmarks._common import add_engine_arguments, add_resume_arguments, header, reasons_through_explainer, write_json
from benchmarks.ttc import lookup, slices
from benchmarks.ttc_data import Collection, Pair
from rank1.adaptive import blend_score
from rank1.backends import backend_options
from rank1.models import DEFAULT_MODEL
from rank1.reranker import Reranker, RerankerConfig
from rank1.scoring import DEFAULT_BUDGET, Judgement
from rank1.store import ScoreStore
from rank1.students import explainer_for

TWO_PASSAGE = ("nevir", "excluir", "boolq")
RANKED = ("dl19", "dl20")


class Arm(NamedTuple):
    """One way of scoring: a model, a mode, and for reasoning the budget and the direct blend."""

    name: str
    model: str
    mode: str
    budget: int = 0
    blend: float = 0.0
    blend_with: str = ""
    """Whose direct P(true) a reasoning arm is blended with (empty: its own model's)."""

    @property
    def direct_model(self) -> str:
        """The model whose direct judgements this arm's blend needs."""
        return self.blend_with or self.model


def arms(args: argparse.Namespace) -> list[Arm]:
    """The baseline and the new model in direct mode, then the new model reasoning (and, with
    ``--baseline-blend``, the baseline's reasoning mode: its explainer's reasoning, blended with its direct P(true))."""
    out = [Arm("baseline direct", args.baseline, "direct"), Arm("new direct", args.model, "direct"),
           Arm("new reasoning", args.model, "reasoning", args.budget, args.direct_blend)]
    if args.baseline_blend is not None:
        out.append(Arm("baseline reasoning", explainer_for(args.baseline), "reasoning", args.budget,
                       args.baseline_blend, blend_with=args.baseline))
    return out


COMPARISONS = (("new direct", "baseline direct"), ("new reasoning", "new direct"),
               ("new reasoning", "baseline direct"), ("baseline reasoning", "baseline direct"),
               ("baseline reasoning", "new direct"))


def blended(reasoned: dict[Pair, Judgement], direct: dict[Pair, Judgement], b: float) -> dict[Pair, Judgement]:
    """Reasoning judgements with their score ``(1 - b) * reasoned + b * direct`` (pairs with both; b = 0: as
    they are)."""
    if not b:
        return reasoned
    return {p: j._replace(score=blend_score(j.score, direct[p].score, b)) for p, j in reasoned.items() if p in direct}


class Measure:
    """The rerankers (loaded only where a pair is missing from the store), the store and the report."""

    def __init__(self, args: argparse.Namespace, colls: dict[str, Collection], store: ScoreStore) -> None:
        self.args, self.colls, self.store = args, colls, store
        options = backend_options(args.backend, dtype=args.dtype)
        self.rerankers: dict[tuple[str, str], Reranker] = {}
        for arm in arms(args):
            key = (arm.model, arm.mode)
            if key not in self.rerankers:
                shared = self.rerankers.get((arm.model, "direct"))
                self.rerankers[key] = (shared.replace(mode=arm.mode, budget=args.budget, direct_blend=0.0)
                                       if shared else Reranker(  # raw judgements: the arms blend them here
                    RerankerConfig(contrast=0.0, model=arm.model, mode=arm.mode, budget=args.budget, fusion_weight=0.0,
                                   direct_blend=0.0,
                                   backend=args.backend, backend_options=options, batch_size=args.batch_size),
                    load=False))
        self.report: dict[str, Any] = {**header(), "settings": {
            k: getattr(args, k) for k in ("baseline", "model", "budget", "direct_blend", "baseline_blend", "backend",
                                          "dtype", "depth", "nevir_pairs", "excluir_items", "boolq_items", "limit",
                                          "batch_size")},
            "arms": [a._asdict() for a in arms(args)], "rows": {}, "paired": {}}

    def judgements(self, arm: Arm, coll: Collection) -> dict[Pair, Judgement]:
        """The stored judgements of ``arm`` on ``coll`` (reasoning: blended with the direct ones)."""
        found = lookup(self.rerankers[(arm.model, arm.mode)], coll, self.store)
        if arm.mode == "reasoning" and arm.blend:
            found = blended(found, lookup(self.rerankers[(arm.direct_model, "direct")], coll, self.store), arm.blend)
        return found

    def update(self) -> None:
        """Every row and comparison from the store; rewrite the JSON."""
        values: dict[tuple[str, str], dict[str, float]] = {}
        for name, coll in self.colls.items():
            for arm in arms(self.args):
                if arm.mode == "reasoning" and name in RANKED:
                    continue
                found = self.judgements(arm, coll)
                values[(arm.name, name)] = ttc_stats.quality(coll, found)
                self.report["rows"].setdefault(name, {})[arm.name] = {
                    "metric": coll.metric, **ttc_stats.mean_ci(values[(arm.name, name)]),
                    **ttc_stats.coverage(coll, found), **ttc_stats.judgement_stats(list(found.values()))}
            self.report["paired"][name] = {f"{a} - {b}": ttc_stats.paired(values[(a, name)], values[(b, name)])
                                           for a, b in COMPARISONS if (a, name) in values and (b, name) in values}
        write_json(self.args.out, self.report)

    def judge(self, arm: Arm, coll: Collection) -> None:
        """Judge ``arm``'s missing pairs of ``coll`` (and, for a blend, the direct ones it needs), a slice at a
        time, rewriting the JSON after each."""
        for mode in (("direct", "reasoning") if arm.mode == "reasoning" and arm.blend else (arm.mode,)):
            reranker = self.rerankers[(arm.direct_model if mode == "direct" else arm.model, mode)]
            have = lookup(reranker, coll, self.store)
            for part in slices([p for p in coll.pairs if p not in have], self.args.slice_pairs):
                run = {q: {d: coll.run[q][d] for d in docs} for q, docs in part.items()}
                reranker.rerank_run(run, coll.corpus, coll.topics, depth=max(map(len, run.values())),
                                    store=self.store)
                self.update()

    def run(self) -> None:
        """Direct arms everywhere, then reasoning on the two-passage collections; the JSON after each slice."""
        self.update()
        if self.args.no_judge:
            return
        order = [n for n in (*TWO_PASSAGE, *RANKED) if n in self.colls]
        for name in order:  # direct arms, collection by collection (NevIR first)
            for arm in arms(self.args)[:2]:
                self.judge(arm, self.colls[name])
        if not self.args.no_reasoning:
            for name in order:
                if name not in RANKED:
                    for arm in arms(self.args)[2:]:
                        self.judge(arm, self.colls[name])
        self.update()
        for reranker in self.rerankers.values():
            reranker.close()


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="the new model (embedded name, student, folder)")
    ap.add_argument("--baseline", default=DEFAULT_MODEL,
                    help="the model to beat (default: rank1's default; rank1-0.5b-labels-v3 for the results up to "
                         "rank1-0.5b-wise)")
    ap.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="reasoning budget (rank1's default)")
    ap.add_argument("--direct-blend", type=float, default=0.0, help="the blend chosen on dev (0: none)")
    ap.add_argument("--baseline-blend", type=float, default=None,
                    help="also the baseline's reasoning mode: its explainer's reasoning blended with the baseline's "
                         "direct P(true) by this (chosen on dev)")
    ap.add_argument("--collections", default=",".join((*TWO_PASSAGE, *RANKED)))
    ap.add_argument("--depth", type=int, default=100, help="DL19/DL20: BM25 candidates per query")
    ap.add_argument("--nevir-pairs", type=int, default=1000)
    ap.add_argument("--excluir-items", type=int, default=1000)
    ap.add_argument("--boolq-items", type=int, default=0, help="0: all 323")
    ap.add_argument("--limit", type=int, default=0, help="first N queries / pairs / items of each (smoke tests)")
    add_engine_arguments(ap, batch_size=16)
    add_resume_arguments(ap, "negation_test.json", slice_pairs=200)
    ap.add_argument("--no-reasoning", action="store_true",
                    help="judge the direct arms only (the report still shows what the store holds for reasoning)")
    args = ap.parse_args(argv)
    if not all(0.0 <= b <= 1.0 for b in (args.direct_blend, args.baseline_blend or 0.0)):
        ap.error("--direct-blend and --baseline-blend must lie in [0, 1]")
    if (why := reasons_through_explainer(args.model)) and not args.no_reasoning:
        ap.error(f"{why} (--model), or measure it as the baseline: --baseline {args.model} --baseline-blend B")
    return args


def main(argv: list[str] | None = None) -> None:
    """Measure (or, with ``--no-judge``, report what the store holds)."""
    args = parse(argv)
    names = args.collections.split(",")
    colls = ttc_data.load(names, args.limit, args.depth, args.nevir_pairs, args.excluir_items, args.boolq_items)
    with ScoreStore(args.store) as store:
        Measure(args, colls, store).run()


if __name__ == "__main__":
    main()
