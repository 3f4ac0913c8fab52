"""The pure pieces of the test-time-compute curve (``benchmarks.ttc``): policy, bootstrap, coverage, choice on
the dev split, budget forcing, resuming from a partial JSON, table and plot. No model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import ttc, ttc_stats
from benchmarks.ttc_data import Collection, ranked
from benchmarks.ttc_report import plot, table
from benchmarks.ttc_stats import ALWAYS, NEVER, Policy
from rank1.records import Document, Query
from rank1.scoring import Judgement


@pytest.fixture
def toy() -> Collection:
    """Two queries, three passages each (one with empty text, never judged); d1 is the relevant one of q1,
    e2 of q2."""
    run = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q2": {"e1": 3.0, "e2": 2.0, "e3": 1.0}}
    corpus = {d: Document(d, "" if d == "e3" else f"text {d}") for docs in run.values() for d in docs}
    topics = {q: Query(q, f"query {q}") for q in run}
    return ranked("toy", run, corpus, topics, {"q1": {"d1": 1}, "q2": {"e2": 1}})


def J(score: float, tokens: int = 0, fallback: bool = False) -> Judgement:
    return Judgement(score, generated_tokens=tokens, fallback=fallback)


DIRECT = {("q1", "d1"): J(0.45), ("q1", "d2"): J(0.9), ("q1", "d3"): J(0.1),
          ("q2", "e1"): J(0.8), ("q2", "e2"): J(0.3)}
DEEP = {("q1", "d1"): J(0.99, 20), ("q1", "d2"): J(0.2, 40, True), ("q1", "d3"): J(0.05, 10),
        ("q2", "e1"): J(0.05, 30), ("q2", "e2"): J(0.1, 50)}


def test_units_skip_empty_passages_and_score_them_last(toy: Collection) -> None:
    assert toy.units == {"q1": [("q1", "d1"), ("q1", "d2"), ("q1", "d3")], "q2": [("q2", "e1"), ("q2", "e2")]}
    assert toy.scored({p: 0.5 for p in toy.pairs}, ["q2"]) == {"q2": {"e1": 0.5, "e2": 0.5, "e3": -1.0}}


def test_policy_selects_per_query(toy: Collection) -> None:
    direct = {p: j.score for p, j in DIRECT.items()}
    # the best pair of each query, and within the 2 best those within 0.1 of 0.5
    top1_band = {("q1", "d2"), ("q1", "d1"), ("q2", "e1")}
    assert ttc_stats.select_pairs(Policy(top=1, window=2, band=0.1), toy, direct) == top1_band
    assert ttc_stats.select_pairs(Policy(top=0, window=3, band=0.1), toy, direct) == {("q1", "d1")}
    assert ttc_stats.select_pairs(Policy(top=0, window=1, band=0.1), toy, direct) == set()  # d1 is second
    # q2's two scores span 0.5: below a spread of 0.6, its head (window 1) is reasoned
    assert ttc_stats.select_pairs(Policy(window=1, spread=0.6), toy, direct) == {("q2", "e1")}
    assert ttc_stats.select_pairs(NEVER, toy, direct) == set()
    assert ttc_stats.select_pairs(ALWAYS, toy, direct) == set(direct)
    partial = {p: s for p, s in direct.items() if p != ("q1", "d3")}  # q1 is not fully judged directly: skipped
    assert ttc_stats.select_pairs(ALWAYS, toy, partial) == {("q2", "e1"), ("q2", "e2")}


def test_adaptive_scores_mix_and_leave_out_missing_reasoning(toy: Collection) -> None:
    policy = Policy(top=1, window=0)
    scores, reasoned = ttc_stats.adaptive_scores(policy, toy, DIRECT, DEEP)
    assert reasoned == {("q1", "d2"), ("q2", "e1")}
    assert scores[("q1", "d2")] == DEEP[("q1", "d2")] and scores[("q1", "d1")] == DIRECT[("q1", "d1")]
    missing = {p: j for p, j in DEEP.items() if p != ("q2", "e1")}
    scores, reasoned = ttc_stats.adaptive_scores(policy, toy, DIRECT, missing)
    assert ("q2", "e1") not in scores and reasoned == {("q1", "d2")}
    assert ttc_stats.complete(toy, scores) == ["q1"]


def test_bootstrap_on_toy_data() -> None:
    same = {f"u{i}": 0.5 for i in range(20)}
    assert ttc_stats.mean_ci(same) == {"quality": 0.5, "ci95": [0.5, 0.5]}
    assert ttc_stats.mean_ci({}) == {"quality": None, "ci95": None}
    values = {f"u{i}": float(i % 2) for i in range(40)}
    row = ttc_stats.mean_ci(values)
    assert row["quality"] == 0.5 and row["ci95"][0] < 0.5 < row["ci95"][1]
    better = {u: v + 0.1 for u, v in values.items()}
    diff = ttc_stats.paired(better, {**values, "other": 1.0})  # over the common units only
    assert diff["units"] == 40 and diff["diff"] == 0.1 and diff["ci95"] == pytest.approx([0.1, 0.1])
    assert ttc_stats.paired(values, {"x": 1.0}) is None


def test_coverage_and_quality_count_complete_units_only(toy: Collection) -> None:
    partial = {p: j for p, j in DIRECT.items() if p != ("q2", "e2")}
    assert ttc_stats.coverage(toy, partial) == {"pairs_planned": 5, "pairs_judged": 4, "coverage": 0.8,
                                               "units": 2, "units_complete": 1}
    assert set(ttc_stats.quality(toy, partial)) == {"q1"}
    assert ttc_stats.quality(toy, {}) == {}
    full = ttc_stats.quality(toy, DIRECT)
    assert full["q1"] < 1.0 and full["q2"] < 1.0  # direct ranks d2 over d1 and e1 over e2
    assert ttc_stats.quality(toy, DEEP) == {"q1": 1.0, "q2": 1.0}


def test_judgement_stats_and_budget_forcing() -> None:
    js = [J(0.9, 10), J(0.2, 30, True)]
    assert ttc_stats.judgement_stats(js) == {"gen_tokens_per_pair": 20.0, "fallbacks": 1, "fallback_share": 0.5,
                                             "closed_think_share": 0.5}
    assert ttc_stats.judgement_stats(js, pairs=8)["gen_tokens_per_pair"] == 5.0
    small = {("q", "a"): J(0.9, 8, True), ("q", "b"): J(0.6, 8, True), ("q", "c"): J(0.1, 3), ("q", "x"): J(0.4)}
    large = {("q", "a"): J(0.8, 50), ("q", "b"): J(0.3, 90), ("q", "c"): J(0.2, 3)}
    assert ttc_stats.agreement(small, large) == {"agree_with_max_budget": 0.6667, "pairs_at_both": 3,
                                                 "forced_agree_with_unforced": 0.5, "forced_pairs": 2}
    direct = {("q", "a"): J(0.7), ("q", "b"): J(0.55), ("q", "c"): J(0.6)}  # the reasoning says no to c
    assert ttc_stats.direct_agreement(large, direct) == {"agree_with_direct": 0.3333, "pairs_with_direct": 3}


def test_policy_chosen_on_dev_is_the_cheapest_within_tolerance(toy: Collection) -> None:
    grid = ttc_stats.grid_rows([NEVER, Policy(top=1, window=0), ALWAYS], toy, DIRECT, DEEP)
    never, top1, always = grid
    assert never["gen_tokens_per_pair"] == 0.0 and never["reasoned_share"] == 0.0
    assert always["quality"] == 1.0 and always["gen_tokens_per_pair"] == 30.0 and always["reasoned_share"] == 1.0
    assert top1["gen_tokens_per_pair"] == 14.0 and top1["reasoned_share"] == 0.4  # (40 + 30) / 5 pairs
    assert top1["quality"] == 1.0 and ttc_stats.choose(grid, tolerance=0.0) == top1  # as good, half the tokens
    assert ttc_stats.choose(grid, tolerance=1.0) == never
    rows = [{"quality": q, "gen_tokens_per_pair": t, "reasoned_share": 0.0} for q, t in
            [(0.5, 0.0), (0.6, 10.0), (0.55, 20.0), (0.7, 30.0), (0.7, 40.0)]]
    assert ttc_stats.choose(rows, tolerance=0.1) == rows[1]
    assert ttc_stats.pareto(rows) == [rows[0], rows[1], rows[3]]


def test_points_slices_and_rows() -> None:
    assert [p.name for p in ttc.points([512, 32, 128], 128)] == ["direct", "adaptive", "b32", "b128", "b512"]
    pairs = [("a", "1"), ("a", "2"), ("b", "1"), ("c", "1"), ("c", "2"), ("d", "1")]
    assert ttc.slices(pairs, 3) == [{"a": ["1", "2"], "b": ["1"]}, {"c": ["1", "2"], "d": ["1"]}]
    assert ttc.slices([], 3) == []
    rows = [{"collection": "x", "point": "direct", "models": "m", "engine": "e", "quality": 1}]
    ttc.upsert(rows, {**rows[0], "quality": 2})
    ttc.upsert(rows, {**rows[0], "models": "other", "quality": 1})
    assert [r["quality"] for r in rows] == [2, 1] and rows[1]["models"] == "other"


def test_resume_from_a_partial_json(tmp_path: Path) -> None:
    """A killed run leaves rows, collections and policy choices: a rerun (on any subset of the collections) keeps
    them and adds its timings to theirs."""
    path = tmp_path / "ttc.json"
    empty = {"rows": [], "policies": {}, "collections": {}}
    assert ttc.load_report(path) == empty
    path.write_text('{"rows": [')  # killed mid-write (write_json replaces atomically, but be safe)
    assert ttc.load_report(path) == empty
    row = {"collection": "dl19", "point": "b128", "models": "m", "engine": "e", "pairs_planned": 10,
           "timing": {"judged": 4, "seconds": 8.0, "runs": 1, "pairs_per_second": 0.5}}
    collections = {"vaswani": {"metric": "nDCG@10", "units": 93}}
    path.write_text(json.dumps({"command": "x", "rows": [row], "policies": {"k": {"chosen": {}}},
                                "collections": collections}))
    prior = ttc.load_report(path)
    assert prior == {"rows": [row], "policies": {"k": {"chosen": {}}}, "collections": collections}
    assert ttc_stats.add_timing(row["timing"], 6, 4.0) == {"judged": 10, "seconds": 12.0, "runs": 2,
                                                           "pairs_per_second": 0.833}
    assert ttc_stats.add_timing(row["timing"], 0, 0.0) == row["timing"]  # all cached: unchanged
    assert ttc_stats.add_timing(None, 0, 0.0) == {"judged": 0, "seconds": 0.0, "runs": 0}


def _row(point: str, mode: str, budget: int, quality: float, tokens: float, **extra) -> dict:
    return {"collection": "dl19", "point": point, "mode": mode, "budget": budget, "models": "m", "engine": "e",
            "metric": "nDCG@10", "quality": quality, "ci95": [quality - 0.05, quality + 0.05],
            "gen_tokens_per_pair": tokens, "pairs_judged": 5, "pairs_planned": 10,
            "timing": {"judged": 5, "seconds": 10.0, "pairs_per_second": 0.5}, **extra}


def test_table_and_plot(tmp_path: Path) -> None:
    report = {"collections": {"dl19": {"bm25": {"quality": 0.5, "ci95": [0.45, 0.55]}}}, "rows": [
        _row("b32", "reasoning", 32, 0.55, 30.0, fallback_share=0.25, closed_think_share=0.75,
             agree_with_max_budget=0.8, forced_pairs=2, forced_agree_with_unforced=0.5, agree_with_direct=0.6,
             diff_vs_direct={"diff": 0.05, "ci95": [0.0, 0.1]}),
        _row("direct", "direct", 0, 0.5, 0.0, diff_vs_direct=None),
        _row("adaptive", "adaptive", 32, 0.56, 6.0, reasoned_share=0.2, diff_vs_direct=None)]}
    text = table(report).splitlines()
    assert len(text) == 2 + 1 + 3 and text[2].startswith("| dl19 (nDCG@10) | BM25 |")
    assert [line.split(" | ")[1] for line in text[3:]] == ["direct", "adaptive (20% reasoned)", "b32"]
    assert "5/10" in text[5] and "80% (forced: 50%)" in text[5] and "0.5500 [0.500, 0.600]" in text[5]
    assert text[5].endswith("| 60% |") and text[3].endswith("| – |")  # the trace's verdict against direct mode
    plot(report, tmp_path / "ttc.png")
    assert (tmp_path / "ttc.png").stat().st_size > 0
