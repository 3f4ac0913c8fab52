"""The duo stage (rank1.duo) and its training groups (distill.duo)."""

from __future__ import annotations

import pytest

from distill.duo import duo_groups
from distill.msmarco import Group
from rank1.duo import aggregate, clip_words, duo_rerank, duo_text, reorder, top_k
from rank1.prompts import get_template
from rank1.records import Document, Query

GROUP = Group("q1", "is the sky blue", ("p", "n1", "n2"), ("The sky is blue.", "The sky is not blue.", "Grass."),
              (1, 0, 0), "negate-answer")


def test_duo_text_holds_both_passages_cut_to_their_words() -> None:
    text = duo_text("one two three four", "five six", max_words=3)
    assert text == "Passage A: one two three\nPassage B: five six"
    assert clip_words("a  b", 5) == "a  b"  # untouched under the limit
    prompt = get_template("duo").render("q?", text)
    assert "Passage A: one two three\nPassage B: five six\n<think>" in prompt and "Query: q?" in prompt


def test_aggregate_is_the_symmetric_sum() -> None:
    prefs = {("a", "b"): 0.9, ("b", "a"): 0.2, ("a", "c"): 0.6, ("c", "a"): 0.6, ("b", "c"): 0.5, ("c", "b"): 0.5}
    wins = aggregate(prefs, ["a", "b", "c"])
    assert wins["a"] == pytest.approx((0.9 + 0.8 + 0.6 + 0.4) / 4)
    assert wins["b"] == pytest.approx((0.2 + 0.1 + 0.5 + 0.5) / 4)
    assert max(wins, key=wins.get) == "a"
    assert aggregate({}, ["only"]) == {"only": 0.5}


def test_reorder_moves_the_compared_documents_above_the_rest_strictly() -> None:
    scores = {"a": 0.9, "b": 0.8, "c": 0.1, "d": 0.05}
    out = reorder(scores, {"a": 0.3, "b": 0.7})
    assert sorted(out, key=out.get, reverse=True) == ["b", "a", "c", "d"]
    assert out["c"] == 0.1 and out["d"] == 0.05
    tied = reorder(scores, {"a": 0.5, "b": 0.5})  # a tie keeps the earlier order, strictly decreasing
    assert tied["a"] > tied["b"] > tied["c"]
    assert top_k({"x": 1.0, "y": 1.0, "z": 2.0}, 2) == ["z", "x"]


def test_duo_groups_pair_the_positive_with_its_first_negatives_in_both_orders() -> None:
    [one] = duo_groups([GROUP])
    assert one.labels == (1, 0) and one.source == "negate-answer-duo" and one.qid == "q1:duo0"
    assert one.docids == ("p>n1", "n1>p")
    assert one.passages[0] == duo_text("The sky is blue.", "The sky is not blue.")
    assert one.passages[1] == duo_text("The sky is not blue.", "The sky is blue.")
    assert [g.docids[0] for g in duo_groups([GROUP], negatives=5)] == ["p>n1", "p>n2"]
    with pytest.raises(ValueError, match="at least 1"):
        list(duo_groups([GROUP], negatives=0))


def test_duo_rerank_needs_the_duo_template(reranker) -> None:
    with pytest.raises(ValueError, match="duo"):
        duo_rerank(reranker, {"q": {"a": 1.0, "b": 0.5}}, {}, {}, k=2)


def test_duo_rerank_with_the_real_model(reranker, tmp_path) -> None:
    """Every ordered pair of the top k is judged once (stored), the top k reordered by their symmetric sum,
    the rest kept below; a second run reads the store."""
    from rank1.store import ScoreStore

    judge = reranker.replace(template="duo")
    corpus = {d: Document(d, t) for d, t in {"a": "Paris is the capital of France.", "b": "Paris is not the "
                                             "capital of France.", "c": "Bananas are yellow.",
                                             "d": "Lyon is a city."}.items()}
    topics = {"q": Query("q", "what is the capital of France")}
    scores = {"q": {"a": 0.7, "b": 0.6, "c": 0.5, "d": 0.1}}
    with ScoreStore(tmp_path / "s.sqlite") as store:
        out = duo_rerank(judge, scores, corpus, topics, k=3, store=store, progress=False)
        assert store.count() == 6
        again = duo_rerank(judge, scores, corpus, topics, k=3, store=store, progress=False)
    assert again == out
    order = sorted(out["q"], key=out["q"].get, reverse=True)
    assert set(order[:3]) == {"a", "b", "c"} and order[3] == "d" and out["q"]["d"] == 0.1
    assert len(set(out["q"].values())) == 4


def test_the_cli_writes_duo_groups_and_rejects_bad_input(tmp_path) -> None:
    from typer.testing import CliRunner

    from distill.msmarco import read_groups, write_groups
    from rank1.cli import app

    src, out = tmp_path / "g.jsonl", tmp_path / "duo.jsonl"
    write_groups(src, [GROUP, GROUP._replace(qid="q2")])
    res = CliRunner().invoke(app, ["distill", "duo", str(src), "--out", str(out), "--negatives", "2"])
    assert res.exit_code == 0, res.output
    assert "4 duo groups" in res.output
    assert read_groups(out) == list(duo_groups(read_groups(src), negatives=2))
    bad = CliRunner().invoke(app, ["distill", "duo", str(src), "--out", str(tmp_path / "x.jsonl"), "--negatives", "0"])
    assert bad.exit_code == 2 and "at least 1" in bad.output and not (tmp_path / "x.jsonl").exists()


def test_the_benchmark_rule_decides_without_ms_marco_only_when_the_paired_part_fails() -> None:
    from benchmarks.duo import verdict

    def col(base: float, duo: float, low: float) -> dict:
        return {"bases": {"0.0": {"base": {"quality": base}, "duo": {"quality": duo},
                                  "duo_vs_base": {"ci95": [low, 0.1]}}}}

    worse = {"nevir-train": col(0.5, 0.4, -0.2), "contrast-dev": col(0.6, 0.6, -0.05)}
    assert verdict(worse, "0.0")["recommended"] is False
    better = {"nevir-train": col(0.4, 0.5, 0.01), "contrast-dev": col(0.6, 0.65, 0.01)}
    assert verdict(better, "0.0")["recommended"] is None  # MS MARCO dev still to measure
    assert verdict({**better, "msmarco-dev": col(0.70, 0.695, -0.01)}, "0.0")["recommended"] is True
    assert verdict({**better, "msmarco-dev": col(0.70, 0.68, -0.03)}, "0.0")["recommended"] is False
    assert verdict({"nevir-train": worse["nevir-train"]}, "0.0") is None


def test_rerank_rejects_the_duo_template_in_one_line(tmp_path) -> None:
    from typer.testing import CliRunner

    from rank1.cli import app

    run, corpus, topics = tmp_path / "r.trec", tmp_path / "c.tsv", tmp_path / "t.tsv"
    run.write_text("q1 Q0 d1 1 1.0 bm25\n")
    corpus.write_text("d1\tsome text\n")
    topics.write_text("q1\ta query\n")
    out = tmp_path / "out.trec"
    res = CliRunner().invoke(app, ["rerank", "--run", str(run), "--corpus", str(corpus), "--topics", str(topics),
                                   "--out", str(out), "--template", "duo"])
    assert res.exit_code == 2 and "pairwise judge" in res.output and not out.exists()
