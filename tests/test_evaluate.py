"""rank1.metrics on hand-computed toy inputs, then on the real TREC DL and NevIR data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rank1.metrics import (Pair, PerQuery, Trap, evaluate, p_mrr, paired_accuracy, parse_measures, read_nevir_pairs,
                           read_trap_items, trap_accuracy)
from rank1.io import read_corpus, read_qrels, read_rankllm, read_run, read_topics, write_run

QRELS = {"q1": {"d1": 2, "d2": 0, "d3": 1}, "q2": {"d4": 1}, "q3": {"d7": 1}}
RUN = {
    "q1": {"d1": 1.0, "d2": 3.0, "d3": 2.0},  # ranked d2 (gain 0), d3 (1), d1 (2)
    "q2": {"d5": 2.0, "d4": 1.0},  # d5 unjudged, then d4 (1)
    "q3": {"d7": 5.0, "d8": 1.0},  # perfect
    "q9": {"d1": 1.0},  # not judged: ignored
}
LOG3 = math.log2(3)
NDCG_Q1 = (1 / LOG3 + 2 / 2) / (2 / 1 + 1 / LOG3)  # DCG / ideal DCG with gain = relevance
NDCG_Q2 = (1 / LOG3) / 1.0
NDCG_Q3 = 1.0


def test_evaluate_ndcg_and_precision_by_hand() -> None:
    result = evaluate(RUN, QRELS, ["nDCG@10", "P@1"])
    assert result == pytest.approx({"nDCG@10": (NDCG_Q1 + NDCG_Q2 + NDCG_Q3) / 3, "P@1": 1 / 3})
    assert round(NDCG_Q1, 4) == 0.6199 and round(NDCG_Q2, 4) == 0.6309


def test_evaluate_means_over_the_queries_of_the_run() -> None:
    """trec_eval's default: judged queries absent from the run do not count as zeros."""
    subset = {"q3": RUN["q3"]}
    assert evaluate(subset, QRELS, ["nDCG@10"]) == pytest.approx({"nDCG@10": NDCG_Q3})


def test_evaluate_per_query_rows() -> None:
    aggregate, rows = evaluate(RUN, QRELS, "nDCG@10", per_query=True)
    assert aggregate == pytest.approx({"nDCG@10": (NDCG_Q1 + NDCG_Q2 + NDCG_Q3) / 3})
    assert [row.query_id for row in rows] == ["q1", "q2", "q3"]
    assert isinstance(rows[0], PerQuery) and rows[0][:2] == ("q1", "nDCG@10")
    assert rows[0].value == pytest.approx(NDCG_Q1)
    assert rows[2].value == pytest.approx(1.0)


def test_evaluate_reads_paths(tmp_path: Path) -> None:
    run_path = tmp_path / "run.trec"
    write_run(run_path, RUN)
    qrels_path = tmp_path / "qrels.txt"
    qrels_path.write_text("".join(f"{q} 0 {d} {r}\n" for q, docs in QRELS.items() for d, r in docs.items()))
    assert evaluate(run_path, qrels_path, ["P@1"]) == pytest.approx({"P@1": 1 / 3})


def test_ties_and_trec_eval_single_precision(tmp_path: Path) -> None:
    run = {"q": {"a": 1.0, "b": 1.0}}
    qrels = {"q": {"a": 1}}
    assert evaluate(run, qrels, ["P@1"])["P@1"] == 0.0  # trec_eval puts tie "b" first (doc id descending)
    write_run(tmp_path / "run.trec", run)  # writes "a" first, "b" one float32 step lower
    back = read_run(tmp_path / "run.trec")
    assert list(back["q"]) == ["a", "b"] and back["q"]["b"] < back["q"]["a"]
    # trec_eval compares scores as float32: the written order is the evaluated order.
    assert evaluate(back, qrels, ["P@1"])["P@1"] == 1.0
    # Scores that differ in double precision only are separated too.
    write_run(tmp_path / "run2.trec", {"q": {"a": 1.0, "b": 1.0 - 1e-12}})
    assert evaluate(read_run(tmp_path / "run2.trec"), qrels, ["P@1"])["P@1"] == 1.0
    assert evaluate({"q": {"a": 1.0, "b": 1.0 - 1e-6}}, qrels, ["P@1"])["P@1"] == 1.0


def test_evaluate_errors() -> None:
    with pytest.raises(ValueError, match="unknown measure 'nDCG@ten'"):
        evaluate(RUN, QRELS, ["nDCG@ten"])
    with pytest.raises(ValueError, match="unknown measure 'Bogus'"):
        parse_measures("Bogus")
    with pytest.raises(ValueError, match="right qrels"):
        evaluate({"x": {"d": 1.0}}, QRELS)
    with pytest.raises(ValueError, match=r"unknown measure 'P\.foo'"):
        parse_measures(["P@1", "P.foo"])
    assert [str(m) for m in parse_measures(["nDCG@10", "P@1", "AP"])] == ["nDCG@10", "P@1", "AP"]
    assert [str(m) for m in parse_measures(["ndcg_cut.10", "map"])] == ["nDCG@10", "AP"]


def test_paired_accuracy_by_hand() -> None:
    run = {
        "a1": {"da1": 2.0, "db1": 1.0},
        "b1": {"db1": 3.0, "da1": 0.0},  # pair 1: both right
        "a2": {"da2": 2.0, "db2": 1.0},
        "b2": {"db2": 1.0, "da2": 1.0},  # pair 2: a tie is not "above"
        "a3": {"da3": 1.0},
        "b3": {"db3": 0.5},  # pair 3: the missing document ranks below
        "b4": {"db4": 1.0},  # pair 4: query a4 missing from the run
    }
    pairs = [Pair(f"a{i}", f"da{i}", f"b{i}", f"db{i}") for i in range(1, 5)]
    assert paired_accuracy(run, pairs) == 0.5
    assert paired_accuracy(run, pairs[:1]) == 1.0
    assert paired_accuracy({"a": {}, "b": {}}, [("a", "x", "b", "y")]) == 0.0
    with pytest.raises(ValueError):
        paired_accuracy(run, [])


def test_p_mrr_by_hand() -> None:
    original = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 1.0, "y": 0.0}, "q3": {"z": 1.0}}
    changed = {"q1": {"b": 3.0, "c": 2.0, "a": 1.0}, "q2": {"y": 1.0}, "q3": {"z": 1.0}}
    # q1: a goes 1 -> 3: 1 - (1/3)/(1/1) = 2/3; c goes 3 -> 2: (1/3)/(1/2) - 1 = -1/3; mean 1/6.
    # q2: x goes 1 -> absent = len + 1 = 2: 1 - (1/2)/(1/1) = 1/2.  q3 has no changed doc: skipped.
    changed_docs = {"q1": ["a", "c"], "q2": ["x"], "q3": []}
    assert p_mrr(original, changed, changed_docs) == pytest.approx((1 / 6 + 1 / 2) / 2)
    assert p_mrr(original, original, changed_docs) == 0.0
    assert p_mrr({"q": {"a": 1.0, "b": 0.0}}, {"q": {"a": 0.0, "b": 1.0}}, {"q": {"b"}}) == pytest.approx(
        -0.5
    )
    with pytest.raises(ValueError, match="missing"):
        p_mrr(original, {}, changed_docs)
    with pytest.raises(ValueError):
        p_mrr(original, changed, {"q3": []})


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("year", "expected"), [("19", 0.5058), ("20", 0.4796)])
def test_real_trec_dl_bm25_ndcg(shared_data: Path, year: str, expected: float) -> None:
    dl = shared_data / "trec_dl"
    qrels = dl / f"qrels.dl{year}-passage.txt"
    result = evaluate(dl / f"bm25_top100_dl{year}.trec", qrels, ["nDCG@10"])
    assert round(result["nDCG@10"], 4) == expected
    from_json = evaluate(read_rankllm(dl / f"bm25_top100_dl{year}.json").run, read_qrels(qrels), ["nDCG@10"])
    assert from_json == result


def test_real_nevir_pairs(shared_data: Path) -> None:
    nevir = shared_data / "nevir"
    topics, corpus, pairs = read_nevir_pairs(nevir / "derived_test1000_pairs.jsonl")
    assert (len(topics), len(corpus), len(pairs)) == (2000, 2000, 1000)
    assert pairs[0] == Pair("783-2_q1", "783-2_doc1", "783-2_q2", "783-2_doc2")
    assert topics == read_topics(nevir / "derived_test1000_queries.jsonl")
    assert corpus == read_corpus(nevir / "derived_test1000_corpus.jsonl")
    qrels = read_qrels(nevir / "derived_test1000_qrels.tsv")
    assert all(qrels[qa][da] == 1 and qrels[qb][db] == 1 for qa, da, qb, db in pairs)
    oracle = {qid: {doc: float(rel) for doc, rel in docs.items()} for qid, docs in qrels.items()}
    assert paired_accuracy(oracle, pairs) == 1.0
    constant = {qid: {doc: 0.0 for doc in docs} for qid, docs in qrels.items()}
    assert paired_accuracy(constant, pairs) == 0.0


def test_package_exports_the_evaluate_function_not_a_module() -> None:
    """``from rank1 import evaluate`` is the function (the metrics live in ``rank1.metrics``)."""
    import subprocess
    import sys

    code = "from rank1 import evaluate, paired_accuracy; print(callable(evaluate) and callable(paired_accuracy))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "True\n"


TRAP_ITEMS = """\
{"id": "x1", "query": "rivers of Peru, excluding the Amazon", "doc1": "The Amazon ...", "doc2": "The Urubamba ...", "answer_doc": "doc2"}
{"id": "x2", "query": "dogs, not cats", "doc1": "Dogs bark.", "doc2": "Cats purr.", "answer_doc": "doc1"}
"""


def test_trap_items_and_accuracy_by_hand(make_file) -> None:
    topics, corpus, items = read_trap_items(make_file("traps.jsonl", TRAP_ITEMS))
    assert items == [Trap("x1", "x1_answer", "x1_trap"), Trap("x2", "x2_answer", "x2_trap")]
    assert corpus["x1_answer"].text == "The Urubamba ..." and corpus["x2_trap"].text == "Cats purr."
    assert topics["x2"].text == "dogs, not cats"
    run = {"x1": {"x1_answer": 0.9, "x1_trap": 0.2}, "x2": {"x2_answer": 0.5, "x2_trap": 0.5}}
    assert trap_accuracy(run, items) == 0.5  # a tie is not a win
    assert trap_accuracy({"x1": {"x1_answer": 0.1}}, items) == 0.5  # a missing trap ranks below
    with pytest.raises(ValueError):
        trap_accuracy(run, [])


def test_trap_items_reject_a_bad_answer_field(make_file) -> None:
    from rank1.io.errors import InputError

    bad = make_file("bad.jsonl", '{"id": "a", "query": "q", "doc1": "d", "doc2": "e", "answer_doc": "doc3"}\n')
    with pytest.raises(InputError, match="bad.jsonl:1"):
        read_trap_items(bad)
    twice = make_file("twice.jsonl", TRAP_ITEMS.splitlines()[0] + "\n" + TRAP_ITEMS.splitlines()[0] + "\n")
    with pytest.raises(InputError, match="twice.jsonl:2: duplicate item id 'x1'"):
        read_trap_items(twice)


def test_real_excluir_and_boolquestions(shared_data: Path) -> None:
    for name, n in (("excluir_manual_1000_seed42.jsonl", 1000), ("boolquestions_not_323.jsonl", 323)):
        topics, corpus, items = read_trap_items(shared_data / "excluir_boolq" / name)
        assert len(items) == len(topics) == n and len(corpus) == 2 * n
        assert all(corpus[i.answer].text != corpus[i.trap].text for i in items)
