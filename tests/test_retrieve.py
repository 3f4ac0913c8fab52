"""BM25 first stage: tokenizer, index, persistence, the retrieve pipeline, and quality on real data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rank1.records import Document, Query
from rank1.retrieve import (
    BM25Index,
    BM25Params,
    IndexFormatError,
    Tokenizer,
    TokenizerMismatchError,
    corpus_fingerprint,
    retrieve,
)

DOCS = [
    Document("d1", "The cat sat on the mat and purred.", "Cats"),
    Document("d2", "Dogs are running in the park, chasing a ball."),
    Document("d3", "Quantum computing uses qubits for computation."),
    Document("d4", "A recipe for banana bread with walnuts."),
    Document("d5", "Stock markets fell sharply on Monday."),
]


@pytest.fixture()
def index() -> BM25Index:
    return BM25Index.build(DOCS, progress=False)


# ---------------------------------------------------------------- tokenizer
def test_tokenizer_lowercases_splits_on_punctuation_and_drops_stopwords() -> None:
    tok = Tokenizer(stemmer=None)
    assert tok.tokenize("The QUICK, brown-fox; (jumps) over_the lazy dog!") == [
        "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
    ]  # fmt: skip
    assert tok.tokenize("") == []
    assert tok.tokenize("the of and ... !!!") == []


def test_tokenizer_stems_with_snowball() -> None:
    tok = Tokenizer()
    assert tok.tokenize("running") == ["run"]
    assert tok.tokenize("Runs RUNNING connected connections") == ["run", "run", "connect", "connect"]
    assert Tokenizer(stemmer="porter").tokenize("running") == ["run"]


def test_tokenizer_options_and_unicode() -> None:
    assert Tokenizer(stemmer=None).tokenize("Café naïve 東京 x2") == ["café", "naïve", "東京", "x2"]
    assert Tokenizer(stemmer=None, stopwords=None).tokenize("the cat") == ["the", "cat"]
    assert Tokenizer(stemmer=None, stopwords={"cat"}).tokenize("the cat") == ["the"]
    assert Tokenizer(stemmer=None, min_length=3).tokenize("an ox is big") == ["big"]
    assert Tokenizer(lowercase=False, stemmer=None, stopwords=None).tokenize("The Cat") == ["The", "Cat"]
    with pytest.raises(ValueError, match="stemmer"):
        Tokenizer(stemmer="klingon")
    with pytest.raises(ValueError, match="stop word"):
        Tokenizer(stopwords="klingon")


def test_tokenize_many_matches_tokenize() -> None:
    tok = Tokenizer()
    texts = [d.full_text for d in DOCS] + ["", "running runner runs"]
    assert tok.tokenize_many(texts) == [Tokenizer().tokenize(t) for t in texts]


def test_signature_is_stable_and_tracks_the_config() -> None:
    sig = Tokenizer().signature()
    assert sig == Tokenizer().signature()
    assert "stem=english" in sig and "stop=english" in sig
    others = {Tokenizer(stemmer=None), Tokenizer(stopwords=None), Tokenizer(min_length=2), Tokenizer(lowercase=False),
              Tokenizer(stopwords={"a"}), Tokenizer(stopwords={"b"})}  # fmt: skip
    assert len({t.signature() for t in others} | {sig}) == 7
    assert Tokenizer(stopwords=["b", "a"]).signature() == Tokenizer(stopwords={"a", "b"}).signature()


# ---------------------------------------------------------------- index and search
def test_matching_document_ranks_first(index: BM25Index) -> None:
    assert index.search("cats purring on mats", k=3)[0][0] == "d1"
    assert [d for d, _ in index.search("dog runs in a park", k=1)] == ["d2"]
    assert index.search("qubit", k=10)[0][0] == "d3"
    assert index.search("zebra", k=10) == []  # no query term in the vocabulary
    hits = index.search("the bread market", k=10)
    assert {d for d, _ in hits} == {"d4", "d5"}  # only documents containing a query term
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_search_many_uses_full_text(index: BM25Index) -> None:
    queries = {"q1": Query("q1", "banana", "walnut bread recipes"), "q2": Query("q2", "nothing matches zzz")}
    run = index.search_many(queries, k=2, progress=False)
    assert list(run) == ["q1", "q2"]
    assert next(iter(run["q1"])) == "d4" and len(run["q1"]) == 1
    assert run["q2"] == {}
    with pytest.raises(ValueError, match="k must be"):
        index.search("cat", k=0)


@pytest.mark.parametrize("variant", ["okapi", "BM25L", "bm25plus"])
def test_scores_are_rank_bm25_scores(variant: str) -> None:
    docs = DOCS + [Document(f"x{i}", "cat dog cat bread " * i) for i in range(1, 8)]
    idx = BM25Index.build(docs, params=BM25Params(variant=variant, k1=1.2, b=0.75), progress=False)
    tokens = idx.tokenizer.tokenize("cat cat dog bread qubit zebra")
    cand, scores = idx.score_tokens(tokens)
    assert np.array_equal(scores, idx.model.get_scores(tokens)[cand])  # bit-identical to rank_bm25
    expected = [i for i, d in enumerate(docs) if set(tokens) & set(idx.tokenizer.tokenize(d.full_text))]
    assert cand.tolist() == expected  # exactly the documents containing a query term


def test_ties_are_broken_by_doc_id() -> None:
    idx = BM25Index.build([Document(i, "same text") for i in ("b", "c", "a")] + [Document("z", "other")],
                          progress=False)  # fmt: skip
    assert [d for d, _ in idx.search("text", k=2)] == ["a", "b"]


def test_bad_corpora_and_params() -> None:
    with pytest.raises(ValueError, match="empty"):
        BM25Index.build([], progress=False)
    with pytest.raises(ValueError, match="duplicate"):
        BM25Index.build([Document("a", "x"), Document("a", "y")], progress=False)
    with pytest.raises(ValueError, match="no tokens"):
        BM25Index.build([Document("a", "the of"), Document("b", "")], progress=False)
    with pytest.raises(ValueError, match="variant"):
        BM25Params(variant="tfidf")
    assert BM25Params(variant="BM25Okapi").variant == "okapi"


# ---------------------------------------------------------------- persistence
def test_save_load_round_trip_without_retokenizing(index: BM25Index, tmp_path: Path, monkeypatch) -> None:
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "doc_ids.json", "manifest.json", "offsets.npy", "tokens.npy", "vocab.json",
    ]  # fmt: skip
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["tokenizer_signature"] == Tokenizer().signature()
    assert manifest["bm25"]["k1"] == 0.9 and manifest["bm25"]["b"] == 0.4
    assert manifest["corpus_fingerprint"] == corpus_fingerprint(DOCS)
    assert manifest["n_docs"] == 5

    def boom(*args, **kwargs):
        raise AssertionError("the corpus must not be re-tokenized on load")

    with monkeypatch.context() as m:
        m.setattr(Tokenizer, "tokenize_many", boom)
        m.setattr(Tokenizer, "tokenize", boom)
        m.setattr(Tokenizer, "_words", boom)
        loaded = BM25Index.load(tmp_path / "idx")
    for q in ("cats purring on mats", "banana bread", "markets on monday", "running dogs"):
        assert loaded.search(q, k=5) == index.search(q, k=5)
    assert loaded.doc_ids == index.doc_ids and loaded.fingerprint == index.fingerprint
    k1 = BM25Index.load(tmp_path / "idx", params=BM25Params(k1=2.0))
    assert k1.model.k1 == 2.0


def test_tokenizer_mismatch_is_a_clear_error(index: BM25Index, tmp_path: Path) -> None:
    index.save(tmp_path / "idx")
    with pytest.raises(TokenizerMismatchError, match="stem=none"):
        BM25Index.load(tmp_path / "idx", tokenizer=Tokenizer(stemmer=None))
    assert BM25Index.load(tmp_path / "idx", tokenizer=Tokenizer()).n_docs == 5


def test_save_refuses_foreign_directories_and_load_checks_files(index: BM25Index, tmp_path: Path) -> None:
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(IndexFormatError):
        index.save(foreign)
    assert (foreign / "todo.txt").read_text() == "keep me"
    index.save(tmp_path / "idx")
    index.save(tmp_path / "idx")  # replacing our own index is fine
    np.save(tmp_path / "idx" / "offsets.npy", np.array([0, 1], dtype=np.int64))
    with pytest.raises(IndexFormatError, match="disagree"):
        BM25Index.load(tmp_path / "idx")
    with pytest.raises(IndexFormatError):
        BM25Index.load(tmp_path / "missing")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


# ---------------------------------------------------------------- retrieve pipeline
def test_retrieve_builds_then_reuses_the_index(tmp_path: Path) -> None:
    from rank1.io import read_run

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n" for d in DOCS))
    topics = tmp_path / "topics.tsv"
    topics.write_text("q1\tpurring cats\nq2\tbanana bread\n")
    out, idx = tmp_path / "run.trec", tmp_path / "idx"

    first = retrieve(corpus, topics, out, k=3, index_dir=idx, progress=False)
    assert (first.n_docs, first.n_queries, first.index_reused) == (5, 2, False)
    assert next(iter(read_run(out)["q1"])) == "d1"
    assert retrieve(corpus, topics, out, k=3, index_dir=idx, progress=False).index_reused
    os.utime(corpus, ns=(1, 1))  # same content, different mtime: reused through the fingerprint
    assert retrieve(corpus, topics, out, k=3, index_dir=idx, progress=False).index_reused
    assert json.loads((idx / "manifest.json").read_text())["source"]["mtime_ns"] == 1
    with corpus.open("a") as f:
        f.write(json.dumps({"_id": "d6", "text": "purring kittens"}) + "\n")
    changed = retrieve(corpus, topics, out, k=3, index_dir=idx, progress=False)
    assert (changed.index_reused, changed.n_docs) == (False, 6)
    assert "d6" in read_run(out)["q1"]
    other = retrieve(corpus, topics, out, k=3, index_dir=idx, progress=False, tokenizer=Tokenizer(stemmer=None))
    assert not other.index_reused


# ---------------------------------------------------------------- real data
def _ndcg10(shared_data: Path, corpus: str, topics: str, topics_fmt: str, qrels: str, qrels_fmt: str) -> float:
    from rank1.metrics import evaluate
    from rank1.io import read_corpus, read_qrels, read_topics

    index = BM25Index.build(read_corpus(shared_data / corpus), progress=False)
    run = index.search_many(read_topics(shared_data / topics, topics_fmt), k=100, progress=False)
    return evaluate(run, read_qrels(shared_data / qrels, qrels_fmt), ["nDCG@10"])["nDCG@10"]


def test_bm25_on_cranfield(shared_data: Path) -> None:
    # measured 0.3483 (bm25s Lucene BM25 on the same tokens: 0.3517), see benchmarks/results/bm25_compare.json
    ndcg = _ndcg10(shared_data, "cranfield/cran.all.1400", "cranfield/cran.qry", "cranfield",
                   "cranfield/cranqrel", "cranfield")  # fmt: skip
    assert ndcg > 0.33


def test_bm25_on_vaswani(shared_data: Path) -> None:
    # measured 0.4409 (bm25s: 0.4412)
    ndcg = _ndcg10(shared_data, "vaswani/doc-text.trec", "vaswani/query-text.trec", "trec", "vaswani/qrels", "trec")
    assert ndcg > 0.42
