"""The pure pieces of the test-time-compute curve (``benchmarks.ttc``): a point's numbers from its judgements,
the adaptive policy and its choice on the dev split, budget-forcing statistics, and timings that add up across
resumed runs. Nothing here loads a model or reads a file.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from benchmarks.student import bootstrap_ci, paired_diff
from benchmarks.ttc_data import Collection, Pair
from rank1.adaptive import select_for_reasoning
from rank1.scoring import Judgement


class Policy(NamedTuple):
    """When adaptive compute reasons on a pair, from direct-mode P(true) alone (see
    :func:`rank1.adaptive.select_for_reasoning`): the ``top`` best pairs of each query, and among its ``window``
    best those with ``|P(true) - 0.5| <= band``, or all of them when the query's direct scores span less than
    ``spread``."""

    top: int = 0
    window: int = 10
    band: float = 0.0
    spread: float = 0.0

    def select(self, scores: Sequence[float]) -> list[int]:
        """Indices of the pairs of one query (direct P(true), in any order) that are reasoned on."""
        return select_for_reasoning(scores, self.top, self.band, window=self.window, spread=self.spread)

    def label(self) -> str:
        """A short name, e.g. ``top=0 window=3 band=0.2 spread=0.05``."""
        return " ".join(f"{k}={v}" for k, v in self._asdict().items())


NEVER = Policy(0, 0, 0.0, 0.0)
ALWAYS = Policy(10**6, 10**6, 0.5, 0.0)


def policy_grid(tops: Sequence[int] = (0, 1, 3), windows: Sequence[int] = (1, 2, 3, 5, 10),
                bands: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
                spreads: Sequence[float] = (0.0, 0.05, 0.1, 0.2)) -> list[Policy]:
    """The policies the dev split chooses from, cheapest-looking first: never reason, every combination, and
    always reason."""
    grid = [Policy(*p) for p in itertools.product(tops, windows, bands, spreads)]
    return [NEVER, *grid, ALWAYS]


def select_pairs(policy: Policy, coll: Collection, direct: Mapping[Pair, float]) -> set[Pair]:
    """The pairs ``policy`` reasons on, per query of ``coll``, for the queries whose direct scores are all there."""
    by_query: dict[str, list[Pair]] = {}
    for pair in coll.pairs:
        by_query.setdefault(pair[0], []).append(pair)
    chosen: set[Pair] = set()
    for pairs in by_query.values():
        if all(p in direct for p in pairs):
            chosen.update(pairs[i] for i in policy.select([direct[p] for p in pairs]))
    return chosen


def adaptive_scores(policy: Policy, coll: Collection, direct: Mapping[Pair, Judgement],
                    deep: Mapping[Pair, Judgement]) -> tuple[dict[Pair, Judgement], set[Pair]]:
    """What ``policy`` makes of stored judgements: per pair the reasoning judgement where it reasons (and that
    judgement exists), the direct one elsewhere; pairs it reasons on but that have no reasoning judgement yet are
    left out (their units are incomplete). Returns the judgements and the pairs reasoned on."""
    chosen = select_pairs(policy, coll, {p: j.score for p, j in direct.items()})
    out = {p: (deep[p] if p in chosen else j) for p, j in direct.items() if p not in chosen or p in deep}
    return out, chosen & set(out)


def complete(coll: Collection, have: Iterable[Pair] | Mapping[Pair, Any]) -> list[str]:
    """The units of ``coll`` whose judgements are all in ``have``."""
    have = have if isinstance(have, (set, dict)) else set(have)
    return [u for u, pairs in coll.units.items() if pairs and all(p in have for p in pairs)]


def coverage(coll: Collection, have: Mapping[Pair, Any]) -> dict[str, Any]:
    """Pairs judged of pairs planned, and complete units of units."""
    pairs = coll.pairs
    judged = sum(p in have for p in pairs)
    return {"pairs_planned": len(pairs), "pairs_judged": judged,
            "coverage": round(judged / len(pairs), 4) if pairs else 0.0,
            "units": len(coll.units), "units_complete": len(complete(coll, have))}


def mean_ci(values: Mapping[str, float]) -> dict[str, Any]:
    """Mean of per-unit values and its 95% bootstrap interval (units resampled; 2,000 draws, seed 0)."""
    if not values:
        return {"quality": None, "ci95": None}
    return {"quality": round(sum(values.values()) / len(values), 4), "ci95": bootstrap_ci(dict(values), {})}


def paired(values: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, Any] | None:
    """Mean difference ``values - reference`` over the units both have, with its 95% paired bootstrap interval."""
    common = sorted(set(values) & set(reference))
    if not common:
        return None
    return {**paired_diff({u: values[u] for u in common}, {u: reference[u] for u in common}), "units": len(common)}


def quality(coll: Collection, judgements: Mapping[Pair, Judgement]) -> dict[str, float]:
    """Per-unit quality of the complete units (none: empty)."""
    scores = {p: j.score for p, j in judgements.items()}
    units = complete(coll, scores)
    return coll.values(coll.scored(scores, units)) if units else {}


def judgement_stats(judgements: Sequence[Judgement], pairs: int | None = None) -> dict[str, Any]:
    """Generated tokens per pair (over ``pairs``, default the judgements), fallbacks, and the shares of
    judgements that closed ``</think>`` themselves and where the fallback fired."""
    n = len(judgements)
    fallbacks = sum(j.fallback for j in judgements)
    tokens = sum(j.generated_tokens for j in judgements)
    denominator = n if pairs is None else pairs
    return {"gen_tokens_per_pair": round(tokens / denominator, 2) if denominator else None, "fallbacks": fallbacks,
            "fallback_share": round(fallbacks / n, 4) if n else None,
            "closed_think_share": round(1 - fallbacks / n, 4) if n else None}


def _same_verdict(judgements: Mapping[Pair, Judgement], reference: Mapping[Pair, Judgement],
                  pairs: Sequence[Pair]) -> float | None:
    """The share of ``pairs`` whose true/false decision (P(true) > 0.5) is the same in both (None: no pairs)."""
    same = sum((judgements[p].score > 0.5) == (reference[p].score > 0.5) for p in pairs)
    return round(same / len(pairs), 4) if pairs else None


def agreement(judgements: Mapping[Pair, Judgement], reference: Mapping[Pair, Judgement]) -> dict[str, Any]:
    """Budget forcing against the largest budget: whether the true/false decision (P(true) > 0.5) agrees with
    ``reference``'s, over the pairs judged at both; and the same over the pairs whose answer was forced here
    (fallback) while the reference closed ``</think>`` itself (the unconstrained answer)."""
    both = [p for p in judgements if p in reference]
    forced = [p for p in both if judgements[p].fallback and not reference[p].fallback]
    return {"agree_with_max_budget": _same_verdict(judgements, reference, both), "pairs_at_both": len(both),
            "forced_agree_with_unforced": _same_verdict(judgements, reference, forced), "forced_pairs": len(forced)}


def direct_agreement(judgements: Mapping[Pair, Judgement], direct: Mapping[Pair, Judgement]) -> dict[str, Any]:
    """Whether the reasoning's verdict (P(true) > 0.5 after reasoning) is the direct score's, over the pairs
    judged both ways: with blend 1 (the default) the direct score is the one shown and the reasoning its
    explanation, so this is the share of traces that argue for the score they come with."""
    both = [p for p in judgements if p in direct]
    return {"agree_with_direct": _same_verdict(judgements, direct, both), "pairs_with_direct": len(both)}


def choose(grid: Sequence[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """The cheapest grid row (fewest generated tokens per pair, then fewest pairs reasoned on, then the earlier
    row) whose quality is within ``tolerance`` of the best row's."""
    best = max(r["quality"] for r in grid)
    ok = [(r["gen_tokens_per_pair"], r["reasoned_share"], i) for i, r in enumerate(grid)
          if r["quality"] >= best - tolerance - 1e-12]
    return grid[min(ok)[2]]


def pareto(grid: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats on both quality and tokens per pair, cheapest first (one row per point)."""
    rows = sorted(grid, key=lambda r: (r["gen_tokens_per_pair"], -r["quality"]))
    front: list[dict[str, Any]] = []
    for r in rows:
        if not front or r["quality"] > front[-1]["quality"]:
            front.append(r)
    return front


def grid_rows(policies: Sequence[Policy], coll: Collection, direct: Mapping[Pair, Judgement],
              deep: Mapping[Pair, Judgement]) -> list[dict[str, Any]]:
    """Each policy's quality (mean over the units complete for every policy), tokens per pair and share of pairs
    reasoned on, from the stored direct and reasoning judgements of ``coll``."""
    units = complete(coll, set(direct) & set(deep))
    pairs = {p for u in units for p in coll.units[u]}
    rows = []
    for policy in policies:
        scores, reasoned = adaptive_scores(policy, coll, direct, deep)
        values = coll.values(coll.scored({p: j.score for p, j in scores.items()}, units))
        tokens = sum(deep[p].generated_tokens for p in reasoned if p in pairs)
        rows.append({"policy": policy._asdict(), "quality": round(sum(values.values()) / max(len(values), 1), 4),
                     "gen_tokens_per_pair": round(tokens / max(len(pairs), 1), 2),
                     "reasoned_share": round(sum(p in reasoned for p in pairs) / max(len(pairs), 1), 4)})
    return rows


def add_timing(prior: Mapping[str, Any] | None, judged: int, seconds: float) -> dict[str, Any]:
    """Timing of the judgements made by this script for one row: this run's added to what earlier runs recorded
    (``prior``, the row's ``timing`` in the JSON they left); pairs/s only where something was judged."""
    prior = prior or {}
    total, secs = prior.get("judged", 0) + judged, round(prior.get("seconds", 0.0) + seconds, 1)
    runs = prior.get("runs", 0) + (1 if judged else 0)
    out: dict[str, Any] = {"judged": total, "seconds": secs, "runs": runs}
    if total and secs > 0:
        out["pairs_per_second"] = round(total / secs, 3)
    return out
